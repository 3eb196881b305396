"""The stack file's camelCase keys come from the spec dataclasses' fields: a new field gets its key
without a hand-kept map, and the keys users already write stay exactly these."""

from __future__ import annotations

from dataclasses import fields

import pytest

from mesh.spec import (
    CLIENT_KEYS,
    MESH_KEYS,
    NODE_KEYS,
    ClientSpec,
    MeshSettings,
    NodeSpec,
    config_key,
    parse,
)

# What users write in wgmesh:mesh, wgmesh:nodes[i], wgmesh:clients[i] (README's reference).
USER_KEYS = {
    "mesh": [
        "cidr",
        "cidr6",
        "port",
        "topology",
        "keepalive",
        "presharedKeys",
        "adminCidrs",
        "sshPublicKeys",
        "keyEpoch",
        "liveUpdates",
        "sshUser",
        "endpoints",
        "replaceNetworks",
    ],
    "node": [
        "name",
        "cloud",
        "region",
        "zone",
        "size",
        "image",
        "address",
        "address6",
        "subnets",
        "masquerade",
        "hub",
        "gateway",
        "publicIp",
        "publicIp6",
        "underlayMtu",
        "keyEpoch",
        "sshHostKey",
        "endpoint",  # ext (issue 15): cloud: external nodes
        "lanInterface",
        "sshHost",
    ],
    "client": ["name", "address", "address6", "fullTunnel", "dns", "underlayMtu", "keyEpoch"],
}
MAPS = {"mesh": (MESH_KEYS, MeshSettings), "node": (NODE_KEYS, NodeSpec), "client": (CLIENT_KEYS, ClientSpec)}


@pytest.mark.parametrize("section", sorted(MAPS))
def test_the_keys_users_write_are_unchanged(section: str) -> None:
    keys, _ = MAPS[section]
    assert list(keys) == USER_KEYS[section]


@pytest.mark.parametrize("section", sorted(MAPS))
def test_every_field_but_the_parsers_own_index_has_its_key(section: str) -> None:
    keys, cls = MAPS[section]
    names = [f.name for f in fields(cls)]
    assert list(keys.values()) == [n for n in names if n != "index"]
    assert all(config_key(name) == key for key, name in keys.items())
    assert "index" not in keys


@pytest.mark.parametrize(
    ("field_name", "key"),
    [("cidr6", "cidr6"), ("public_ip6", "publicIp6"), ("ssh_host_key", "sshHostKey"), ("dns", "dns")],
)
def test_config_key_is_camel_case(field_name: str, key: str) -> None:
    assert config_key(field_name) == key


def test_index_is_no_key_a_user_can_set() -> None:
    with pytest.raises(ValueError, match=r"wgmesh:nodes\[0\]\.index: unknown key"):
        parse({"mesh": {"cidr": "10.77.0.0/24"}, "nodes": [{"name": "a", "cloud": "lab", "index": 3}]})
