"""ext (issue 15): the one-command installer of a `cloud: external` host, run for real under a fake root.

Every host path lives below WGMESH_ROOT; PATH holds the real coreutils and fakes for what would
touch the machine (apt-get, systemctl, wg, wg-quick, ip, nft, sysctl, ...). The fakes record
their calls, so the tests see what the installer did: tools installed only where missing,
wg-quick@wg0 enabled once, the same files with the same modes as the #cloud-config, one line
printed, no key on stdout or stderr, and a second run that changes nothing. The netns lab runs
it on a real node (tests/lab).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from test_cloudinit_bundle import FAKE_CHOWN, FAKE_TOOL
from test_cloudinit_sync import FAKE_WG, FAKE_WG_QUICK, KEY_RE

from cloudinit.installer import SUMMARY_PREFIX, node_installer
from cloudinit.render import node_user_data, node_wg_conf
from mesh.keys import NodeKeys
from mesh.plan import build_plan
from mesh.plan_types import MeshPlan
from mesh.spec import parse
from tools.render import KeyMaterial

# The tools the fakes stand in for: never the machine's own, whatever it has installed.
FAKED = {
    "apt-get",
    "systemctl",
    "wg",
    "wg-quick",
    "ip",
    "nft",
    "sysctl",
    "useradd",
    "visudo",
    "sshd",
    "chown",
}
FAKE_IP = r"""#!/bin/bash
printf '%s\n' "$*" >>"$FAKE/ip"
if [[ $* == *"dev wg0"* ]] && [ ! -f "$FAKE/up" ]; then exit 1; fi  # wg0 exists once wg-quick up ran
case "$*" in
  "link show dev wg0" | "-o link show dev wg0") echo "5: wg0: <POINTOPOINT,UP> mtu 1420 qdisc noqueue" ;;
  "-o addr show dev wg0 scope global") echo "5: wg0    inet $(cat "$FAKE/addr") scope global wg0" ;;
esac
exit 0
"""
# wg-quick as installed: `up` brings wg0 up (the test then writes what it runs into $FAKE/dump).
FAKE_WG_QUICK_UP = FAKE_WG_QUICK.replace("exit 0; fi", 'touch "$FAKE/up"; exit 0; fi', 1)
# apt-get: records its calls; `install` puts the packages' commands on PATH (as fakes).
FAKE_APT = r"""#!/bin/bash
printf 'apt-get %s\n' "$*" >>"$FAKE/host-calls"
[ "$1" = install ] || exit 0
for pkg in "$@"; do
  case $pkg in
    wireguard-tools) cp "$FAKE/pkg/wg" "$FAKE/pkg/wg-quick" "$FAKE/bin/" ;;
    nftables) cp "$FAKE/pkg/nft" "$FAKE/bin/" ;;
  esac
done
"""
# systemctl: `is-enabled` fails until `enable` ran; every call recorded.
FAKE_SYSTEMCTL = r"""#!/bin/bash
printf 'systemctl %s\n' "$*" >>"$FAKE/host-calls"
case $1 in
  is-enabled) [ -f "$FAKE/enabled" ] ;;
  enable) touch "$FAKE/enabled" ;;
esac
"""

STACK = {
    "mesh": {
        "cidr": "10.77.0.0/24",
        "topology": "hub",
        "keepalive": 2,
        "sshPublicKeys": [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b"
        ],
    },
    "nodes": [
        {"name": "hub", "cloud": "lab", "publicIp": "198.51.100.1", "hub": True},
        {
            "name": "home",
            "cloud": "external",
            "subnets": ["10.11.12.0/24"],
            "masquerade": True,
            "lanInterface": "wlp0s0f0",
        },
    ],
    "clients": [{"name": "laptop"}],
}


class Host:
    """A Debian host with no WireGuard tools yet, every path below `fs`, systemd 'running'."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.fs = tmp / "fs"
        (self.fs / "etc").mkdir(parents=True)
        (self.fs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
        (self.fs / "run" / "systemd" / "system").mkdir(parents=True)
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.real = tmp / "real"  # the machine's commands minus the faked ones
        self.real.mkdir()
        for d in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
            for entry in os.scandir(d) if os.path.isdir(d) else ():
                target = self.real / entry.name
                if entry.name not in FAKED and not target.exists() and os.access(entry.path, os.X_OK):
                    target.symlink_to(entry.path)
        pkg = tmp / "pkg"  # what the packages install
        pkg.mkdir()
        fakes = {"wg": FAKE_WG, "wg-quick": FAKE_WG_QUICK_UP, "nft": FAKE_TOOL}
        for name, text in fakes.items():
            (pkg / name).write_text(text)
            (pkg / name).chmod(0o755)
        base = {"apt-get": FAKE_APT, "systemctl": FAKE_SYSTEMCTL, "ip": FAKE_IP, "chown": FAKE_CHOWN}
        base |= {t: FAKE_TOOL for t in ("sysctl", "useradd", "visudo", "sshd")}
        for name, text in base.items():
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)

    def run(self, script: Path, shell: str = "sh") -> subprocess.CompletedProcess[str]:
        (self.tmp / "host-calls").unlink(missing_ok=True)
        return subprocess.run(
            [str(self.real / shell), str(script)],
            text=True,
            capture_output=True,
            check=False,
            env={
                "PATH": f"{self.bin}:{self.real}",
                "FAKE": str(self.tmp),
                "WGMESH_ROOT": str(self.fs),
                "TMPDIR": str(self.tmp),
            },
        )

    def calls(self) -> list[str]:
        path = self.tmp / "host-calls"
        return path.read_text().splitlines() if path.exists() else []

    def file(self, path: str) -> Path:
        return self.fs / path.lstrip("/")

    def wg0_runs(self, conf: str, plan: MeshPlan, name: str) -> None:
        """What wg0 runs after `wg-quick up` with `conf`: the fake `wg show` and `ip` answer it."""
        iface = plan.node(name).iface
        (self.tmp / "addr").write_text(f"{iface.address}\n")
        priv = re.search(r"PrivateKey = (\S+)", conf)
        assert priv is not None
        rows = [f"{priv.group(1)}\tpub\t51820\toff"]
        for section in conf.split("[Peer]")[1:]:
            get = {k: v for k, v in re.findall(r"^(\w+) = (.*)$", section, re.M)}
            allowed = get["AllowedIPs"].replace(" ", "")
            row = [get["PublicKey"], get.get("PresharedKey", "(none)"), get.get("Endpoint", "(none)")]
            rows.append("\t".join([*row, allowed, "0", "0", "0", get.get("PersistentKeepalive", "off")]))
        (self.tmp / "dump").write_text("\n".join(rows) + "\n")


def rendered(name: str = "home") -> tuple[MeshPlan, str, str]:
    """The plan, the node's wg0.conf and its user data (one set of keys for both forms)."""
    plan = build_plan(parse(STACK))
    material = KeyMaterial.fresh(plan.spec)
    keys: NodeKeys = material.for_member(name, material.public_keys())
    endpoints = {"hub": "198.51.100.1", "home": "192.0.2.10"}
    conf = node_wg_conf(plan, name, keys, endpoints)
    return plan, conf, node_user_data(plan, name, keys, endpoints)


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_installer_installs_enables_writes_the_cloud_config_files_and_is_idempotent(
    tmp_path: Path, shell: str
) -> None:
    plan, conf, user_data = rendered()
    script = tmp_path / "install.sh"
    script.write_text(node_installer(plan, "home", conf))
    h = Host(tmp_path)

    first = h.run(script, shell)
    assert first.returncode == 0, first.stderr
    assert first.stderr == "" and len(first.stdout.splitlines()) == 1  # one line, nothing else
    line = first.stdout.strip()
    assert line.startswith(
        f"{SUMMARY_PREFIX} home installed=wireguard-tools,nftables enabled=wg-quick@wg0 wg0 "
    )
    assert (
        " action=restart reason=down " in line
        and " host=guard-unit,guard,nft,sysctl,sudoers,keys,sshd " in line
    )
    calls = h.calls()
    assert calls[:2] == [
        "apt-get update -q",
        "apt-get install -y -q --no-install-recommends wireguard-tools nftables",
    ]
    assert "systemctl enable wg-quick@wg0" in calls
    assert calls.index("systemctl enable wg-quick@wg0") < calls.index(
        f"nft -f {h.file('/etc/wgmesh/metadata-guard.nft')}"
    )
    assert "wg-quick up wg0" in (tmp_path / "calls").read_text()  # wg0 brought up by the apply
    # The same files with the same modes and owner as the #cloud-config's write_files.
    written = yaml.safe_load(user_data)["write_files"]
    assert len(written) == 8
    for f in written:
        target = h.file(f["path"])
        assert target.read_text() == f["content"], f["path"]
        assert oct(target.stat().st_mode & 0o777) == oct(int(f["permissions"], 8)), f["path"]
    assert (
        'oifname "wlp0s0f0" ip daddr { 10.11.12.0/24 } masquerade'
        in h.file("/etc/wireguard/wgmesh.nft").read_text()
    )
    assert not KEY_RE.search(first.stdout + first.stderr)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("wgmesh-install.")]  # its temp dir is gone

    h.wg0_runs(conf, plan, "home")
    second = h.run(script, shell)
    assert second.returncode == 0, second.stderr
    assert second.stderr == "" and len(second.stdout.splitlines()) == 1
    fields = dict(w.split("=", 1) for w in second.stdout.split() if "=" in w)
    assert (fields["installed"], fields["enabled"], fields["action"], fields["host"]) == (
        "-",
        "-",
        "sync",
        "-",
    )
    assert (fields["peers_added"], fields["peers_changed"], fields["peers_removed"]) == ("0", "0", "0")
    assert not [c for c in h.calls() if c.startswith(("apt-get", "systemctl enable"))]
    assert not KEY_RE.search(second.stdout + second.stderr)


def test_installer_refuses_a_non_root_user_and_prints_no_key() -> None:
    plan, conf, _ = rendered()
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)  # noqa: S103 `nobody` reads the script here (under root the test drops to it)
        script = Path(d) / "install.sh"
        script.write_text(node_installer(plan, "home", conf))
        script.chmod(0o644)
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        proc = subprocess.run([*drop, "sh", str(script)], text=True, capture_output=True, check=False)
    assert proc.returncode == 1 and "run it as root" in proc.stderr and not KEY_RE.search(proc.stderr)


def test_a_failed_apply_says_why_in_one_keyed_message_without_a_key(tmp_path: Path) -> None:
    plan, conf, _ = rendered()
    script = tmp_path / "install.sh"
    script.write_text(node_installer(plan, "home", conf))
    h = Host(tmp_path)
    (tmp_path / "pkg" / "nft").write_text(
        '#!/bin/sh\necho "bad ruleset near $(head -c 44 /dev/urandom | base64 | head -c 43)=" >&2\nexit 1\n'
    )
    proc = h.run(script)
    assert proc.returncode == 1
    assert proc.stdout == "" and proc.stderr.startswith("wgmesh-install: home: error: the apply failed")
    assert not KEY_RE.search(proc.stderr)


def test_installer_holds_the_bundle_once_and_the_script_text_checks_as_sh(tmp_path: Path) -> None:
    plan, conf, _ = rendered()
    text = node_installer(plan, "home", conf)
    assert text.startswith("#!/bin/sh\n") and len(re.findall("^wgmesh-bundle 1$", text, re.M)) == 1
    assert "@BUNDLE@" not in text and "@APPLY@" not in text and "NODE=home\n" in text
    for shell in ("sh", "bash"):
        proc = subprocess.run([shell, "-n"], input=text, text=True, capture_output=True, check=False)
        assert proc.returncode == 0, proc.stderr
