"""The day-2 keys of the stack config: liveUpdates, sshUser, sshHostKey, wgmesh:sshPrivateKey."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.errors import ConfigError
from mesh.spec import login_user, parse, unknown_config_keys

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINmmuPryri6glS1QlhaDJjKjzx04JfygjBfH72YlFlq/ admin@example"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def config(**mesh: Any) -> dict[str, Any]:
    return {
        "mesh": {"cidr": "10.77.0.0/24", **mesh},
        "nodes": [
            {"name": "aws-u", "cloud": "aws", "region": "eu-central-1"},
            {"name": "aws-d", "cloud": "aws", "region": "eu-central-1", "image": "debian-12"},
            {"name": "gcp-u", "cloud": "gcp", "region": "europe-west3", "image": "ubuntu-22.04"},
            {"name": "hz", "cloud": "hcloud", "region": "nbg1", "image": "debian-12"},
            {"name": "lab", "cloud": "lab", "publicIp": "198.51.100.1"},
        ],
    }


def problems(cfg: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(cfg)
    return [str(p) for p in info.value.problems]


LIVE = {"liveUpdates": True, "adminCidrs": ["203.0.113.0/24"], "sshPublicKeys": [ED25519]}


def test_live_updates_default_off_and_readable() -> None:
    assert not parse(config()).mesh.live_updates
    assert parse(config(**LIVE)).mesh.live_updates


def test_live_updates_need_admin_cidrs_and_ssh_keys() -> None:
    assert problems(config(liveUpdates=True)) == [
        "wgmesh:mesh.liveUpdates: needs adminCidrs: live updates reach nodes over SSH",
        "wgmesh:mesh.liveUpdates: needs sshPublicKeys: live updates log in with an SSH key",
    ]
    assert problems(config(liveUpdates=True, adminCidrs=["203.0.113.0/24"])) == [
        "wgmesh:mesh.liveUpdates: needs sshPublicKeys: live updates log in with an SSH key"
    ]


def test_live_updates_must_be_a_boolean() -> None:
    assert problems(config(liveUpdates="true")) == [
        "wgmesh:mesh.liveUpdates: must be true or false, got a string"
    ]


def test_login_user_defaults_by_cloud_and_image() -> None:
    spec = parse(config(**LIVE))
    users = {n.name: login_user(spec.mesh, n) for n in spec.nodes}
    assert users == {"aws-u": "ubuntu", "aws-d": "admin", "gcp-u": "ubuntu", "hz": "root", "lab": "root"}


def test_ssh_user_overrides_every_default() -> None:
    spec = parse(config(sshUser="ops", **LIVE))
    assert {login_user(spec.mesh, n) for n in spec.nodes} == {"ops"}


@pytest.mark.parametrize("user", ["Root", "1admin", "ad min", "a" * 33, "", "admin\n", "ädmin"])
def test_bad_ssh_user(user: str) -> None:
    assert problems(config(sshUser=user)) == [f"wgmesh:mesh.sshUser: {user!r} is not a valid user name"]


def test_ssh_user_must_be_a_string() -> None:
    assert problems(config(sshUser=0)) == ["wgmesh:mesh.sshUser: must be a string, got a number"]


def test_pinned_host_key_is_read_and_checked() -> None:
    good = config()
    good["nodes"][0]["sshHostKey"] = f"  {HOST_KEY}  "
    assert parse(good).nodes[0].ssh_host_key == HOST_KEY
    assert parse(good).nodes[1].ssh_host_key is None
    bad = config()
    bad["nodes"][2]["sshHostKey"] = "AAAAC3Nz"
    assert problems(bad) == [
        "wgmesh:nodes[2].sshHostKey: is not an SSH host public key ('ssh-ed25519 AAAA...')"
    ]


def test_ssh_private_key_is_a_known_config_key() -> None:
    assert unknown_config_keys(["wgmesh:mesh", "wgmesh:sshPrivateKey"]) == []
    (typo,) = unknown_config_keys(["wgmesh:sshPrivateKy"])
    assert str(typo) == "wgmesh:sshPrivateKy: unknown config key (did you mean 'wgmesh:sshPrivateKey'?)"
