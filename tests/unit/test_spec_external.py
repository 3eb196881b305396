"""ext (issue 15): `cloud: external` nodes in the stack file and the plan.

Keyed one-line errors for what cannot work (masquerade with no interface to NAT out of, an
endpoint that is neither an IP nor a DNS name or has a bad port, fields of the wrong kind of
node, two hosts behind NAT that would have to dial each other), and the plan's promises:
behind NAT the host dials with keepalive and is listed without Endpoint, and the nodes it dials
accept WireGuard from anywhere; with an IP endpoint it is dialled there and admitted alone.
"""

from __future__ import annotations

from typing import Any

import pytest

from cloudinit.host import nft_ruleset
from mesh.errors import ConfigError
from mesh.plan import build_plan
from mesh.spec import Endpoint, parse

HUB = {"name": "hub", "cloud": "hcloud", "region": "nbg1", "hub": True}
HOME = {
    "name": "home",
    "cloud": "external",
    "subnets": ["10.11.12.0/24"],
    "masquerade": True,
    "lanInterface": "wlp0s0f0",
}


def spec(*nodes: dict[str, Any], topology: str = "hub", **mesh: Any) -> Any:
    return parse({"mesh": {"cidr": "10.77.0.0/24", "topology": topology, **mesh}, "nodes": list(nodes)})


def problems(*nodes: dict[str, Any], topology: str = "hub", **mesh: Any) -> list[str]:
    with pytest.raises(ConfigError) as err:
        spec(*nodes, topology=topology, **mesh)
    return [f"{p.key}: {p.message}" for p in err.value.problems]


def test_masquerade_without_lan_interface_is_one_keyed_line() -> None:
    bad = {k: v for k, v in HOME.items() if k != "lanInterface"}
    assert problems(HUB, bad) == [
        "wgmesh:nodes[1].lanInterface: is required with masquerade on `cloud: external` nodes: "
        "the LAN interface to NAT out of (e.g. wlp0s0f0)"
    ]


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        (
            "home..example.org",
            "'home..example.org': 'home..example.org' is neither an IP address nor a DNS name",
        ),
        ("10.0.0.256:51820", "'10.0.0.256:51820': '10.0.0.256' is neither an IP address nor a DNS name"),
        (
            "under_score.example",
            "'under_score.example': 'under_score.example' is neither an IP address nor a DNS name",
        ),
        ("203.0.113.7:0", "'203.0.113.7:0': the port must be a number in 1..65535"),
        ("203.0.113.7:65536", "'203.0.113.7:65536': the port must be a number in 1..65535"),
        ("home.example.org:", "'home.example.org:': the port must be a number in 1..65535"),
        ("[2001:db8::1]x", "'[2001:db8::1]x' is not `[IPv6]:port`"),
        ("[203.0.113.7]:5", "'[203.0.113.7]:5': brackets are for IPv6 addresses only"),
    ],
)
def test_a_bad_endpoint_is_one_keyed_line(endpoint: str, message: str) -> None:
    assert problems(HUB, {**HOME, "endpoint": endpoint}) == [f"wgmesh:nodes[1].endpoint: {message}"]


@pytest.mark.parametrize(
    ("endpoint", "parsed"),
    [
        ("203.0.113.7", Endpoint("203.0.113.7", 51820)),
        ("203.0.113.7:51999", Endpoint("203.0.113.7", 51999)),
        ("home.example.org", Endpoint("home.example.org", 51820)),
        ("home.example.org.:4500", Endpoint("home.example.org", 4500)),
        ("2001:db8::1", Endpoint("2001:db8::1", 51820)),
        ("[2001:db8::1]:443", Endpoint("2001:db8::1", 443)),
    ],
)
def test_good_endpoints_parse(endpoint: str, parsed: Endpoint) -> None:
    assert spec(HUB, {**HOME, "endpoint": endpoint}).node("home").endpoint == parsed


def test_external_fields_belong_to_external_nodes_and_cloud_fields_do_not() -> None:
    found = problems(
        {**HUB, "endpoint": "203.0.113.7", "sshHost": "h", "lanInterface": "eth0"},
        {**HOME, "region": "x", "publicIp": "203.0.113.9", "lanInterface": "bad/name"},
    )
    assert found == [
        "wgmesh:nodes[0].endpoint: only `cloud: external` nodes take endpoint; hcloud creates the VM",
        "wgmesh:nodes[0].lanInterface: only `cloud: external` nodes take lanInterface; hcloud creates the VM",
        "wgmesh:nodes[0].sshHost: only `cloud: external` nodes take sshHost; hcloud creates the VM",
        "wgmesh:nodes[1].lanInterface: 'bad/name' is not a Linux interface name (1-15 of A-Za-z0-9_.-)",
        "wgmesh:nodes[1].publicIp: `cloud: external` nodes take `endpoint` (an IP or DNS name, and port)",
        "wgmesh:nodes[1].region: does not apply to `cloud: external` nodes",
    ]


@pytest.mark.parametrize("name", [".", "..", "a" * 16, "wl p0", "eth0:1", 'x"y'])
def test_a_lan_interface_linux_would_refuse_is_one_keyed_line(name: str) -> None:
    assert problems(HUB, {**HOME, "lanInterface": name}) == [
        f"wgmesh:nodes[1].lanInterface: {name!r} is not a Linux interface name (1-15 of A-Za-z0-9_.-)"
    ]


def test_what_nobody_could_dial_is_refused() -> None:
    nat_hub = {"name": "home", "cloud": "external", "hub": True}
    assert problems(nat_hub, {"name": "s", "cloud": "hcloud", "region": "nbg1"}) == [
        "wgmesh:nodes[0].hub: spokes cannot dial this hub: it is behind NAT (no endpoint): "
        "give it an `endpoint` its peers can dial"
    ]
    a, b = {"name": "a", "cloud": "external"}, {"name": "b", "cloud": "external"}
    assert problems(a, b, topology="mesh") == [
        "wgmesh:nodes[1].endpoint: is required: wgmesh:nodes[0] 'a' is behind NAT too, and two hosts "
        "that only dial cannot reach each other (or use topology: hub with a hub both can dial)"
    ]
    assert spec(HUB, a, b).node("b").behind_nat  # through a hub both dial: fine


def test_behind_nat_it_dials_with_keepalive_and_its_peers_open_to_the_world() -> None:
    plan = build_plan(spec(HUB, HOME, keepalive=0))
    (to_hub,) = plan.node("home").iface.peers
    assert (to_hub.name, to_hub.endpoint, to_hub.keepalive) == ("hub", True, 25)  # its NAT stays open
    (to_home,) = [p for p in plan.node("hub").iface.peers if p.name == "home"]
    assert (to_home.endpoint, to_home.keepalive) == (False, None)
    assert plan.node("hub").wg_open_to_world and plan.node("hub").peer_nodes == ()
    rules = nft_ruleset(plan.node("home"))
    assert 'iifname $WG oifname "wlp0s0f0" ip daddr { 10.11.12.0/24 } masquerade' in rules


def test_with_an_ip_endpoint_it_is_dialled_and_admitted_alone() -> None:
    plan = build_plan(spec(HUB, {**HOME, "endpoint": "203.0.113.7:51999"}))
    hub = plan.node("hub")
    assert not hub.wg_open_to_world and hub.peer_nodes == ("home",)
    assert [p.endpoint for p in hub.iface.peers] == [True]
    dns = build_plan(spec(HUB, {**HOME, "endpoint": "home.example.org"})).node("hub")
    assert dns.wg_open_to_world and dns.peer_nodes == ()  # a name's address is not known in advance


def test_clients_do_not_attach_to_a_host_they_cannot_dial() -> None:
    plan = build_plan(
        parse(
            {
                "mesh": {"cidr": "10.77.0.0/24"},
                "nodes": [{**HUB, "hub": False}, {"name": "home", "cloud": "external"}],
                "clients": [{"name": "laptop"}],
            }
        )
    )
    assert [p.name for p in plan.client("laptop").iface.peers] == ["hub"]
