"""Concrete plans: who peers with whom, AllowedIPs, routes, MTU and roles, for each topology.

Addresses are set explicitly where a test spells out AllowedIPs, so every expectation is a
literal a reader can check against the stack config.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from mesh.plan import build_plan, hashed_host
from mesh.plan_types import ClientPlan, MeshPlan, NodePlan, PeerPlan
from mesh.spec import IPNetwork, parse
from mesh.stackfile import load_spec


def nets(*texts: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(t) for t in texts)


def plan_of(config: dict[str, Any]) -> MeshPlan:
    return build_plan(parse(config))


def peer(plan: MeshPlan, viewer: str, name: str) -> PeerPlan:
    matches = [p for p in plan.interface(viewer).peers if p.name == name]
    assert len(matches) == 1, f"{viewer} has {len(matches)} peers named {name}"
    return matches[0]


def members(plan: MeshPlan) -> list[NodePlan | ClientPlan]:
    return [*plan.nodes, *plan.clients]


def peer_names(plan: MeshPlan, viewer: str) -> list[str]:
    return [p.name for p in plan.interface(viewer).peers]


def node(name: str, cloud: str = "aws", n: int = 1, **extra: Any) -> dict[str, Any]:
    region = {"aws": "eu-central-1", "gcp": "europe-west3", "hcloud": "nbg1"}.get(cloud)
    out: dict[str, Any] = {"name": name, "cloud": cloud, "address": f"10.77.0.{n}"}
    if region:
        out["region"] = region
    else:
        out["publicIp"] = f"198.51.100.{n}"
    return out | extra


def config(*nodes: dict[str, Any], clients: tuple[dict[str, Any], ...] = (), **mesh: Any) -> dict[str, Any]:
    return {"mesh": {"cidr": "10.77.0.0/24", **mesh}, "nodes": list(nodes), "clients": list(clients)}


# ----------------------------------------------------------------------------- full mesh


@pytest.fixture
def full_mesh() -> MeshPlan:
    return plan_of(
        config(
            node("a", n=1),
            node("b", "hcloud", n=2, subnets=["10.0.4.0/24", "10.0.5.0/24"]),
            node("c", "lab", n=3),
            node("d", "lab", n=4, subnets=["192.168.9.0/24"], masquerade=True),
            clients=({"name": "laptop", "address": "10.77.0.100"},),
        )
    )


def test_full_mesh_every_node_peers_with_every_other(full_mesh: MeshPlan) -> None:
    names = ["a", "b", "c", "d"]
    for n in full_mesh.nodes:
        others = [m for m in names if m != n.name]
        assert peer_names(full_mesh, n.name) == [*others, "laptop"]
        assert n.peer_nodes == tuple(others)


def test_full_mesh_endpoint_and_keepalive_only_toward_nodes(full_mesh: MeshPlan) -> None:
    for member in members(full_mesh):
        for p in member.iface.peers:
            assert p.endpoint == (p.kind == "node")
            assert p.keepalive == (25 if p.kind == "node" else None)
            assert (p.kind == "node") == (p.name in {"a", "b", "c", "d"})


def test_full_mesh_allowed_ips_hold_subnets_of_the_owner_only(full_mesh: MeshPlan) -> None:
    assert peer(full_mesh, "a", "b").allowed_ips == nets("10.0.4.0/24", "10.0.5.0/24", "10.77.0.2/32")
    assert peer(full_mesh, "a", "c").allowed_ips == nets("10.77.0.3/32")
    assert peer(full_mesh, "a", "d").allowed_ips == nets("10.77.0.4/32", "192.168.9.0/24")
    assert peer(full_mesh, "a", "laptop").allowed_ips == nets("10.77.0.100/32")
    assert peer(full_mesh, "laptop", "b").allowed_ips == nets("10.0.4.0/24", "10.0.5.0/24", "10.77.0.2/32")
    for viewer in ("a", "c", "d", "laptop"):
        holders = [
            p.name for p in full_mesh.interface(viewer).peers if nets("10.0.4.0/24")[0] in p.allowed_ips
        ]
        assert holders == ["b"]


def test_full_mesh_routes_are_the_other_nodes_subnets(full_mesh: MeshPlan) -> None:
    b_subnets = nets("10.0.4.0/24", "10.0.5.0/24")
    assert full_mesh.node("a").routes == (*b_subnets, *nets("192.168.9.0/24"))
    assert full_mesh.node("b").routes == nets("192.168.9.0/24")
    assert full_mesh.node("d").routes == b_subnets


def test_full_mesh_roles(full_mesh: MeshPlan) -> None:
    assert {n.name: n.forwards for n in full_mesh.nodes} == {"a": False, "b": True, "c": False, "d": True}
    assert full_mesh.node("d").masquerade == nets("192.168.9.0/24")
    assert full_mesh.node("b").masquerade == ()
    assert not any(n.gateway for n in full_mesh.nodes)
    assert all(n.wg_open_to_world for n in full_mesh.nodes)  # the laptop attaches to every node
    assert [n.iface.listen_port for n in full_mesh.nodes] == [51820] * 4
    assert full_mesh.client("laptop").iface.listen_port is None
    assert [n.cloud for n in full_mesh.nodes] == ["aws", "hcloud", "lab", "lab"]
    assert full_mesh.node("a").iface.address == ipaddress.IPv4Interface("10.77.0.1/24")
    assert full_mesh.client("laptop").iface.address == ipaddress.IPv4Interface("10.77.0.100/24")
    assert full_mesh.node("a").iface.address6 is None


def test_full_mesh_psk_epochs_and_toggle(full_mesh: MeshPlan) -> None:
    assert {p.psk_epoch for m in members(full_mesh) for p in m.iface.peers} == {"0.0.0"}
    off = plan_of(config(node("a", n=1), node("b", n=2), presharedKeys=False))
    assert [p.psk_epoch for p in off.node("a").iface.peers] == [None]


def test_psk_epoch_orders_the_pair_by_name() -> None:
    plan = plan_of(config(node("zed", n=1, keyEpoch=7), node("abe", n=2, keyEpoch=2), keyEpoch=5))
    assert peer(plan, "zed", "abe").psk_epoch == "5.2.7" == peer(plan, "abe", "zed").psk_epoch


def test_keepalive_zero_sends_none() -> None:
    plan = plan_of(config(node("a", n=1), node("b", n=2), keepalive=0))
    assert peer(plan, "a", "b").keepalive is None


def test_wg_open_to_world_only_where_clients_attach() -> None:
    plan = plan_of(config(node("a", n=1), node("b", n=2)))
    assert [n.wg_open_to_world for n in plan.nodes] == [False, False]


# ----------------------------------------------------------------------------- real stacks


def test_dev_stack_plan() -> None:
    plan = build_plan(load_spec("dev"))
    assert [n.name for n in plan.nodes] == ["aws-fra", "gcp-fra", "hetzner-nbg"]
    assert {m.iface.mtu for m in members(plan)} == {1380}  # the GCP node sets it
    assert peer(plan, "gcp-fra", "aws-fra").allowed_ips == nets("10.0.4.0/24", "10.77.0.1/32")
    assert peer(plan, "laptop", "aws-fra").allowed_ips == nets("10.0.4.0/24", "10.77.0.1/32")
    assert plan.node("aws-fra").routes == () and plan.node("aws-fra").forwards
    assert plan.node("gcp-fra").routes == nets("10.0.4.0/24") == plan.node("hetzner-nbg").routes
    assert all(n.wg_open_to_world for n in plan.nodes)
    assert peer_names(plan, "laptop") == ["aws-fra", "gcp-fra", "hetzner-nbg"]
    assert all(p.endpoint for p in plan.client("laptop").iface.peers)
    assert [n.underlay_mtu for n in plan.nodes] == [1500, 1460, 1500]


def test_lab_stack_plan() -> None:
    spec = load_spec("lab")
    plan = build_plan(spec)
    assert [n.iface.mtu for n in plan.nodes] == [1420, 1420, 1420]
    addrs = {n.name: n.iface.address.ip for n in plan.nodes}
    assert addrs == {n: hashed_host(n, spec.mesh.cidr) for n in ("lab-a", "lab-b", "lab-c")}
    assert peer(plan, "lab-a", "lab-c").allowed_ips == (
        *nets("10.0.7.0/24"),
        ipaddress.ip_network(addrs["lab-c"]),
    )
    assert [n.forwards for n in plan.nodes] == [False, False, True]
    assert plan.node("lab-a").routes == nets("10.0.7.0/24") == plan.node("lab-b").routes
    assert not any(n.wg_open_to_world for n in plan.nodes)
    assert plan.clients == ()


# ----------------------------------------------------------------------------- hub and spoke


@pytest.fixture
def one_hub() -> MeshPlan:
    return plan_of(
        config(
            node("hub", n=1, hub=True),
            node("s1", n=2),
            node("s2", "gcp", n=3, subnets=["10.0.5.0/24"]),
            node("s3", "hcloud", n=4, subnets=["10.0.6.0/24"]),
            clients=({"name": "laptop", "address": "10.77.0.100"},),
            topology="hub",
        )
    )


def test_spokes_peer_only_with_the_hub(one_hub: MeshPlan) -> None:
    for spoke in ("s1", "s2", "s3"):
        assert peer_names(one_hub, spoke) == ["hub"]
        assert one_hub.node(spoke).peer_nodes == ("hub",)
    assert peer_names(one_hub, "hub") == ["s1", "s2", "s3", "laptop"]
    assert peer_names(one_hub, "laptop") == ["hub"]


def test_one_hub_spoke_routes_the_whole_overlay_to_the_hub(one_hub: MeshPlan) -> None:
    assert peer(one_hub, "s1", "hub").allowed_ips == nets("10.0.5.0/24", "10.0.6.0/24", "10.77.0.0/24")
    assert peer(one_hub, "s2", "hub").allowed_ips == nets("10.0.6.0/24", "10.77.0.0/24")
    assert peer(one_hub, "laptop", "hub").allowed_ips == nets("10.0.5.0/24", "10.0.6.0/24", "10.77.0.0/24")
    assert one_hub.node("s1").routes == nets("10.0.5.0/24", "10.0.6.0/24")
    assert one_hub.node("s3").routes == nets("10.0.5.0/24")


def test_hub_lists_each_spoke_explicitly(one_hub: MeshPlan) -> None:
    assert peer(one_hub, "hub", "s1").allowed_ips == nets("10.77.0.2/32")
    assert peer(one_hub, "hub", "s2").allowed_ips == nets("10.0.5.0/24", "10.77.0.3/32")
    assert peer(one_hub, "hub", "laptop").allowed_ips == nets("10.77.0.100/32")
    assert one_hub.node("hub").routes == nets("10.0.5.0/24", "10.0.6.0/24")


def test_hub_roles_and_mtu(one_hub: MeshPlan) -> None:
    assert {n.name: n.forwards for n in one_hub.nodes} == {"hub": True, "s1": False, "s2": True, "s3": True}
    assert [n.wg_open_to_world for n in one_hub.nodes] == [True, False, False, False]
    # s1 and s3 are AWS/Hetzner, but what they reach through the hub includes the GCP spoke.
    assert {m.name: m.iface.mtu for m in members(one_hub)} == {
        "hub": 1380,
        "s1": 1380,
        "s2": 1380,
        "s3": 1380,
        "laptop": 1380,
    }


def test_hub_spoke_mtu_without_gcp_is_1420() -> None:
    plan = plan_of(
        config(node("hub", n=1, hub=True), node("s1", n=2), node("s2", "hcloud", n=3), topology="hub")
    )
    assert [n.iface.mtu for n in plan.nodes] == [1420, 1420, 1420]


def test_one_hub_dual_stack_aggregate_includes_cidr6() -> None:
    plan = plan_of(
        config(
            node("hub", n=1, hub=True, address6="fd77:77::1"),
            node("s1", n=2, address6="fd77:77::2", subnets=["2001:db8:2::/48"]),
            node("s2", n=3, address6="fd77:77::3", subnets=["2001:db8:3::/48"]),
            topology="hub",
            cidr6="fd77:77::/64",
        )
    )
    assert peer(plan, "s1", "hub").allowed_ips == nets("10.77.0.0/24", "2001:db8:3::/48", "fd77:77::/64")
    assert peer(plan, "hub", "s1").allowed_ips == nets("10.77.0.2/32", "2001:db8:2::/48", "fd77:77::2/128")
    assert plan.node("s1").routes == nets("2001:db8:3::/48")


@pytest.fixture
def two_hubs() -> MeshPlan:
    return plan_of(
        config(
            node("h1", n=1, hub=True),
            node("h2", "hcloud", n=2, hub=True, subnets=["10.0.2.0/24"]),
            node("s1", n=3, subnets=["10.0.3.0/24"]),
            node("s2", n=4),
            clients=({"name": "laptop", "address": "10.77.0.100"},),
            topology="hub",
        )
    )


def test_two_hubs_spokes_peer_with_both_hubs_only(two_hubs: MeshPlan) -> None:
    assert peer_names(two_hubs, "s1") == ["h1", "h2"] and peer_names(two_hubs, "s2") == ["h1", "h2"]
    assert peer_names(two_hubs, "h1") == ["h2", "s1", "s2", "laptop"]
    assert peer_names(two_hubs, "h2") == ["h1", "s1", "s2", "laptop"]
    assert peer_names(two_hubs, "laptop") == ["h1", "h2"]


def test_two_hubs_explicit_lists_without_overlap(two_hubs: MeshPlan) -> None:
    # Everything not on h2 goes through the first hub, listed explicitly (no aggregate: h2 is inside it).
    assert peer(two_hubs, "s2", "h1").allowed_ips == nets(
        "10.0.3.0/24", "10.77.0.1/32", "10.77.0.3/32", "10.77.0.100/32"
    )
    assert peer(two_hubs, "s2", "h2").allowed_ips == nets("10.0.2.0/24", "10.77.0.2/32")
    assert peer(two_hubs, "laptop", "h1").allowed_ips == nets(
        "10.0.3.0/24", "10.77.0.1/32", "10.77.0.3/32", "10.77.0.4/32"
    )
    assert peer(two_hubs, "h1", "h2").allowed_ips == nets("10.0.2.0/24", "10.77.0.2/32")
    assert peer(two_hubs, "h1", "s1").allowed_ips == nets("10.0.3.0/24", "10.77.0.3/32")
    assert two_hubs.node("s2").routes == nets("10.0.2.0/24", "10.0.3.0/24")


def test_two_hubs_roles(two_hubs: MeshPlan) -> None:
    assert [n.forwards for n in two_hubs.nodes] == [True, True, True, False]
    assert [n.wg_open_to_world for n in two_hubs.nodes] == [True, True, False, False]
    assert two_hubs.node("s1").peer_nodes == ("h1", "h2")


# ----------------------------------------------------------------------------- clients


@pytest.fixture
def with_full_tunnel() -> MeshPlan:
    return plan_of(
        config(
            node("a", n=1, address6="fd77:77::1"),
            node("gw", "hcloud", n=2, gateway=True, address6="fd77:77::2"),
            node("c", n=3, address6="fd77:77::3", subnets=["10.0.3.0/24"]),
            clients=(
                {"name": "phone", "address": "10.77.0.50", "address6": "fd77:77::50", "fullTunnel": True,
                 "dns": ["10.77.0.2", "fd77:77::2"]},
            ),
            cidr6="fd77:77::/64",
        )
    )  # fmt: skip


def test_full_tunnel_client_has_one_peer_the_gateway(with_full_tunnel: MeshPlan) -> None:
    phone = with_full_tunnel.client("phone")
    assert phone.full_tunnel
    (only,) = phone.iface.peers
    assert (only.name, only.kind, only.endpoint, only.keepalive) == ("gw", "node", True, 25)
    assert only.allowed_ips == nets("0.0.0.0/0", "::/0")
    assert phone.dns == (ipaddress.ip_address("10.77.0.2"), ipaddress.ip_address("fd77:77::2"))
    assert phone.iface.address6 == ipaddress.IPv6Interface("fd77:77::50/64")


def test_other_nodes_reach_a_full_tunnel_client_via_the_gateway(with_full_tunnel: MeshPlan) -> None:
    assert peer_names(with_full_tunnel, "a") == ["gw", "c"]
    assert peer(with_full_tunnel, "a", "gw").allowed_ips == nets(
        "10.77.0.2/32", "10.77.0.50/32", "fd77:77::2/128", "fd77:77::50/128"
    )
    assert peer_names(with_full_tunnel, "gw") == ["a", "c", "phone"]
    phone = peer(with_full_tunnel, "gw", "phone")
    assert (phone.kind, phone.endpoint, phone.keepalive) == ("client", False, None)
    assert phone.allowed_ips == nets("10.77.0.50/32", "fd77:77::50/128")


def test_gateway_roles(with_full_tunnel: MeshPlan) -> None:
    gw = with_full_tunnel.node("gw")
    assert gw.gateway and gw.forwards and gw.wg_open_to_world
    a = with_full_tunnel.node("a")
    assert not a.gateway and not a.forwards and not a.wg_open_to_world
    assert with_full_tunnel.node("c").forwards and not with_full_tunnel.node("c").wg_open_to_world


def test_node_client_entries_never_carry_an_endpoint() -> None:
    plan = plan_of(
        config(
            node("a", n=1),
            node("gw", n=2, gateway=True),
            clients=({"name": "laptop"}, {"name": "phone", "fullTunnel": True}),
        )
    )
    client_entries = [p for n in plan.nodes for p in n.iface.peers if p.kind == "client"]
    assert {p.name for p in client_entries} == {"laptop", "phone"}
    assert all(not p.endpoint and p.keepalive is None for p in client_entries)
    assert [p.name for p in plan.node("a").iface.peers if p.kind == "client"] == ["laptop"]


def test_split_clients_do_not_reach_each_other_in_a_full_mesh() -> None:
    plan = plan_of(config(node("a", n=1), clients=({"name": "x", "address": "10.77.0.8"}, {"name": "y"})))
    assert peer(plan, "x", "a").allowed_ips == nets("10.77.0.1/32")
    assert peer_names(plan, "x") == ["a"]


def test_hub_split_client_reaches_a_full_tunnel_client_through_the_hub() -> None:
    plan = plan_of(
        config(
            node("hub", n=1, hub=True),
            node("gw", n=2, gateway=True),
            clients=(
                {"name": "laptop", "address": "10.77.0.10"},
                {"name": "phone", "address": "10.77.0.11", "fullTunnel": True},
            ),
            topology="hub",
        )
    )
    assert peer_names(plan, "phone") == ["gw"]
    assert peer_names(plan, "gw") == ["hub", "phone"]
    assert peer(plan, "hub", "gw").allowed_ips == nets("10.77.0.2/32", "10.77.0.11/32")
    assert peer(plan, "laptop", "hub").allowed_ips == nets("10.77.0.0/24")
    # gw has two direct peers (hub, phone) so its hub entry is explicit and excludes the phone.
    assert peer(plan, "gw", "hub").allowed_ips == nets("10.77.0.1/32", "10.77.0.10/32")


# ----------------------------------------------------------------------------- MTU


def test_mtu_follows_the_smallest_underlay_among_peers() -> None:
    plan = plan_of(
        config(
            node("big", n=1, underlayMtu=9001),
            node("std", "hcloud", n=2),
            clients=({"name": "phone", "underlayMtu": 1280},),
        )
    )
    assert [n.iface.mtu for n in plan.nodes] == [1200, 1200]
    assert plan.client("phone").iface.mtu == 1200
    jumbo = plan_of(config(node("x", n=1, underlayMtu=9001), node("y", n=2, underlayMtu=9001)))
    assert [n.iface.mtu for n in jumbo.nodes] == [8921, 8921]
    assert [n.underlay_mtu for n in jumbo.nodes] == [9001, 9001]


def test_full_tunnel_client_mtu_counts_what_it_reaches_through_the_gateway() -> None:
    plan = plan_of(
        config(
            node("gw", n=1, gateway=True),
            node("g", "gcp", n=2),
            clients=({"name": "phone", "fullTunnel": True},),
        )
    )
    assert plan.client("phone").iface.mtu == 1380


# ----------------------------------------------------------------------------- dual stack and lookups


def test_dual_stack_addresses_explicit_and_automatic() -> None:
    plan = plan_of(
        config(
            node("a", n=1, address6="fd77:77::a"),
            {"name": "b", "cloud": "lab", "publicIp": "198.51.100.2"},
            clients=({"name": "laptop"},),
            cidr6="fd77:77::/64",
        )
    )
    cidr = ipaddress.IPv4Network("10.77.0.0/24")
    cidr6 = ipaddress.IPv6Network("fd77:77::/64")
    assert plan.node("a").iface.address6 == ipaddress.IPv6Interface("fd77:77::a/64")
    b = plan.node("b").iface
    assert b.address == ipaddress.IPv4Interface(f"{hashed_host('b', cidr)}/24")
    assert b.address6 == ipaddress.IPv6Interface(f"{hashed_host('b', cidr6)}/64")
    laptop = plan.client("laptop").iface
    assert laptop.address6 == ipaddress.IPv6Interface(f"{hashed_host('laptop', cidr6)}/64")
    assert peer(plan, "a", "b").allowed_ips == (
        ipaddress.ip_network(hashed_host("b", cidr)),
        ipaddress.ip_network(hashed_host("b", cidr6)),
    )


def test_plan_lookups(full_mesh: MeshPlan) -> None:
    assert full_mesh.node("a").name == "a" and full_mesh.client("laptop").name == "laptop"
    assert full_mesh.interface("laptop").kind == "client" and full_mesh.interface("b").kind == "node"
    assert full_mesh.spec.node("b").name == "b"
    for lookup in (full_mesh.node, full_mesh.client, full_mesh.interface):
        with pytest.raises(KeyError):
            lookup("nobody")
    with pytest.raises(KeyError):
        full_mesh.node("laptop")


def test_plan_is_deterministic() -> None:
    spec = load_spec("dev")
    assert build_plan(spec) == build_plan(spec)
