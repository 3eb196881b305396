"""The #cloud-config document and its fit into each cloud's user data limit."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import itertools
import os
from typing import Any

import pytest
import yaml
from test_cloudinit_plans import keys_for, mesh_plan, private_of, public_ips

from cloudinit.access import KEYS_DIR, SSHD_DROPIN_PATH, SUDOERS_PATH
from cloudinit.cloudconfig import (
    ACCEPT_RA_STEP,
    GUARD_ENABLE_STEP,
    GUARD_LOAD_STEP,
    INSTALL_STEP,
    SYSCTL_STEP,
    WG_CONF_PATH,
    WG_UP_STEP,
    write_file,
)
from cloudinit.host import (
    METADATA_GUARD_PATH,
    METADATA_GUARD_UNIT_PATH,
    NFT_PATH,
    SYSCTL_PATH,
    metadata_guard_ruleset,
    metadata_guard_unit,
    nft_ruleset,
    sysctl_conf,
)
from cloudinit.render import (
    USER_DATA_LIMITS,
    check_user_data_fits,
    encode_for_cloud,
    node_user_data,
    node_wg_conf,
)
from mesh.errors import RenderError
from mesh.plan import build_plan
from mesh.plan_types import MeshPlan
from mesh.spec import parse


def user_data(plan: MeshPlan, name: str = "n1") -> str:
    return node_user_data(plan, name, keys_for(plan, name), public_ips(plan))


def load(text: str) -> dict[str, Any]:
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def test_user_data_is_a_cloud_config_with_hostname_files_and_runcmd() -> None:
    plan = mesh_plan()
    text = user_data(plan, "n2")
    assert text.startswith("#cloud-config\n")
    doc = load(text)
    assert list(doc) == ["hostname", "write_files", "runcmd"]
    assert doc["hostname"] == "n2"


def test_write_files_hold_the_rendered_files_with_string_permissions() -> None:
    plan = mesh_plan(dual_stack=True, masquerade_first=True)
    text = user_data(plan, "n1")
    files = {f["path"]: f for f in load(text)["write_files"]}

    assert list(files) == [
        WG_CONF_PATH,
        NFT_PATH,
        SYSCTL_PATH,
        METADATA_GUARD_PATH,
        METADATA_GUARD_UNIT_PATH,
        SSHD_DROPIN_PATH,
        SUDOERS_PATH,
        f"{KEYS_DIR}/ubuntu",  # the image default user (no sshUser)
    ]
    assert files[WG_CONF_PATH]["content"] == node_wg_conf(plan, "n1", keys_for(plan, "n1"), public_ips(plan))
    assert files[NFT_PATH]["content"] == nft_ruleset(plan.node("n1"))
    assert files[SYSCTL_PATH]["content"] == sysctl_conf(ipv6=True)
    assert files[METADATA_GUARD_PATH]["content"] == metadata_guard_ruleset()
    assert files[METADATA_GUARD_UNIT_PATH]["content"] == metadata_guard_unit()
    assert {f["owner"] for f in files.values()} == {"root:root"}
    assert files[WG_CONF_PATH]["permissions"] == "0600"  # a string, not the integer 384
    assert files[NFT_PATH]["permissions"] == "0600"
    assert files[SYSCTL_PATH]["permissions"] == "0644"
    assert files[METADATA_GUARD_PATH]["permissions"] == "0644"  # rules, not secrets
    assert files[METADATA_GUARD_UNIT_PATH]["permissions"] == "0644"
    assert files[SUDOERS_PATH]["permissions"] == "0440"  # what visudo and sudo expect
    assert "permissions: '0600'" in text


def test_wg_conf_is_a_readable_block_not_an_escaped_string() -> None:
    text = user_data(mesh_plan())
    assert "  content: |\n    [Interface]\n" in text
    assert "\\n" not in text


def test_runcmd_installs_if_missing_guards_metadata_applies_this_sysctl_file_then_starts_wg_quick() -> None:
    runcmd = load(user_data(mesh_plan()))["runcmd"]
    steps = [INSTALL_STEP, GUARD_LOAD_STEP, GUARD_ENABLE_STEP, SYSCTL_STEP, WG_UP_STEP]
    assert runcmd == [list(step) for step in steps]
    assert runcmd[1] == ["nft", "-f", "/etc/wgmesh/metadata-guard.nft"]
    assert runcmd[2] == ["systemctl", "enable", "wgmesh-metadata-guard.service"]
    assert runcmd[3] == ["sysctl", "-p", "/etc/sysctl.d/90-wgmesh.conf"]
    assert runcmd[4] == ["systemctl", "enable", "--now", "wg-quick@wg0"]
    assert ACCEPT_RA_STEP not in [tuple(step) for step in runcmd]  # no IPv6 forwarding without cidr6
    install = runcmd[0][-1]
    assert install.startswith("command -v wg >/dev/null && command -v nft >/dev/null ||")
    assert "wireguard-tools" in install
    assert "nftables" in install


def test_nothing_touches_host_wide_sysctls() -> None:
    text = user_data(mesh_plan(dual_stack=True))
    assert "--system" not in text
    assert "kernel." not in text
    assert "vm." not in text


def test_ipv6_forwarding_only_with_a_dual_stack_overlay() -> None:
    single = load(user_data(mesh_plan(dual_stack=False)))["write_files"][2]["content"]
    dual = load(user_data(mesh_plan(dual_stack=True)))["write_files"][2]["content"]
    assert "net.ipv6.conf.all.forwarding" not in single
    assert "net.ipv6.conf.all.forwarding = 1" in dual


def test_ssh_keys_go_to_wgmesh_key_files_not_to_cloud_init_authorized_keys() -> None:
    """cloud-init's ssh_authorized_keys land in ~/.ssh/authorized_keys for good: a rotated key would stay."""
    plan = mesh_plan()
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINmmuPryri6glS1QlhaDJjKjzx04JfygjBfH72YlFlq/ admin@example"
    spec = dataclasses.replace(plan.spec, mesh=dataclasses.replace(plan.spec.mesh, ssh_public_keys=(key,)))
    doc = load(user_data(dataclasses.replace(plan, spec=spec)))
    assert "ssh_authorized_keys" not in doc
    files = {f["path"]: f for f in doc["write_files"]}
    assert files[f"{KEYS_DIR}/ubuntu"]["content"] == key + "\n"
    assert files[SSHD_DROPIN_PATH]["content"].splitlines()[-1] == (
        f"AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 {KEYS_DIR}/%u"
    )
    plain = {f["path"]: f for f in load(user_data(plan))["write_files"]}
    assert plain[f"{KEYS_DIR}/ubuntu"]["content"] == ""


def test_rendering_is_deterministic() -> None:
    assert user_data(mesh_plan(dual_stack=True)) == user_data(mesh_plan(dual_stack=True))
    plan = mesh_plan()
    keys = keys_for(plan, "n1")
    reordered = dataclasses.replace(keys, public_keys=dict(sorted(keys.public_keys.items(), reverse=True)))
    ips = dict(sorted(public_ips(plan).items(), reverse=True))
    assert node_user_data(plan, "n1", reordered, ips) == user_data(plan)


# ------------------------------------------------------------------ size limits per cloud


def test_limits_are_the_documented_ones() -> None:
    assert USER_DATA_LIMITS == {"aws": 16384, "hcloud": 32768, "gcp": 262144, "lab": None, "external": None}


@pytest.mark.parametrize("cloud", ["aws", "gcp", "hcloud", "lab", "external"])
def test_small_user_data_goes_plain(cloud: str) -> None:
    text = user_data(mesh_plan())
    encoded = encode_for_cloud(text, cloud, "n1")
    assert encoded.text == text
    assert encoded.gzip_b64 is None
    assert encoded.raw_bytes == encoded.sent_bytes == len(text.encode())


def test_aws_over_the_limit_is_gzipped_and_decodes_back() -> None:
    text = "#cloud-config\n" + "# padding that compresses well\n" * 1000
    assert len(text) > 16384
    encoded = encode_for_cloud(text, "aws", "n1")
    assert encoded.text is None
    assert encoded.gzip_b64 is not None
    packed = base64.b64decode(encoded.gzip_b64)
    assert gzip.decompress(packed).decode() == text
    assert encoded.sent_bytes == len(packed) <= 16384
    assert encoded.raw_bytes == len(text.encode())
    assert encode_for_cloud(text, "aws", "n1") == encoded  # gzip without a timestamp: same bytes


def test_a_large_real_mesh_fits_aws_only_gzipped() -> None:
    clouds = ("aws",) * 100
    plan = mesh_plan(clouds, client=False)  # type: ignore[arg-type]
    text = user_data(plan)
    assert len(text.encode()) > 16384
    encoded = encode_for_cloud(text, "aws", "n1")
    assert encoded.gzip_b64 is not None
    assert gzip.decompress(base64.b64decode(encoded.gzip_b64)).decode() == text


def secrets_in(text: str) -> list[str]:
    return [
        private_of("n1"),
        *(line.split("= ", 1)[1] for line in text.splitlines() if "PresharedKey" in line),
    ]


@pytest.mark.parametrize(("cloud", "limit"), [("aws", 16384), ("hcloud", 32768), ("gcp", 262144)])
def test_over_the_limit_is_a_render_error_naming_node_cloud_size_and_limit(cloud: str, limit: int) -> None:
    real = user_data(mesh_plan())
    # Random bytes do not compress: even gzip cannot bring this under the AWS limit.
    text = real + "# " + base64.b64encode(os.urandom(limit)).decode() + "\n"
    size = len(text.encode())
    with pytest.raises(RenderError) as err:
        encode_for_cloud(text, cloud, "aws-fra")
    message = str(err.value)
    assert message.startswith("aws-fra: ")
    assert str(size) in message
    assert str(limit) in message
    assert cloud in message
    secrets = secrets_in(real)
    assert len(secrets) == 4  # the private key and one PSK per peer (n2, n3, laptop)
    for secret in secrets:
        assert secret not in message


def test_hcloud_does_not_gzip() -> None:
    text = "#cloud-config\n" + "# compressible\n" * 3000
    assert len(text) > 32768 and len(gzip.compress(text.encode())) < 32768
    with pytest.raises(RenderError, match="over the 32768-byte limit of hcloud"):
        encode_for_cloud(text, "hcloud", "hetzner-nbg")


def test_lab_has_no_limit() -> None:
    text = "#cloud-config\n" + "#" * 1_000_000 + "\n"
    encoded = encode_for_cloud(text, "lab", "lab-a")
    assert encoded.text == text


def test_unknown_cloud_is_refused() -> None:
    with pytest.raises(RenderError, match="n1: no user data limit known for cloud 'azure'"):
        encode_for_cloud("#cloud-config\n", "azure", "n1")


def test_encoded_repr_shows_sizes_not_content() -> None:
    text = user_data(mesh_plan())
    shown = repr(encode_for_cloud(text, "gcp", "n1"))
    assert private_of("n1") not in shown
    assert "PrivateKey" not in shown
    assert f"raw_bytes={len(text.encode())}" in shown


# ----------------------------------------------------------------------------- big meshes


def gunzip_b64(content: str) -> str:
    return gzip.decompress(base64.b64decode(content, validate=True)).decode()


def test_compressed_write_file_is_gz_b64_of_the_content_and_deterministic() -> None:
    content = "[Interface]\nPrivateKey = x\n" * 50
    entry = write_file("/etc/wireguard/wg0.conf", content, "0600", compress=True)
    assert entry["encoding"] == "gz+b64"
    assert gunzip_b64(entry["content"]) == content
    assert entry == write_file("/etc/wireguard/wg0.conf", content, "0600", compress=True)
    assert "encoding" not in write_file("/etc/wireguard/wg0.conf", content, "0600")


def test_forced_compact_user_data_carries_the_same_wg_conf_and_leaves_other_files_plain() -> None:
    plan = mesh_plan()
    keys, ips = keys_for(plan, "n1"), public_ips(plan)
    compact = load(node_user_data(plan, "n1", keys, ips, compress_wg_conf=True))
    files = {f["path"]: f for f in compact["write_files"]}
    assert gunzip_b64(files[WG_CONF_PATH]["content"]) == node_wg_conf(plan, "n1", keys, ips)
    assert [p for p, f in files.items() if "encoding" in f] == [WG_CONF_PATH]
    plain = load(node_user_data(plan, "n1", keys, ips))  # small: readable
    assert all("encoding" not in f for f in plain["write_files"])
    assert {p: f["permissions"] for p, f in files.items()} == {
        f["path"]: f["permissions"] for f in plain["write_files"]
    }


def test_user_data_compresses_wg_conf_only_when_the_plain_text_is_over_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = mesh_plan()
    hcloud = next(n.name for n in plan.nodes if n.cloud == "hcloud")
    plain = user_data(plan, hcloud)
    monkeypatch.setitem(USER_DATA_LIMITS, "hcloud", len(plain.encode()))
    assert user_data(plan, hcloud) == plain  # exactly at the limit: still plain
    monkeypatch.setitem(USER_DATA_LIMITS, "hcloud", len(plain.encode()) - 1)
    compact = user_data(plan, hcloud)
    assert "encoding: gz+b64" in compact and len(compact) < len(plain)


def test_size_errors_tell_the_user_what_to_do() -> None:
    text = "#cloud-config\n" + "# x\n" * 20000
    for cloud in ("aws", "hcloud"):
        with pytest.raises(RenderError, match="use `topology: hub` in wgmesh:mesh"):
            encode_for_cloud(text + os.urandom(20000).hex(), cloud, "n1")


def test_the_preflight_check_names_a_node_per_cloud_before_any_key_or_ip_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = mesh_plan()
    check_user_data_fits(plan)  # small: fits everywhere
    monkeypatch.setitem(USER_DATA_LIMITS, "aws", 400)
    monkeypatch.setitem(USER_DATA_LIMITS, "hcloud", 400)
    with pytest.raises(RenderError) as e:
        check_user_data_fits(plan)
    message = str(e.value)
    assert "\n" not in message and message.count("use `topology: hub`") == 1
    named = {n.cloud for n in plan.nodes if f"{n.name}: user data is " in message}
    assert named == {"aws", "hcloud"}  # one node per cloud over its limit, none of GCP's
    assert "PrivateKey" not in message and "PresharedKey" not in message


def test_with_ipv6_forwarding_the_ra_guard_runs_just_before_the_sysctl_file() -> None:
    runcmd = [tuple(step) for step in load(user_data(mesh_plan(dual_stack=True)))["runcmd"]]
    guard = [GUARD_LOAD_STEP, GUARD_ENABLE_STEP]
    assert runcmd == [INSTALL_STEP, *guard, ACCEPT_RA_STEP, SYSCTL_STEP, WG_UP_STEP]
    assert ACCEPT_RA_STEP[:2] == ("sh", "-c")


def full_mesh_plan(n: int, endpoints: str) -> MeshPlan:
    """n nodes over the three clouds, a full mesh with PSKs, nodes dialing over `endpoints`."""
    clouds = {"aws": "eu-central-1", "gcp": "europe-west3", "hcloud": "nbg1"}
    nodes = [
        {"name": f"n{i}", "cloud": c, "region": clouds[c], "address": f"10.96.{i // 250}.{i % 250 + 1}"}
        for i, c in zip(range(n), itertools.cycle(clouds), strict=False)
    ]
    return build_plan(parse({"mesh": {"cidr": "10.96.0.0/16", "endpoints": endpoints}, "nodes": nodes}))


def test_the_preflight_check_sizes_ipv6_endpoints_as_ipv6() -> None:
    """A 150-node full mesh fits AWS's 16 KB dialing IPv4 (~14.4 KB gzipped) but not dialing
    IPv6 (~17.3 KB): the check must render the longer, less compressible addresses."""
    check_user_data_fits(full_mesh_plan(150, "ipv4"))
    with pytest.raises(
        RenderError, match=r"^n\d+: user data is \d+ bytes \(\d+ gzipped\), over the 16384-byte"
    ):
        check_user_data_fits(full_mesh_plan(150, "ipv6"))
