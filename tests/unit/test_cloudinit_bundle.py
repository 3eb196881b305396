"""The node bundle: the same files as first boot's write_files, applied part by part by the script.

The script runs here with every host path under a temporary WGMESH_ROOT and fakes on PATH for
the tools that change a host (nft, sysctl, useradd, visudo, wg, ip): which parts it reloads,
which it leaves alone, and what it puts back on a failure. The real nft and sysctl run on the
same bundles in tests/artifacts/test_bundle_netns.py; a running mesh in tests/lab/test_day2.py.
"""

from __future__ import annotations

import base64
import gzip
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_cloudinit_sync import FAKE_IP, FAKE_WG, FAKE_WG_QUICK, KEY_RE, new_key, peer

from cloudinit import access, host
from cloudinit.bundle import BUNDLE_HEADER, bundle_digest, host_files, node_bundle, parse_bundle
from cloudinit.cloudconfig import GZIP_BASE64
from cloudinit.render import node_user_data_from_conf
from cloudinit.sync import SCRIPT_NAME, apply_script, parse_summary
from mesh.plan import build_plan
from mesh.plan_types import MeshPlan
from mesh.spec import parse

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINmmuPryri6glS1QlhaDJjKjzx04JfygjBfH72YlFlq/ admin-a"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmmuPryri6glS1QlhaDJjKjzx04JfygjBfH72YlFlq/ admin-b"


def plan_of(
    *,
    gateway: bool = False,
    cidr6: bool = False,
    masquerade: bool = False,
    keys: tuple[str, ...] = (KEY_A,),
    ssh_user: str | None = None,
    cloud: str = "lab",
) -> MeshPlan:
    """A two-node mesh from the real parser and planner; n1 carries the day-2 switches."""
    mesh: dict[str, Any] = {"cidr": "10.77.0.0/24", "sshPublicKeys": list(keys)}
    if cidr6:
        mesh["cidr6"] = "fd77:77::/64"
    if ssh_user:
        mesh["sshUser"] = ssh_user
    n1: dict[str, Any] = {"name": "n1", "cloud": "lab", "publicIp": "198.51.100.1", "gateway": gateway}
    if masquerade:
        n1 |= {"subnets": ["10.0.5.0/24"], "masquerade": True}
    if cloud != "lab":
        n1 = {"name": "n1", "cloud": cloud, "region": "eu-central-1" if cloud == "aws" else "fsn1"}
        n1["size"] = "t3.micro" if cloud == "aws" else "cx22"
    nodes = [n1, {"name": "n2", "cloud": "lab", "publicIp": "198.51.100.2"}]
    return build_plan(parse({"mesh": mesh, "nodes": nodes}))


# ----------------------------------------------------------------------------- the payload


def user_data_files(plan: MeshPlan, name: str, conf: str, compress: bool) -> dict[str, tuple[str, str]]:
    doc = yaml.safe_load(node_user_data_from_conf(plan, name, conf, compress))
    files = {}
    for f in doc["write_files"]:
        content = f["content"]
        if f.get("encoding") == GZIP_BASE64:
            content = gzip.decompress(base64.b64decode(content)).decode()
        files[f["path"]] = (f["permissions"], content)
    return files


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "plan",
    [plan_of(), plan_of(gateway=True, cidr6=True, masquerade=True, ssh_user="ops")],
    ids=["plain", "gateway-dual-stack-sshuser"],
)
def test_bundle_carries_exactly_the_files_first_boot_writes(plan: MeshPlan, compress: bool) -> None:
    conf = "[Interface]\nPrivateKey = " + new_key() + "\n"
    settings, files = parse_bundle(node_bundle(plan, "n1", conf))
    assert {f.path: (f.mode, f.content) for f in files} == user_data_files(plan, "n1", conf, compress)
    assert settings["ra-guard"] == ("1" if plan.spec.mesh.cidr6 else "0")
    assert [f.part for f in files].count("wg") == 1


def test_bundle_is_versioned_line_based_and_its_digest_follows_its_content() -> None:
    conf = "[Interface]\nPrivateKey = " + new_key() + "\n"
    text = node_bundle(plan_of(), "n1", conf)
    assert (
        text.splitlines()[0] == BUNDLE_HEADER
        and text.splitlines()[-1] == f"end {len(host_files(plan_of(), 'n1', conf))}"
    )
    assert all(
        line.split(" ")[0] in {"wgmesh-bundle", "ra-guard", "file", "end"} for line in text.splitlines()
    )
    assert bundle_digest(text) == bundle_digest(node_bundle(plan_of(), "n1", conf))
    assert len(bundle_digest(text)) == 64
    assert bundle_digest(text) != bundle_digest(node_bundle(plan_of(gateway=True), "n1", conf))


def test_login_users_are_the_ssh_user_and_the_image_default_user() -> None:
    assert access.login_users(plan_of(), "n1") == ("root",)  # a lab node
    assert access.login_users(plan_of(ssh_user="ops"), "n1") == ("ops",)
    assert access.login_users(plan_of(cloud="aws"), "n1") == ("ubuntu",)
    assert access.login_users(plan_of(cloud="aws", ssh_user="ops"), "n1") == ("ops", "ubuntu")
    assert access.login_users(plan_of(cloud="hcloud", ssh_user="root"), "n1") == ("root",)


def test_ssh_user_is_created_by_cloud_init_with_passwordless_sudo() -> None:
    """Defect: `sshUser` was never created on the VM."""
    plan = plan_of(cloud="aws", ssh_user="ops")
    doc = yaml.safe_load(node_user_data_from_conf(plan, "n1", "[Interface]\n"))
    assert doc["users"] == [
        "default",
        {"name": "ops", "sudo": "ALL=(ALL) NOPASSWD:ALL", "shell": "/bin/bash", "lock_passwd": True},
    ]
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    assert files[access.SUDOERS_PATH].splitlines()[-1] == "ops ALL=(ALL) NOPASSWD:ALL"
    assert files[f"{access.KEYS_DIR}/ops"] == files[f"{access.KEYS_DIR}/ubuntu"] == KEY_A + "\n"
    assert "users" not in yaml.safe_load(
        node_user_data_from_conf(plan_of(cloud="aws"), "n1", "[Interface]\n")
    )
    assert "users" not in yaml.safe_load(
        node_user_data_from_conf(plan_of(ssh_user="root"), "n1", "[Interface]\n")
    )


# ----------------------------------------------------------------------------- the apply

FAKE_TOOL = r"""#!/bin/bash
printf '%s %s\n' "${0##*/}" "$*" >>"$FAKE/host-calls"
if [ -n "${FAKE_FAIL_HOST:-}" ] && [[ "${0##*/} $*" == *"$FAKE_FAIL_HOST"* ]]; then
  echo "fake failure" >&2
  exit 1
fi
user=${!#}
if [ "${0##*/}" = sysctl ] && [ "$1" != -q ]; then echo "$1 = 0"; fi  # a read: `KEY = VALUE`
[ "${0##*/}" != useradd ] || echo "$user:x:1001:1001::/home/$user:/bin/bash" >>"$WGMESH_ROOT/etc/passwd"
exit 0
"""


FAKE_CHOWN = r"""#!/bin/bash
[ -z "${FAKE_FAIL_CHOWN:-}" ] || [[ $* != *"$FAKE_FAIL_CHOWN"* ]] || exit 1
exit 0
"""


class HostNode:
    """A running wg0 (fake `wg`) whose host paths all live under `root/fs`."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.fs = tmp / "fs"
        (self.fs / "etc").mkdir(parents=True)
        (self.fs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        fakes = {"wg": FAKE_WG, "wg-quick": FAKE_WG_QUICK, "ip": FAKE_IP, "chown": FAKE_CHOWN}
        fakes |= {t: FAKE_TOOL for t in ("nft", "sysctl", "useradd", "visudo", "systemctl", "sshd")}
        for name, text in fakes.items():
            (bin_dir / name).write_text(text)
            (bin_dir / name).chmod(0o755)
        self.priv = new_key()
        self.peer = new_key()
        (tmp / "dump").write_text(
            f"{self.priv}\t{new_key()}\t51820\toff\n{self.peer}\t(none)\t(none)\t10.77.0.2/32\t0\t0\t0\toff\n"
        )

    def conf(self) -> str:
        head = (
            f"[Interface]\nPrivateKey = {self.priv}\nAddress = 10.78.0.1/24\nListenPort = 51820\nMTU = 1420\n"
        )
        return head + peer(self.peer, new_key(), "10.77.0.2/32").replace("PresharedKey", "# PresharedKey")

    def apply(self, payload: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        (self.tmp / "host-calls").unlink(missing_ok=True)
        return subprocess.run(
            ["bash", "-c", apply_script(), SCRIPT_NAME, *args],
            input=payload,
            text=True,
            capture_output=True,
            check=False,
            env={
                "PATH": f"{self.tmp / 'bin'}:/usr/bin:/bin",
                "FAKE": str(self.tmp),
                "WGMESH_ROOT": str(self.fs),
                **env,
            },
        )

    def host_calls(self) -> list[str]:
        path = self.tmp / "host-calls"
        return path.read_text().splitlines() if path.exists() else []

    def file(self, path: str) -> Path:
        return self.fs / path.lstrip("/")


@pytest.fixture
def hnode(tmp_path: Path) -> HostNode:
    return HostNode(tmp_path)


def applied(hnode: HostNode, plan: MeshPlan, **env: str) -> dict[str, str]:
    proc = hnode.apply(node_bundle(plan, "n1", hnode.conf()), **env)
    assert proc.returncode == 0, proc.stderr
    assert not KEY_RE.search(proc.stdout + proc.stderr)
    return parse_summary(proc.stdout)


def test_first_apply_installs_every_host_file_and_loads_each_part(hnode: HostNode) -> None:
    plan = plan_of()
    fields = applied(hnode, plan)
    assert fields["host"] == "guard-unit,guard,nft,sysctl,sudoers,keys,sshd"
    for f in host_files(plan, "n1", hnode.conf()):
        if f.part == "wg":
            continue
        assert hnode.file(f.path).read_text() == f.content, f.path
        assert oct(hnode.file(f.path).stat().st_mode & 0o777) == oct(int(f.mode, 8)), f.path
    # sshd reads a key file as the login user: new directories are 0755, not the script's umask 077.
    assert hnode.file(access.KEYS_DIR).stat().st_mode & 0o777 == 0o755
    assert hnode.file("/etc/wgmesh").stat().st_mode & 0o777 == 0o755
    calls = hnode.host_calls()
    nft, guard = hnode.file(host.NFT_PATH), hnode.file(host.METADATA_GUARD_PATH)
    assert f"nft -f {guard}" in calls and f"nft -f {nft}" in calls
    assert f"sysctl -q -p {hnode.file(host.SYSCTL_PATH)}" in calls
    assert calls.index(f"nft -f {guard}") < calls.index(f"nft -f {nft}")  # the guard holds first
    assert [c for c in calls if c.startswith("nft -c -f")] and [
        c for c in calls if c.startswith("visudo -cqf")
    ]
    (sshd_check,) = [c for c in calls if c.startswith("sshd -t -f ")]  # the drop-in checked before install
    assert calls.index(sshd_check) < calls.index(f"nft -f {guard}")
    assert not [c for c in calls if c.startswith("systemctl")]  # never the real systemd under WGMESH_ROOT


def test_an_unchanged_bundle_reloads_nothing(hnode: HostNode) -> None:
    plan = plan_of()
    applied(hnode, plan)
    fields = applied(hnode, plan)
    assert fields["host"] == "-" and fields["action"] == "sync"
    assert [c for c in hnode.host_calls() if " -c" not in c and " -t " not in c] == []  # checks only, no load


def test_day2_gateway_reaches_the_nft_table_and_only_it(hnode: HostNode) -> None:
    """Defect: `gateway: true` on a running node never reached its nftables table."""
    applied(hnode, plan_of())
    fields = applied(hnode, plan_of(gateway=True))
    assert fields["host"] == "nft"
    nft = hnode.file(host.NFT_PATH)
    assert host.INTO_MESH_DROP in nft.read_text() and "masquerade" in nft.read_text()
    assert [c for c in hnode.host_calls() if " -c" not in c and " -t " not in c] == [f"nft -f {nft}"]


def test_day2_masquerade_reaches_the_nft_table(hnode: HostNode) -> None:
    applied(hnode, plan_of())
    assert applied(hnode, plan_of(masquerade=True))["host"] == "nft"
    assert "ip daddr { 10.0.5.0/24 } masquerade" in hnode.file(host.NFT_PATH).read_text()


def test_day2_cidr6_turns_on_ipv6_forwarding_after_the_ra_guard(hnode: HostNode) -> None:
    """Defect: adding cidr6 never reached the sysctl file nor ran the RA guard on a running node."""
    applied(hnode, plan_of())
    assert applied(hnode, plan_of(cidr6=True))["host"] == "sysctl"
    assert "net.ipv6.conf.all.forwarding = 1" in hnode.file(host.SYSCTL_PATH).read_text()
    calls = [c for c in hnode.host_calls() if " -c" not in c and " -t " not in c]
    assert calls[-1] == f"sysctl -q -p {hnode.file(host.SYSCTL_PATH)}"
    ra = (hnode.tmp / "ip").read_text().splitlines()
    assert "-6 -o route show default proto ra" in ra  # the RA guard looked for RA routes first


def test_a_part_that_fails_to_load_puts_every_replaced_file_back(hnode: HostNode) -> None:
    before = plan_of()
    applied(hnode, before)
    old = {p: hnode.file(p).read_text() for p in (host.NFT_PATH, host.SYSCTL_PATH)}
    proc = hnode.apply(
        node_bundle(plan_of(gateway=True, cidr6=True), "n1", hnode.conf()), FAKE_FAIL_HOST="sysctl -q -p"
    )
    assert proc.returncode == 1
    assert "the previous host files are back" in proc.stderr and not KEY_RE.search(proc.stderr)
    assert {p: hnode.file(p).read_text() for p in old} == old
    calls = hnode.host_calls()
    nft = hnode.file(host.NFT_PATH)
    assert calls.count(f"nft -f {nft}") == 2  # the new table, then the old one again
    # The values the new file changed go back first (the old file never names IPv6 forwarding).
    saved = [c for c in calls if c.startswith("sysctl -q -p") and c.endswith("/sysctl.saved")]
    assert len(saved) == 1 and "sysctl net.ipv6.conf.all.forwarding" in calls
    sysctl_file = f"sysctl -q -p {hnode.file(host.SYSCTL_PATH)}"
    assert [c for c in calls if c.startswith("sysctl -q -p")] == [sysctl_file, saved[0], sysctl_file]
    assert not list(hnode.file("/etc/wireguard").glob(".wgmesh-*"))  # no staged file left


def test_a_file_that_cannot_be_installed_puts_the_ones_before_it_back(hnode: HostNode) -> None:
    applied(hnode, plan_of())
    old = {p: hnode.file(p).read_text() for p in (host.NFT_PATH, access.SUDOERS_PATH)}
    bundle = node_bundle(plan_of(gateway=True, ssh_user="ops"), "n1", hnode.conf())
    proc = hnode.apply(bundle, FAKE_FAIL_CHOWN="sudoers.d")
    assert proc.returncode == 1 and f"could not install {access.SUDOERS_PATH}" in proc.stderr
    assert "the previous host files are back" in proc.stderr
    assert {p: hnode.file(p).read_text() for p in old} == old  # nft was replaced first, then put back
    assert not list(hnode.file("/etc/sudoers.d").glob(".wgmesh-*"))
    assert [c for c in hnode.host_calls() if " -c" not in c and " -t " not in c] == []  # nothing was loaded


@pytest.mark.parametrize(
    ("fail", "message"),
    [("nft -c", "nft refuses"), ("sshd -t", "sshd -t refuses"), ("visudo", "visudo refuses")],
)
def test_a_part_refused_by_its_checker_changes_nothing(hnode: HostNode, fail: str, message: str) -> None:
    applied(hnode, plan_of())
    old = hnode.file(host.NFT_PATH).read_text()
    proc = hnode.apply(node_bundle(plan_of(gateway=True), "n1", hnode.conf()), FAKE_FAIL_HOST=fail)
    assert proc.returncode == 1 and message in proc.stderr
    assert hnode.file(host.NFT_PATH).read_text() == old
    assert [c for c in hnode.host_calls() if " -c" not in c and " -t " not in c] == []


def test_rotated_admin_key_disappears_from_the_key_file(hnode: HostNode) -> None:
    applied(hnode, plan_of(keys=(KEY_A,)))
    assert applied(hnode, plan_of(keys=(KEY_A, KEY_B)))["host"] == "keys"
    assert hnode.file(f"{access.KEYS_DIR}/root").read_text() == f"{KEY_A}\n{KEY_B}\n"
    assert applied(hnode, plan_of(keys=(KEY_B,)))["host"] == "keys"
    assert hnode.file(f"{access.KEYS_DIR}/root").read_text() == f"{KEY_B}\n"


def test_ssh_user_is_created_on_a_running_node_and_its_old_key_file_goes(hnode: HostNode) -> None:
    """Defect: `sshUser` set on a running mesh was never created."""
    applied(hnode, plan_of())
    fields = applied(hnode, plan_of(ssh_user="ops"))
    assert fields["host"] == "sudoers,keys,user"
    (useradd,) = [c for c in hnode.host_calls() if c.startswith("useradd")]
    assert useradd.endswith("--password * ops") and f"--prefix {hnode.fs}" in useradd  # `*`: not locked
    assert "ops:x:" in hnode.file("/etc/passwd").read_text()
    assert hnode.file(access.SUDOERS_PATH).read_text().endswith("ops ALL=(ALL) NOPASSWD:ALL\n")
    assert sorted(p.name for p in hnode.file(access.KEYS_DIR).iterdir()) == ["ops"]  # root's is gone
    assert applied(hnode, plan_of(ssh_user="ops"))["host"] == "-"  # exists now: not created again


def test_a_bare_wg_conf_still_applies_as_a_bundle_of_wg0_alone(hnode: HostNode) -> None:
    proc = hnode.apply(hnode.conf())
    assert proc.returncode == 0, proc.stderr
    assert parse_summary(proc.stdout)["host"] == "-"
    assert hnode.host_calls() == [] and not hnode.file(host.NFT_PATH).exists()


def test_peers_only_reads_the_bundle_and_leaves_the_host_alone(hnode: HostNode) -> None:
    proc = hnode.apply(node_bundle(plan_of(gateway=True), "n1", hnode.conf()), "--peers-only")
    assert proc.returncode == 0, proc.stderr
    assert parse_summary(proc.stdout)["action"] == "peers" and "host" not in parse_summary(proc.stdout)
    assert hnode.host_calls() == [] and not hnode.file(host.NFT_PATH).exists()


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: t.rsplit("end", 1)[0], "truncated"),
        (lambda t: t.replace("file nft /etc/wireguard/", "file nft /etc/../"), "bad path"),
        (lambda t: t.replace("file nft", "file shell"), "unknown part"),
        (lambda t: t.replace("file sshd /etc/ssh/sshd_config.d/", "file sshd /etc/cron.d/"), "bad path"),
        (lambda t: t.replace("file sudoers", "file nft"), "bad path for it"),
        (lambda t: t.replace("file guard /etc/wgmesh/", "file nft /etc/wireguard/"), "two files for"),
        (lambda t: t.replace("ra-guard 0", "ra-guard 0\nrun rm -rf /"), "unknown line"),
    ],
    ids=["truncated", "dotdot", "part", "sshd-elsewhere", "sudoers-as-nft", "two-nft", "line"],
)
def test_a_malformed_bundle_is_refused_before_anything_changes(
    hnode: HostNode, mangle: Any, message: str
) -> None:
    proc = hnode.apply(mangle(node_bundle(plan_of(), "n1", hnode.conf())))
    assert proc.returncode == 1 and message in proc.stderr
    assert hnode.host_calls() == [] and not hnode.file(host.NFT_PATH).exists()


def test_a_two_phase_rotation_can_install_old_and_new_keys_then_the_new_only() -> None:
    conf = "[Interface]\n"
    plan = plan_of(keys=(KEY_B,))
    both = parse_bundle(node_bundle(plan, "n1", conf, ssh_public_keys=(KEY_A, KEY_B)))[1]
    assert [f.content for f in both if f.part == "keys"] == [f"{KEY_A}\n{KEY_B}\n"]
    assert node_bundle(plan, "n1", conf, ssh_public_keys=None) == node_bundle(plan, "n1", conf)
    assert [f.content for f in parse_bundle(node_bundle(plan, "n1", conf))[1] if f.part == "keys"] == [
        f"{KEY_B}\n"
    ]


def test_the_image_default_user_as_ssh_user_is_not_created_again() -> None:
    plan = plan_of(cloud="aws", ssh_user="ubuntu")  # the Ubuntu AMI's own user
    assert access.created_user(plan, "n1") is None
    assert "users" not in yaml.safe_load(node_user_data_from_conf(plan, "n1", "[Interface]\n"))
    assert "\nuser " not in node_bundle(plan, "n1", "[Interface]\n")
    assert access.created_user(plan_of(cloud="aws", ssh_user="ops"), "n1") == "ops"
