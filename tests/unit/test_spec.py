"""Every validation rule of the stack config: the message and the fully qualified key it names.

Each test starts from one valid config and breaks one thing, so the expected problem list is
exact: a rule that also fires somewhere else, or names the wrong key, fails the test.
"""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

import pytest

from mesh.errors import ConfigError, Problem
from mesh.plan import build_plan, hashed_host
from mesh.spec import parse
from mesh.stackfile import load_config, load_spec, stack_name, stack_path

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINmmuPryri6glS1QlhaDJjKjzx04JfygjBfH72YlFlq/ admin@example"
NAME_RULE = "must match [a-z][a-z0-9-]{0,30}"
CLOUD_LIST = "use one of aws, gcp, hcloud, lab, external"
HCLOUD_LIST = "(nbg1, fsn1, hel1, ash, hil, sin)"
NOT_AN_ADDRESS = "does not appear to be an IPv4 or IPv6 address"
NOT_A_NETWORK = "does not appear to be an IPv4 or IPv6 network"


def valid() -> dict[str, Any]:
    """A config touching every cloud, a lab node and a client; parse() accepts it."""
    return {
        "mesh": {"cidr": "10.77.0.0/24"},
        "nodes": [
            {"name": "aws-fra", "cloud": "aws", "region": "eu-central-1", "address": "10.77.0.1"},
            {"name": "gcp-fra", "cloud": "gcp", "region": "europe-west3", "address": "10.77.0.2"},
            {"name": "hz-nbg", "cloud": "hcloud", "region": "nbg1", "address": "10.77.0.3"},
            {"name": "lab-a", "cloud": "lab", "publicIp": "198.51.100.1", "address": "10.77.0.4"},
        ],
        "clients": [{"name": "laptop", "address": "10.77.0.100"}],
    }


def problems(config: dict[str, Any]) -> list[str]:
    """The problem lines parse() reports; fails the test if parse() accepts the config."""
    with pytest.raises(ConfigError) as info:
        parse(config)
    return [str(p) for p in info.value.problems]


def only_problem(config: dict[str, Any]) -> tuple[str, str]:
    """The single problem parse() reports, as (key, message); fails on none or several."""
    with pytest.raises(ConfigError) as info:
        parse(config)
    assert len(info.value.problems) == 1, [str(p) for p in info.value.problems]
    (p,) = info.value.problems
    assert str(info.value) == f"{p.key}: {p.message}"
    return p.key, p.message


def with_mesh(**changes: Any) -> dict[str, Any]:
    config = valid()
    config["mesh"].update(changes)
    return config


def with_node(i: int, **changes: Any) -> dict[str, Any]:
    config = valid()
    config["nodes"][i].update(changes)
    return config


def with_client(**changes: Any) -> dict[str, Any]:
    config = valid()
    config["clients"][0].update(changes)
    return config


def without(config: dict[str, Any], section: str, i: int | None, key: str) -> dict[str, Any]:
    target = config[section] if i is None else config[section][i]
    del target[key]
    return config


def dual_stack(config: dict[str, Any]) -> dict[str, Any]:
    config["mesh"]["cidr6"] = "fd77:77::/64"
    return config


# ----------------------------------------------------------------------------- the valid baseline


def test_valid_config_parses_with_defaults() -> None:
    spec = parse(valid())
    assert [n.name for n in spec.nodes] == ["aws-fra", "gcp-fra", "hz-nbg", "lab-a"]
    assert [c.name for c in spec.clients] == ["laptop"]
    mesh = spec.mesh
    assert (mesh.port, mesh.topology, mesh.keepalive, mesh.preshared_keys) == (51820, "mesh", 25, True)
    assert mesh.cidr6 is None
    gcp = spec.node("gcp-fra")
    # No zone: the catalog picks an UP zone offering the size at preview (mesh/placement.py).
    assert gcp.zone == "" and gcp.size == "e2-small" and gcp.underlay_mtu == 1460
    assert spec.node("aws-fra").size == "t3.micro" and spec.node("aws-fra").underlay_mtu == 1500
    # No size: the cheapest current type offered in the location, asked of Hetzner at preview.
    assert spec.node("hz-nbg").size == "" and spec.node("hz-nbg").zone == ""
    assert spec.node("lab-a").public_ip == ipaddress.IPv4Address("198.51.100.1")
    assert [n.index for n in spec.nodes] == [0, 1, 2, 3]
    assert spec.node("lab-a").key == "wgmesh:nodes[3]" and spec.clients[0].key == "wgmesh:clients[0]"
    assert not any(n.routes for n in spec.nodes)


def test_every_setting_is_read() -> None:
    config = with_mesh(
        cidr6="fd77:77::/64",
        port=51999,
        topology="hub",
        keepalive=0,
        presharedKeys=False,
        adminCidrs=["203.0.113.0/24", "2001:db8::/32"],
        sshPublicKeys=[f"  {ED25519}  "],
        keyEpoch=3,
    )
    config["nodes"][0].update(
        hub=True,
        gateway=True,
        subnets=["10.0.4.0/24", "2001:db8:4::/48"],
        masquerade=True,
        address6="fd77:77::1",
        underlayMtu=9001,
        keyEpoch=2,
        size="t3.small",
        image="debian-12",
    )
    config["nodes"][1].update(zone="europe-west3-c", image="ubuntu-22.04")
    config["clients"][0].update(
        fullTunnel=True, dns=["10.77.0.1", "fd77:77::1"], address6="fd77:77::64", underlayMtu=1360
    )
    spec = parse(config)
    m = spec.mesh
    assert m.cidr6 == ipaddress.IPv6Network("fd77:77::/64")
    assert (m.port, m.topology, m.keepalive, m.preshared_keys, m.key_epoch) == (51999, "hub", 0, False, 3)
    assert m.admin_cidrs == (ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8::/32"))
    assert m.ssh_public_keys == (ED25519,)
    n = spec.node("aws-fra")
    assert n.hub and n.gateway and n.masquerade and n.routes
    assert n.subnets == (ipaddress.ip_network("10.0.4.0/24"), ipaddress.ip_network("2001:db8:4::/48"))
    assert n.address6 == ipaddress.IPv6Address("fd77:77::1")
    assert (n.underlay_mtu, n.key_epoch, n.size, n.image) == (9001, 2, "t3.small", "debian-12")
    assert spec.node("gcp-fra").zone == "europe-west3-c"
    c = spec.clients[0]
    assert c.full_tunnel and c.underlay_mtu == 1360
    assert c.dns == (ipaddress.ip_address("10.77.0.1"), ipaddress.ip_address("fd77:77::1"))
    assert c.address6 == ipaddress.IPv6Address("fd77:77::64")


def test_clients_are_optional_and_null_sections_mean_empty() -> None:
    config = valid()
    del config["clients"]
    assert parse(config).clients == ()
    config["clients"] = None
    assert parse(config).clients == ()


def test_parse_does_not_mutate_its_input() -> None:
    config = valid()
    before = copy.deepcopy(config)
    parse(config)
    assert config == before


# ----------------------------------------------------------------------------- the error itself


def test_error_is_a_config_error_and_a_value_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse(with_mesh(port=0))
    assert isinstance(info.value, ValueError)
    assert str(info.value) == "wgmesh:mesh.port: 0 is out of range 1..65535"
    assert info.value.problems == (Problem("wgmesh:mesh.port", "0 is out of range 1..65535"),)


def test_config_error_refuses_an_empty_problem_list() -> None:
    with pytest.raises(ValueError, match="at least one problem"):
        ConfigError([])


def test_all_problems_reported_at_once_in_file_order() -> None:
    config = valid()
    config["nodes"] += [
        {"name": f"lab-{i}", "cloud": "lab", "publicIp": f"198.51.100.{10 + i}"} for i in range(8)
    ]
    config["clients"][0]["fullTunel"] = True
    config["nodes"][11]["underlayMtu"] = 100
    config["nodes"][2]["region"] = "fra1"
    config["mesh"]["port"] = "51820"
    config["nodes"][0]["zone"] = "eu-central-1a"
    with pytest.raises(ConfigError) as info:
        parse(config)
    assert str(info.value).splitlines() == [
        "5 problems in the wgmesh stack config:",
        "  wgmesh:mesh.port: must be a whole number, got a string",
        "  wgmesh:nodes[0].zone: only GCP nodes take a zone; aws uses region",
        f"  wgmesh:nodes[2].region: 'fra1' is not a Hetzner location {HCLOUD_LIST}",
        "  wgmesh:nodes[11].underlayMtu: 100 is out of range 1280..9216",
        "  wgmesh:clients[0].fullTunel: unknown key (did you mean 'fullTunnel'?)",
    ]


def test_one_problem_per_line_within_one_member_sorted_by_key() -> None:
    assert problems(with_node(0, port=1, region="nowhere", address="10.78.0.1")) == [
        "wgmesh:nodes[0].address: 10.78.0.1 is outside wgmesh:mesh.cidr 10.77.0.0/24",
        "wgmesh:nodes[0].port: unknown key (known: address, address6, cloud, endpoint, gateway, hub, image, "
        "keyEpoch, lanInterface, masquerade, name, publicIp, publicIp6, region, size, sshHost, sshHostKey, "
        "subnets, underlayMtu, zone)",
        "wgmesh:nodes[0].region: 'nowhere' is not an AWS region (e.g. eu-central-1)",
    ]


def test_problem_sorting_survives_keys_with_brackets_and_digits() -> None:
    """Unknown keys are user text: sorting must not compare an int index with a str part."""
    odd = ["a[1]b", "a[1]2", "a[1]²", "a.b"]
    with pytest.raises(ConfigError) as info:
        parse(with_mesh(**dict.fromkeys(odd, 1)))
    assert sorted(p.key for p in info.value.problems) == sorted(f"wgmesh:mesh[{k!r}]" for k in odd)
    assert all(p.message.startswith("unknown key") for p in info.value.problems)


# ----------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        (with_mesh(toplogy="hub"), "wgmesh:mesh.toplogy", "unknown key (did you mean 'topology'?)"),
        (
            with_mesh(presharedkeys=True),
            "wgmesh:mesh.presharedkeys",
            "unknown key (did you mean 'presharedKeys'?)",
        ),
        (
            with_node(1, subnet=["10.0.4.0/24"]),
            "wgmesh:nodes[1].subnet",
            "unknown key (did you mean 'subnets'?)",
        ),
        (
            with_node(3, publicIP="1.2.3.4"),
            "wgmesh:nodes[3].publicIP",
            "unknown key (did you mean 'publicIp'?)",
        ),
        (
            with_client(fulltunnel=True),
            "wgmesh:clients[0].fulltunnel",
            "unknown key (did you mean 'fullTunnel'?)",
        ),
        (
            with_client(cloud="aws"),
            "wgmesh:clients[0].cloud",
            "unknown key (known: address, address6, dns, fullTunnel, keyEpoch, name, underlayMtu)",
        ),
        (
            with_mesh(zzz=1),
            "wgmesh:mesh.zzz",
            "unknown key (known: adminCidrs, cidr, cidr6, endpoints, keepalive, keyEpoch, liveUpdates, "
            "port, presharedKeys, replaceNetworks, sshPublicKeys, sshUser, topology)",
        ),
    ],
)
def test_unknown_keys_suggest_the_closest_known_key(config: dict[str, Any], key: str, message: str) -> None:
    assert only_problem(config) == (key, message)


def test_non_string_keys_are_unknown_keys() -> None:
    config = valid()
    config["mesh"][7] = "x"
    key, message = only_problem(config)
    assert key == "wgmesh:mesh[7]" and message.startswith("unknown key")


# ----------------------------------------------------------------------------- sections and shapes


def test_mesh_section_required() -> None:
    config = valid()
    del config["mesh"]
    assert only_problem(config) == ("wgmesh:mesh", "is required (at least `cidr`)")


def test_mesh_section_must_be_a_mapping() -> None:
    config = valid()
    config["mesh"] = ["10.77.0.0/24"]
    assert only_problem(config) == ("wgmesh:mesh", "must be a mapping, got a list")


@pytest.mark.parametrize("nodes", [None, [], "missing"])
def test_nodes_required(nodes: object) -> None:
    config = valid()
    if nodes == "missing":
        del config["nodes"]
    else:
        config["nodes"] = nodes
    assert only_problem(config) == ("wgmesh:nodes", "at least one node is required")


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("nodes", {"name": "a"}, "must be a list, got a mapping"),
        ("nodes", "aws-fra", "must be a list, got a string"),
        ("clients", {"name": "laptop"}, "must be a list, got a mapping"),
        ("clients", 5, "must be a list, got a number"),
    ],
)
def test_sections_must_be_lists(section: str, value: object, message: str) -> None:
    config = valid()
    config[section] = value
    assert only_problem(config) == (f"wgmesh:{section}", message)


def test_members_must_be_mappings() -> None:
    config = valid()
    config["nodes"][1] = "gcp-fra"
    config["clients"].append(["laptop2"])
    assert problems(config) == [
        "wgmesh:nodes[1]: must be a mapping, got a string",
        "wgmesh:clients[1]: must be a mapping, got a list",
    ]


# ----------------------------------------------------------------------------- wrong types

WHOLE_NUMBER = "must be a whole number, got"
TRUE_OR_FALSE = "must be true or false, got"


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        (with_mesh(port=True), "wgmesh:mesh.port", f"{WHOLE_NUMBER} a boolean"),
        (with_mesh(port="51820"), "wgmesh:mesh.port", f"{WHOLE_NUMBER} a string"),
        (with_mesh(port=51820.0), "wgmesh:mesh.port", f"{WHOLE_NUMBER} a number"),
        (with_mesh(keepalive=False), "wgmesh:mesh.keepalive", f"{WHOLE_NUMBER} a boolean"),
        (with_mesh(keyEpoch=True), "wgmesh:mesh.keyEpoch", f"{WHOLE_NUMBER} a boolean"),
        (with_mesh(presharedKeys="yes"), "wgmesh:mesh.presharedKeys", f"{TRUE_OR_FALSE} a string"),
        (with_mesh(presharedKeys=1), "wgmesh:mesh.presharedKeys", f"{TRUE_OR_FALSE} a number"),
        (with_mesh(topology=1), "wgmesh:mesh.topology", "must be a string, got a number"),
        (with_mesh(cidr=10), "wgmesh:mesh.cidr", "must be a string, got a number"),
        (with_mesh(cidr6=["fd00::/64"]), "wgmesh:mesh.cidr6", "must be a string, got a list"),
        (with_mesh(adminCidrs="203.0.113.0/24"), "wgmesh:mesh.adminCidrs", "must be a list, got a string"),
        (with_mesh(adminCidrs=[24]), "wgmesh:mesh.adminCidrs[0]", "must be a string, got a number"),
        (with_mesh(sshPublicKeys={"a": "b"}), "wgmesh:mesh.sshPublicKeys", "must be a list, got a mapping"),
        (with_node(0, name=7), "wgmesh:nodes[0].name", "must be a string, got a number"),
        (with_node(0, cloud=True), "wgmesh:nodes[0].cloud", "must be a string, got a boolean"),
        (with_node(0, region=1), "wgmesh:nodes[0].region", "must be a string, got a number"),
        (with_node(0, hub="yes"), "wgmesh:nodes[0].hub", f"{TRUE_OR_FALSE} a string"),
        (with_node(0, gateway=1), "wgmesh:nodes[0].gateway", f"{TRUE_OR_FALSE} a number"),
        (with_node(0, masquerade="no"), "wgmesh:nodes[0].masquerade", f"{TRUE_OR_FALSE} a string"),
        (with_node(0, underlayMtu=True), "wgmesh:nodes[0].underlayMtu", f"{WHOLE_NUMBER} a boolean"),
        (with_node(0, keyEpoch="1"), "wgmesh:nodes[0].keyEpoch", f"{WHOLE_NUMBER} a string"),
        (with_node(0, subnets="10.0.4.0/24"), "wgmesh:nodes[0].subnets", "must be a list, got a string"),
        (
            with_node(0, subnets=["10.0.4.0/24", 5]),
            "wgmesh:nodes[0].subnets[1]",
            "must be a string, got a number",
        ),
        (with_node(0, address=167772161), "wgmesh:nodes[0].address", "must be a string, got a number"),
        (with_node(0, image=24.04), "wgmesh:nodes[0].image", "must be a string, got a number"),
        (with_node(3, publicIp=5), "wgmesh:nodes[3].publicIp", "must be a string, got a number"),
        (with_client(fullTunnel="yes"), "wgmesh:clients[0].fullTunnel", f"{TRUE_OR_FALSE} a string"),
        (with_client(dns="10.77.0.1"), "wgmesh:clients[0].dns", "must be a list, got a string"),
        (with_client(name=["laptop"]), "wgmesh:clients[0].name", "must be a string, got a list"),
        (with_client(keyEpoch=False), "wgmesh:clients[0].keyEpoch", f"{WHOLE_NUMBER} a boolean"),
    ],
)
def test_wrong_types(config: dict[str, Any], key: str, message: str) -> None:
    assert only_problem(config) == (key, message)


# ----------------------------------------------------------------------------- required keys

CIDR_REQUIRED = "is required (the overlay IPv4 network, e.g. 10.77.0.0/24)"


def test_cidr_required() -> None:
    assert only_problem(without(valid(), "mesh", None, "cidr")) == ("wgmesh:mesh.cidr", CIDR_REQUIRED)


@pytest.mark.parametrize("value", [None, ""])
def test_empty_cidr_is_missing(value: object) -> None:
    """`cidr:` with no value (YAML null) or "" is as missing as no key at all."""
    assert only_problem(with_mesh(cidr=value)) == ("wgmesh:mesh.cidr", CIDR_REQUIRED)


def test_node_name_cloud_and_region_required() -> None:
    config = valid()
    for k in ("name", "cloud"):
        del config["nodes"][1][k]
    del config["nodes"][2]["region"]
    assert problems(config) == [
        "wgmesh:nodes[1].cloud: is required (aws, gcp, hcloud, lab, external)",
        "wgmesh:nodes[1].name: is required",
        "wgmesh:nodes[2].region: is required for cloud hcloud",
    ]


@pytest.mark.parametrize("value", [None, ""])
def test_empty_node_name_is_reported_not_dropped(value: object) -> None:
    """A node whose name is null must not silently vanish from the mesh."""
    assert only_problem(with_node(1, name=value)) == ("wgmesh:nodes[1].name", "is required")


@pytest.mark.parametrize("value", [None, ""])
def test_empty_node_cloud_is_reported_not_dropped(value: object) -> None:
    assert only_problem(with_node(1, cloud=value)) == (
        "wgmesh:nodes[1].cloud",
        "is required (aws, gcp, hcloud, lab, external)",
    )


@pytest.mark.parametrize("value", [None, ""])
def test_empty_region_is_missing(value: object) -> None:
    assert only_problem(with_node(0, region=value)) == ("wgmesh:nodes[0].region", "is required for cloud aws")


def test_client_name_required() -> None:
    assert only_problem(without(valid(), "clients", 0, "name")) == ("wgmesh:clients[0].name", "is required")


@pytest.mark.parametrize("value", [None, ""])
def test_empty_client_name_is_reported_not_dropped(value: object) -> None:
    assert only_problem(with_client(name=value)) == ("wgmesh:clients[0].name", "is required")


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["Aws-fra", "aws_fra", "1aws", "-aws", "aws.fra", "a" * 32, "aws fra", "é"])
def test_malformed_names(name: str) -> None:
    assert only_problem(with_node(0, name=name)) == ("wgmesh:nodes[0].name", f"{name!r} {NAME_RULE}")
    assert only_problem(with_client(name=name)) == ("wgmesh:clients[0].name", f"{name!r} {NAME_RULE}")


@pytest.mark.parametrize("name", ["aws-fra\n", "laptop\n"])
def test_name_with_trailing_newline_is_malformed(name: str) -> None:
    """`$` in a regex also matches before a final newline: a name must not carry one into configs."""
    assert only_problem(with_node(3, name=name)) == ("wgmesh:nodes[3].name", f"{name!r} {NAME_RULE}")


@pytest.mark.parametrize("name", ["a", "a" * 31, "n0-1-x"])
def test_names_at_the_limits_are_valid(name: str) -> None:
    assert parse(with_node(0, name=name)).nodes[0].name == name


def test_duplicate_node_names() -> None:
    assert only_problem(with_node(2, name="aws-fra")) == (
        "wgmesh:nodes[2].name",
        "'aws-fra' is already used by wgmesh:nodes[0]",
    )


def test_nodes_and_clients_share_one_namespace() -> None:
    assert only_problem(with_client(name="gcp-fra")) == (
        "wgmesh:clients[0].name",
        "'gcp-fra' is already used by wgmesh:nodes[1]",
    )


def test_duplicate_client_names() -> None:
    config = valid()
    config["clients"].append({"name": "laptop"})
    assert only_problem(config) == ("wgmesh:clients[1].name", "'laptop' is already used by wgmesh:clients[0]")


# ----------------------------------------------------------------------------- overlay networks


@pytest.mark.parametrize(
    ("cidr", "message"),
    [
        ("10.77.0.1/24", "'10.77.0.1/24' is not a valid network (10.77.0.1/24 has host bits set)"),
        ("10.77.0.0/33", f"'10.77.0.0/33' is not a valid network ('10.77.0.0/33' {NOT_A_NETWORK})"),
        ("mesh", f"'mesh' is not a valid network ('mesh' {NOT_A_NETWORK})"),
        ("fd77::/64", "'fd77::/64' must be an IPv4 network (use cidr6 for IPv6)"),
        ("10.77.0.0/31", "'10.77.0.0/31' is too small: use a /30 or larger"),
        ("10.77.0.1/32", "'10.77.0.1/32' is too small: use a /30 or larger"),
    ],
)
def test_bad_cidr(cidr: str, message: str) -> None:
    config = with_mesh(cidr=cidr)
    for member in [*config["nodes"], *config["clients"]]:
        member.pop("address")  # their validity depends on the cidr; keep the expected list exact
    assert only_problem(config) == ("wgmesh:mesh.cidr", message)


def test_smallest_cidr_is_a_slash_30() -> None:
    config = {
        "mesh": {"cidr": "10.0.0.0/30"},
        "nodes": [{"name": "a", "cloud": "lab", "publicIp": "192.0.2.1"}],
    }
    assert parse(config).mesh.cidr == ipaddress.IPv4Network("10.0.0.0/30")


@pytest.mark.parametrize(
    ("cidr6", "message"),
    [
        ("fd77::1/64", "'fd77::1/64' is not a valid network (fd77::1/64 has host bits set)"),
        ("10.78.0.0/16", "'10.78.0.0/16' must be an IPv6 network"),
        ("fd77::/121", "'fd77::/121' is too small: use a /120 or larger"),
    ],
)
def test_bad_cidr6(cidr6: str, message: str) -> None:
    assert only_problem(with_mesh(cidr6=cidr6)) == ("wgmesh:mesh.cidr6", message)


def test_cidr6_of_a_slash_120_is_enough() -> None:
    assert parse(with_mesh(cidr6="fd77::/120")).mesh.cidr6 == ipaddress.IPv6Network("fd77::/120")


def test_scoped_ipv6_is_not_an_overlay_address() -> None:
    """`fd77::5%eth0` parses in Python but is no address for wg0.conf or a firewall rule."""
    key, _ = only_problem(dual_stack(with_node(0, address6="fd77:77::5%eth0")))
    assert key == "wgmesh:nodes[0].address6"


# ----------------------------------------------------------------------------- member addresses

OUTSIDE = "is outside wgmesh:mesh.cidr 10.77.0.0/24"
NET_OR_BCAST = "is the network or broadcast address of 10.77.0.0/24"
NEEDS_CIDR6 = "needs wgmesh:mesh.cidr6 (IPv6 overlay) to be set"


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        (with_node(1, address="10.78.0.2"), "wgmesh:nodes[1].address", f"10.78.0.2 {OUTSIDE}"),
        (with_client(address="192.168.1.5"), "wgmesh:clients[0].address", f"192.168.1.5 {OUTSIDE}"),
        (with_node(1, address="10.77.0.0"), "wgmesh:nodes[1].address", f"10.77.0.0 {NET_OR_BCAST}"),
        (with_client(address="10.77.0.255"), "wgmesh:clients[0].address", f"10.77.0.255 {NET_OR_BCAST}"),
        (
            with_node(1, address="10.77.0.300"),
            "wgmesh:nodes[1].address",
            f"'10.77.0.300' is not a valid IPv4 address ('10.77.0.300' {NOT_AN_ADDRESS})",
        ),
        (with_node(1, address="fd77::2"), "wgmesh:nodes[1].address", "'fd77::2' must be an IPv4 address"),
        (with_node(1, address6="fd77::2"), "wgmesh:nodes[1].address6", NEEDS_CIDR6),
        (with_client(address6="fd77::64"), "wgmesh:clients[0].address6", NEEDS_CIDR6),
        (
            with_node(1, address6="10.77.0.9"),
            "wgmesh:nodes[1].address6",
            "'10.77.0.9' must be an IPv6 address",
        ),
        (
            dual_stack(with_node(1, address6="fd78::2")),
            "wgmesh:nodes[1].address6",
            "fd78::2 is outside wgmesh:mesh.cidr6 fd77:77::/64",
        ),
        (
            dual_stack(with_client(address6="fd77:77::")),
            "wgmesh:clients[0].address6",
            "fd77:77:: is the network or broadcast address of fd77:77::/64",
        ),
    ],
)
def test_bad_member_addresses(config: dict[str, Any], key: str, message: str) -> None:
    assert only_problem(config) == (key, message)


def test_last_ipv6_address_is_usable() -> None:
    """IPv6 has no broadcast address: the all-ones host is a normal address."""
    config = dual_stack(with_node(1, address6="fd77:77::ffff:ffff:ffff:ffff"))
    assert parse(config).nodes[1].address6 == ipaddress.IPv6Address("fd77:77::ffff:ffff:ffff:ffff")


def test_colliding_addresses_node_and_client() -> None:
    assert only_problem(with_client(address="10.77.0.3")) == (
        "wgmesh:clients[0].address",
        "10.77.0.3 is already used by wgmesh:nodes[2].address",
    )


def test_colliding_address6() -> None:
    config = dual_stack(with_node(0, address6="fd77:77::1"))
    config["nodes"][3]["address6"] = "fd77:77::1"
    assert only_problem(config) == (
        "wgmesh:nodes[3].address6",
        "fd77:77::1 is already used by wgmesh:nodes[0].address6",
    )


def test_automatic_address_taken_by_an_explicit_one_names_the_automatic_member() -> None:
    """The planner never moves a member to a free address: it reports the clash instead."""
    config = valid()
    taken = hashed_host("laptop", ipaddress.IPv4Network("10.77.0.0/24"))
    del config["clients"][0]["address"]
    config["nodes"][2]["address"] = str(taken)
    spec = parse(config)
    with pytest.raises(ConfigError) as info:
        build_plan(spec)
    (problem,) = info.value.problems
    assert problem.key == "wgmesh:clients[0].address"
    assert problem.message.startswith(
        f"the automatic address {taken} for 'laptop' is taken by wgmesh:nodes[2] 'hz-nbg'; "
        "set wgmesh:clients[0].address explicitly (free: "
    )
    free = ipaddress.IPv4Address(problem.message.removesuffix(")").rsplit(" ", 1)[1])
    assert free in spec.mesh.cidr
    assert free not in {taken, *(ipaddress.IPv4Address(f"10.77.0.{i}") for i in (1, 2, 4))}


def test_following_the_suggested_free_addresses_resolves_every_clash() -> None:
    """The hint never names an address another automatic member lands on, nor one given twice."""
    net = ipaddress.IPv4Network("10.77.0.0/24")
    by_addr: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, list[str]] = {}
    for i in range(5000):
        by_addr.setdefault(hashed_host(f"c{i}", net), []).append(f"c{i}")
    low = [by_addr[ipaddress.IPv4Address(f"10.77.0.{h}")][0] for h in (1, 2, 3)]
    pairs = [names[:2] for names in by_addr.values() if len(names) >= 2][:2]
    clients = [{"name": n} for n in [*low, *(n for pair in pairs for n in pair)]]
    config: dict[str, Any] = {
        "mesh": {"cidr": str(net)},
        "nodes": [{"name": "n", "cloud": "lab", "publicIp": "198.51.100.1", "address": "10.77.0.250"}],
        "clients": clients,
    }
    with pytest.raises(ConfigError) as info:
        build_plan(parse(config))
    assert len(info.value.problems) == 2
    for problem in info.value.problems:
        index = int(problem.key.split("[")[1].split("]")[0])
        free = problem.message.removesuffix(")").rsplit(" ", 1)[1]
        config["clients"][index]["address"] = free
    plan = build_plan(parse(config))
    addresses = [c.iface.address.ip for c in plan.clients]
    assert len(set(addresses)) == len(addresses) == len(clients)


def clashing_names(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[str, str]:
    """Two member names whose automatic addresses collide in `net` (birthday search)."""
    seen: dict[object, str] = {}
    for i in range(100_000):
        name = f"m{i}"
        addr = hashed_host(name, net)
        if addr in seen:
            return seen[addr], name
        seen[addr] = name
    raise AssertionError("no clash found")


@pytest.mark.parametrize("v6", [False, True])
def test_two_automatic_addresses_clash_names_the_later_member(v6: bool) -> None:
    net: ipaddress.IPv4Network | ipaddress.IPv6Network = (
        ipaddress.IPv6Network("fd77::/120") if v6 else ipaddress.IPv4Network("10.77.0.0/16")
    )
    first, second = clashing_names(net)
    mesh: dict[str, Any] = {"cidr": "10.78.0.0/16", "cidr6": str(net)} if v6 else {"cidr": str(net)}
    config = {
        "mesh": mesh,
        "nodes": [{"name": first, "cloud": "lab", "publicIp": "192.0.2.1"}],
        "clients": [{"name": "x-other"}, {"name": second}],
    }
    with pytest.raises(ConfigError) as info:
        build_plan(parse(config))
    attr = "address6" if v6 else "address"
    (problem,) = info.value.problems
    assert problem.key == f"wgmesh:clients[1].{attr}"
    assert f"for '{second}' is taken by wgmesh:nodes[0] '{first}'" in problem.message


# ----------------------------------------------------------------------------- routed subnets


@pytest.mark.parametrize(
    ("subnet", "message"),
    [
        ("10.0.4.1/24", "'10.0.4.1/24' is not a valid network (10.0.4.1/24 has host bits set)"),
        ("10.77.0.128/25", "10.77.0.128/25 overlaps wgmesh:mesh.cidr (10.77.0.0/24)"),
        ("10.0.0.0/8", "10.0.0.0/8 overlaps wgmesh:mesh.cidr (10.77.0.0/24)"),
        ("0.0.0.0/0", "0.0.0.0/0 is too broad to route behind a node: use /8 or longer"),
        ("128.0.0.0/1", "128.0.0.0/1 is too broad to route behind a node: use /8 or longer"),
        ("::/0", "::/0 is too broad to route behind a node: use /16 or longer"),
        ("2000::/15", "2000::/15 is too broad to route behind a node: use /16 or longer"),
    ],
)
def test_bad_subnet(subnet: str, message: str) -> None:
    assert only_problem(with_node(1, subnets=[subnet])) == ("wgmesh:nodes[1].subnets[0]", message)


def test_broadest_allowed_subnets_are_accepted() -> None:
    spec = parse(with_node(1, subnets=["11.0.0.0/8", "2600::/16"]))
    assert [str(n) for n in spec.nodes[1].subnets] == ["11.0.0.0/8", "2600::/16"]


def test_subnet_containing_a_lab_public_ip_is_rejected() -> None:
    """The peer's endpoint would be routed into the tunnel that is meant to reach it."""
    assert only_problem(with_node(1, subnets=["198.51.100.0/24"])) == (
        "wgmesh:nodes[1].subnets[0]",
        "198.51.100.0/24 contains wgmesh:nodes[3].publicIp 198.51.100.1: its tunnel would route into itself",
    )


@pytest.mark.parametrize("clients", [{}, False, "laptop"])
def test_clients_that_are_not_a_list_are_reported(clients: object) -> None:
    config = valid()
    config["clients"] = clients
    assert only_problem(config)[0] == "wgmesh:clients"


def test_subnets_overlapping_across_nodes() -> None:
    config = with_node(0, subnets=["10.0.4.0/24"])
    config["nodes"][2]["subnets"] = ["10.0.4.0/24"]
    assert only_problem(config) == (
        "wgmesh:nodes[2].subnets[0]",
        "10.0.4.0/24 overlaps wgmesh:nodes[0].subnets[0] (10.0.4.0/24)",
    )


def test_subnet_containing_another_overlaps() -> None:
    config = with_node(0, subnets=["192.168.0.0/24", "10.0.4.0/24"])
    config["nodes"][3]["subnets"] = ["172.16.0.0/12", "10.0.0.0/16"]
    assert only_problem(config) == (
        "wgmesh:nodes[3].subnets[1]",
        "10.0.0.0/16 overlaps wgmesh:nodes[0].subnets[1] (10.0.4.0/24)",
    )


def test_subnets_overlapping_within_one_node() -> None:
    assert only_problem(with_node(1, subnets=["10.0.4.0/23", "10.0.5.0/24"])) == (
        "wgmesh:nodes[1].subnets[1]",
        "10.0.5.0/24 overlaps wgmesh:nodes[1].subnets[0] (10.0.4.0/23)",
    )


def test_ipv6_subnet_overlapping_cidr6() -> None:
    assert only_problem(dual_stack(with_node(1, subnets=["fd77:77::/96"]))) == (
        "wgmesh:nodes[1].subnets[0]",
        "fd77:77::/96 overlaps wgmesh:mesh.cidr6 (fd77:77::/64)",
    )


def test_ipv4_and_ipv6_subnets_never_overlap_each_other() -> None:
    """The IPv4-mapped form of 10.0.4.0/24 is no overlap of it (it is refused as reserved instead)."""
    config = dual_stack(with_node(1, subnets=["10.0.4.0/24", "::ffff:a00:400/120"]))
    key, message = only_problem(config)
    assert key == "wgmesh:nodes[1].subnets[1]" and "inside ::/8" in message
    config = dual_stack(with_node(1, subnets=["10.0.4.0/24", "fd00:a00:400::/120"]))
    assert len(parse(config).nodes[1].subnets) == 2


MASQUERADE = "needs subnets: masquerade NATs mesh traffic into them"


def test_masquerade_needs_subnets() -> None:
    assert only_problem(with_node(1, masquerade=True)) == ("wgmesh:nodes[1].masquerade", MASQUERADE)


def test_masquerade_with_an_empty_subnet_list_is_reported() -> None:
    assert only_problem(with_node(1, masquerade=True, subnets=[])) == (
        "wgmesh:nodes[1].masquerade",
        MASQUERADE,
    )


# ----------------------------------------------------------------------------- topology and roles


def test_hub_needs_hub_topology() -> None:
    assert only_problem(with_node(1, hub=True)) == ("wgmesh:nodes[1].hub", "needs wgmesh:mesh.topology: hub")


def test_hub_topology_needs_a_hub() -> None:
    assert only_problem(with_mesh(topology="hub")) == (
        "wgmesh:mesh.topology",
        "hub needs at least one node with `hub: true`",
    )


def test_hub_topology_with_a_hub_is_valid() -> None:
    config = with_mesh(topology="hub")
    config["nodes"][2]["hub"] = True
    assert [n.hub for n in parse(config).nodes] == [False, False, True, False]


def test_unknown_topology() -> None:
    assert only_problem(with_mesh(topology="star")) == (
        "wgmesh:mesh.topology",
        "'star' is not one of mesh, hub",
    )


def test_full_tunnel_client_needs_a_gateway() -> None:
    assert only_problem(with_client(fullTunnel=True)) == (
        "wgmesh:clients[0].fullTunnel",
        "needs a node with `gateway: true` to send the internet through",
    )
    config = with_client(fullTunnel=True)
    config["nodes"][1]["gateway"] = True
    assert parse(config).clients[0].full_tunnel


# ----------------------------------------------------------------------------- clouds and placement


@pytest.mark.parametrize(
    ("cloud", "message"),
    [
        ("asw", f"unknown cloud 'asw': {CLOUD_LIST} (did you mean 'aws'?)"),
        ("hetzner", f"unknown cloud 'hetzner': {CLOUD_LIST}"),
        ("hclod", f"unknown cloud 'hclod': {CLOUD_LIST} (did you mean 'hcloud'?)"),
        ("AWS", f"unknown cloud 'AWS': {CLOUD_LIST}"),
    ],
)
def test_unknown_cloud(cloud: str, message: str) -> None:
    assert only_problem(with_node(0, cloud=cloud)) == ("wgmesh:nodes[0].cloud", message)


def test_unknown_image() -> None:
    assert only_problem(with_node(2, image="centos-9")) == (
        "wgmesh:nodes[2].image",
        "'centos-9' is not one of ubuntu-24.04, ubuntu-22.04, debian-12",
    )


def test_debian_on_gcp() -> None:
    assert only_problem(with_node(1, image="debian-12")) == (
        "wgmesh:nodes[1].image",
        "debian-12 is not supported on gcp: GCP's Debian images ship no cloud-init",
    )
    assert parse(with_node(0, image="debian-12")).nodes[0].image == "debian-12"


@pytest.mark.parametrize(
    ("i", "zone", "message"),
    [
        (0, "eu-central-1a", "only GCP nodes take a zone; aws uses region"),
        (2, "nbg1-dc3", "only GCP nodes take a zone; hcloud uses region"),
        (1, "us-central1-a", "'us-central1-a' is not a zone of region europe-west3"),
        (1, "europe-west3", "'europe-west3' is not a zone of region europe-west3"),
        (3, "x-a", "does not apply to `cloud: lab` nodes"),
    ],
)
def test_bad_zone(i: int, zone: str, message: str) -> None:
    assert only_problem(with_node(i, zone=zone)) == (f"wgmesh:nodes[{i}].zone", message)


def test_region_on_a_lab_node() -> None:
    assert only_problem(with_node(3, region="eu-central-1")) == (
        "wgmesh:nodes[3].region",
        "does not apply to `cloud: lab` nodes",
    )


@pytest.mark.parametrize(
    ("i", "region", "message"),
    [
        (0, "frankfurt", "'frankfurt' is not an AWS region (e.g. eu-central-1)"),
        (0, "europe-west3", "'europe-west3' is not an AWS region (e.g. eu-central-1)"),
        (0, "eu-central-1\n", "'eu-central-1\\n' is not an AWS region (e.g. eu-central-1)"),
        (1, "eu-central-1", "'eu-central-1' is not a GCP region (e.g. europe-west3)"),
        (1, "europe_west3", "'europe_west3' is not a GCP region (e.g. europe-west3)"),
        (2, "fra1", f"'fra1' is not a Hetzner location {HCLOUD_LIST}"),
        (2, "NBG1", f"'NBG1' is not a Hetzner location {HCLOUD_LIST}"),
    ],
)
def test_bad_region_per_cloud(i: int, region: str, message: str) -> None:
    assert only_problem(with_node(i, region=region)) == (f"wgmesh:nodes[{i}].region", message)


@pytest.mark.parametrize(
    ("i", "region"),
    [
        (0, "us-gov-west-1"),
        (0, "ap-southeast-2"),
        (1, "us-central1"),
        (1, "northamerica-northeast2"),
        (2, "hil"),
    ],
)
def test_good_regions(i: int, region: str) -> None:
    assert parse(with_node(i, region=region)).nodes[i].region == region


# ----------------------------------------------------------------------------- lab underlay


def test_public_ip_only_on_lab_nodes() -> None:
    assert only_problem(with_node(0, publicIp="198.51.100.9")) == (
        "wgmesh:nodes[0].publicIp",
        "only `cloud: lab` nodes take a fixed publicIp; aws assigns one",
    )


def test_lab_node_needs_a_public_ip() -> None:
    assert only_problem(without(valid(), "nodes", 3, "publicIp")) == (
        "wgmesh:nodes[3].publicIp",
        "is required for `cloud: lab` nodes (the lab underlay address)",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("198.51.100.300", f"'198.51.100.300' is not a valid IP address ('198.51.100.300' {NOT_AN_ADDRESS})"),
        ("2001:db8::1", "'2001:db8::1' must be an IPv4 address"),
    ],
)
def test_bad_public_ip(value: object, message: str) -> None:
    assert only_problem(with_node(3, publicIp=value)) == ("wgmesh:nodes[3].publicIp", message)


def test_duplicate_public_ip() -> None:
    config = valid()
    config["nodes"].append({"name": "lab-b", "cloud": "lab", "publicIp": "198.51.100.1"})
    assert only_problem(config) == (
        "wgmesh:nodes[4].publicIp",
        "198.51.100.1 is already used by wgmesh:nodes[3].publicIp",
    )


def ipv6_endpoints(config: dict[str, Any]) -> dict[str, Any]:
    """The valid baseline with `endpoints: ipv6` (its lab node then needs a publicIp6)."""
    config["mesh"]["endpoints"] = "ipv6"
    config["nodes"][3]["publicIp6"] = "2001:db8:77::1"
    return config


def test_endpoints_default_to_ipv4_and_ipv6_is_accepted_without_cidr6() -> None:
    assert parse(valid()).mesh.endpoints == "ipv4"
    spec = parse(ipv6_endpoints(valid()))
    assert spec.mesh.endpoints == "ipv6" and spec.mesh.cidr6 is None
    assert spec.node("lab-a").public_ip6 == ipaddress.IPv6Address("2001:db8:77::1")
    assert spec.node("aws-fra").public_ip6 is None  # a cloud node's comes from its cloud


@pytest.mark.parametrize(
    ("value", "message"),
    [("ipv5", "'ipv5' is not one of ipv4, ipv6"), (6, "must be a string, got a number")],
)
def test_bad_endpoints(value: object, message: str) -> None:
    assert only_problem(with_mesh(endpoints=value)) == ("wgmesh:mesh.endpoints", message)


def test_ipv6_endpoints_need_a_public_ip6_on_every_lab_node() -> None:
    config = ipv6_endpoints(valid())
    config["nodes"].append({"name": "lab-b", "cloud": "lab", "publicIp": "198.51.100.2"})
    assert only_problem(config) == (
        "wgmesh:nodes[4].publicIp6",
        "is required for `cloud: lab` nodes with wgmesh:mesh.endpoints: ipv6",
    )


def test_public_ip6_only_on_lab_nodes() -> None:
    assert only_problem(with_node(1, publicIp6="2001:db8::9")) == (
        "wgmesh:nodes[1].publicIp6",
        "only `cloud: lab` nodes take a fixed publicIp6; gcp assigns one",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("198.51.100.7", "'198.51.100.7' must be an IPv6 address"),
        ("2001:db8::g", f"'2001:db8::g' is not a valid IP address ('2001:db8::g' {NOT_AN_ADDRESS})"),
        ("fe80::1", "'fe80::1' must be a unicast address a peer can route to (no link-local, no %zone)"),
        ("ff02::1", "'ff02::1' must be a unicast address a peer can route to (no link-local, no %zone)"),
        (6, "must be a string, got a number"),
    ],
)
def test_bad_public_ip6(value: object, message: str) -> None:
    assert only_problem(with_node(3, publicIp6=value)) == ("wgmesh:nodes[3].publicIp6", message)


def test_duplicate_public_ip6_and_one_inside_a_routed_subnet() -> None:
    config = ipv6_endpoints(dual_stack(valid()))
    config["nodes"].append(
        {"name": "lab-b", "cloud": "lab", "publicIp": "198.51.100.2", "publicIp6": "2001:db8:77::1"}
    )
    config["nodes"][0]["subnets"] = ["2001:db8:77::/64"]
    assert problems(config) == [
        "wgmesh:nodes[0].subnets[0]: 2001:db8:77::/64 contains wgmesh:nodes[3].publicIp6 2001:db8:77::1: "
        "its tunnel would route into itself",
        "wgmesh:nodes[0].subnets[0]: 2001:db8:77::/64 contains wgmesh:nodes[4].publicIp6 2001:db8:77::1: "
        "its tunnel would route into itself",
        "wgmesh:nodes[4].publicIp6: 2001:db8:77::1 is already used by wgmesh:nodes[3].publicIp6",
    ]


# ----------------------------------------------------------------------------- numeric ranges


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        (with_mesh(port=0), "wgmesh:mesh.port", "0 is out of range 1..65535"),
        (with_mesh(port=65536), "wgmesh:mesh.port", "65536 is out of range 1..65535"),
        (with_mesh(keepalive=-1), "wgmesh:mesh.keepalive", "-1 is out of range 0..65535"),
        (with_mesh(keepalive=65536), "wgmesh:mesh.keepalive", "65536 is out of range 0..65535"),
        (with_mesh(keyEpoch=-1), "wgmesh:mesh.keyEpoch", "-1 is out of range 0..2147483648"),
        (with_node(0, underlayMtu=1279), "wgmesh:nodes[0].underlayMtu", "1279 is out of range 1280..9216"),
        (with_node(0, underlayMtu=9217), "wgmesh:nodes[0].underlayMtu", "9217 is out of range 1280..9216"),
        (with_node(0, keyEpoch=-3), "wgmesh:nodes[0].keyEpoch", "-3 is out of range 0..2147483648"),
        (with_client(underlayMtu=576), "wgmesh:clients[0].underlayMtu", "576 is out of range 1280..9216"),
        (
            with_client(keyEpoch=2**31 + 1),
            "wgmesh:clients[0].keyEpoch",
            "2147483649 is out of range 0..2147483648",
        ),
    ],
)
def test_out_of_range(config: dict[str, Any], key: str, message: str) -> None:
    assert only_problem(config) == (key, message)


@pytest.mark.parametrize(
    ("key", "value"), [("port", 1), ("port", 65535), ("keepalive", 0), ("keepalive", 65535)]
)
def test_range_limits_are_inclusive(key: str, value: int) -> None:
    assert getattr(parse(with_mesh(**{key: value})).mesh, key) == value


@pytest.mark.parametrize("mtu", [1280, 9216])
def test_underlay_mtu_limits(mtu: int) -> None:
    assert parse(with_node(1, underlayMtu=mtu)).nodes[1].underlay_mtu == mtu


# ----------------------------------------------------------------------------- SSH and live updates


@pytest.mark.parametrize(
    "key",
    [
        "AAAAC3NzaC1lZDI1NTE5AAAAINmmuPryri6glS1QlhaDJjKjzx04JfygjBfH72YlFlq/",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "ssh-ed25519",
        "ssh-ed25519 not*base64",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    ],
)
def test_bad_ssh_keys(key: str) -> None:
    assert only_problem(with_mesh(sshPublicKeys=[ED25519, key])) == (
        "wgmesh:mesh.sshPublicKeys[1]",
        "is not an OpenSSH public key ('ssh-ed25519 AAAA...')",
    )


@pytest.mark.parametrize(
    "key",
    [
        ED25519,
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==",
        "ecdsa-sha2-nistp256 AAAAE2VjZHNh",
        "sk-ssh-ed25519@openssh.com AAAAGnNr",
    ],
)
def test_good_ssh_keys(key: str) -> None:
    assert parse(with_mesh(sshPublicKeys=[key])).mesh.ssh_public_keys == (key,)


def test_bad_admin_cidr() -> None:
    assert only_problem(with_mesh(adminCidrs=["203.0.113.0/24", "203.0.113.7/24"])) == (
        "wgmesh:mesh.adminCidrs[1]",
        "'203.0.113.7/24' is not a valid CIDR (203.0.113.7/24 has host bits set)",
    )


def test_bad_client_dns() -> None:
    assert only_problem(with_client(dns=["1.1.1.1", "one.one"])) == (
        "wgmesh:clients[0].dns[1]",
        f"'one.one' is not a valid IP address ('one.one' {NOT_AN_ADDRESS})",
    )


# ----------------------------------------------------------------------------- stack files


def test_real_stacks_parse() -> None:
    dev = load_spec("dev")
    assert [(n.name, n.cloud) for n in dev.nodes] == [
        ("aws-fra", "aws"),
        ("gcp-fra", "gcp"),
        ("hetzner-nbg", "hcloud"),
    ]
    assert dev.node("aws-fra").subnets == (ipaddress.ip_network("10.0.4.0/24"),)
    assert [c.name for c in dev.clients] == ["laptop"]
    lab = load_spec("lab")
    assert [str(n.public_ip) for n in lab.nodes] == ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
    assert lab.node("lab-c").subnets == (ipaddress.ip_network("10.0.7.0/24"),)


def test_stack_names_and_paths() -> None:
    assert stack_path("dev").name == "Pulumi.dev.yaml" and stack_path("dev").parent.name == "stacks"
    assert stack_path("x/Pulumi.y.yaml") == Path("x/Pulumi.y.yaml")
    assert stack_path("Pulumi.z.yml") == Path("Pulumi.z.yml")
    assert stack_name("stacks/Pulumi.lab.yaml") == "lab" and stack_name("dev") == "dev"


def test_load_config_returns_the_three_sections(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text("config:\n  wgmesh:mesh: {cidr: 10.1.0.0/24}\n  aws:region: eu-west-1\n")
    sections = {"mesh": {"cidr": "10.1.0.0/24"}, "nodes": None, "clients": None, "quotas": None}
    assert load_config(path) == sections


def test_misspelled_top_level_key_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text("config:\n  wgmesh:mesh: {cidr: 10.1.0.0/24}\n  wgmesh:client: []\n  wgmesh:x: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == [
        "wgmesh:client: unknown config key (did you mean 'wgmesh:clients'?)",
        "wgmesh:x: unknown config key "
        "(known: wgmesh:mesh, wgmesh:nodes, wgmesh:clients, wgmesh:quotas, wgmesh:sshPrivateKey, "
        "wgmesh:pushed)",
    ]


def test_missing_stack_file(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert info.value.problems == (Problem(str(path), "no such stack file"),)
    with pytest.raises(ConfigError, match=r"Pulumi\.no-such-stack\.yaml: no such stack file"):
        load_spec("no-such-stack")


def test_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text("config:\n  wgmesh:mesh: {cidr: [\n")
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    (problem,) = info.value.problems
    assert problem.key == str(path)
    assert problem.message.startswith("is not valid YAML (") and "\n" not in problem.message


@pytest.mark.parametrize("text", ["", "config: 5\n", "- a\n- b\n", "encryptionsalt: x\n", "config:\n"])
def test_stack_file_without_config(tmp_path: Path, text: str) -> None:
    path = tmp_path / "Pulumi.empty.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert info.value.problems == (Problem(f"{path}: config", "the stack file has no `config:` mapping"),)


def test_binary_stack_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.bin.yaml"
    path.write_bytes(b"config:\n  wgmesh:mesh: {cidr: \xff\xfe}\n")
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert all(p.key.startswith(str(path)) for p in info.value.problems)


def test_stack_file_problems_name_wgmesh_keys(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(
        "config:\n  wgmesh:mesh:\n    cidr: 10.1.0.0/24\n    port: yes\n"
        "  wgmesh:nodes:\n    - {name: a, cloud: lab, publicIp: 192.0.2.1, subnets: [10.1.0.0/25]}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert [str(p) for p in info.value.problems] == [
        "wgmesh:mesh.port: must be a whole number, got a string",  # `yes` is a string to the CLI
        "wgmesh:nodes[0].subnets[0]: 10.1.0.0/25 overlaps wgmesh:mesh.cidr (10.1.0.0/24)",
    ]


def test_stack_path_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dir.yaml"
    path.mkdir()
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert [p.key for p in info.value.problems] == [str(path)]


def test_deeply_nested_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.deep.yaml"
    path.write_text("config: " + "[" * 1000)
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert [p.key for p in info.value.problems] == [str(path)]


# ----------------------------------------------------------------------------- one line per problem


@pytest.mark.parametrize(
    "config",
    [
        with_node(0, name="aws\nfra"),
        with_node(0, cloud="aws\r\nregion: x"),
        with_mesh(**{"port\nwgmesh:mesh.fake": 1}),
    ],
)
def test_user_text_never_breaks_the_one_line_per_problem_output(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        parse(config)
    lines = str(info.value).splitlines()
    assert len(lines) == (1 if len(info.value.problems) == 1 else len(info.value.problems) + 1), lines
