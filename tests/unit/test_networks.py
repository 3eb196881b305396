"""Networks refused by meaning (mesh.networks, mesh.network_rules) and the site-network pools.

Each rule has a test that fails when the rule is removed: a config that breaks it, the exact
key it names, and a neighbour that must still be accepted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import pytest
from test_cloudinit_plans import keys_for, mesh_plan

from cloudinit.render import client_config, node_wg_conf
from components.netplan import plan_sites
from mesh.errors import ConfigError, RenderError
from mesh.networks import (
    IPV6_MIN_MTU,
    SITE_POOLS,
    SPECIAL_V4,
    SPECIAL_V6,
    WG_OVERHEAD,
    free_site_network,
)
from mesh.plan import build_plan
from mesh.spec import NodeSpec, parse

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINmmuPryri6glS1QlhaDJjKjzx04JfygjBfH72YlFlq/"


def config(**mesh: Any) -> dict[str, Any]:
    return {
        "mesh": {"cidr": "10.77.0.0/24", **mesh},
        "nodes": [
            {"name": "aws-fra", "cloud": "aws", "region": "eu-central-1"},
            {"name": "gcp-fra", "cloud": "gcp", "region": "europe-west3"},
            {"name": "lab-a", "cloud": "lab", "publicIp": "198.51.100.1"},
        ],
        "clients": [{"name": "laptop"}],
    }


def problems(cfg: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse(cfg)
    return [(p.key, p.message) for p in info.value.problems]


def only(cfg: dict[str, Any]) -> tuple[str, str]:
    found = problems(cfg)
    assert len(found) == 1, found
    return found[0]


# ----------------------------------------------------------------------------- special-purpose ranges


def inside(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """A routable-sized network inside a reserved range (the range itself when it is small)."""
    prefix = max(net.prefixlen, 24 if net.version == 4 else 64)
    return str(next(net.subnets(new_prefix=prefix)))


@pytest.mark.parametrize("reserved", SPECIAL_V4, ids=str)
def test_overlay_and_subnet_inside_a_special_ipv4_range_are_refused(reserved: Any) -> None:
    assert only(config(cidr=inside(reserved.net))) == (
        "wgmesh:mesh.cidr",
        f"{inside(reserved.net)} is inside {reserved}",
    )
    cfg = config()
    cfg["nodes"][2]["subnets"] = [inside(reserved.net)]
    assert only(cfg) == ("wgmesh:nodes[2].subnets[0]", f"{inside(reserved.net)} is inside {reserved}")


@pytest.mark.parametrize("reserved", SPECIAL_V6, ids=str)
def test_ipv6_overlay_and_subnet_touching_a_special_range_are_refused(reserved: Any) -> None:
    cfg = config()
    cfg["nodes"][2]["subnets"] = [inside(reserved.net)]
    assert only(cfg) == ("wgmesh:nodes[2].subnets[0]", f"{inside(reserved.net)} is inside {reserved}")
    if reserved.net.prefixlen <= 120:
        key, message = only(config(cidr6=inside(reserved.net)))
        assert key == "wgmesh:mesh.cidr6" and str(reserved) in message


def test_a_network_covering_the_metadata_address_names_it() -> None:
    key, message = only(config(cidr="169.254.169.0/24"))
    assert key == "wgmesh:mesh.cidr" and "169.254.169.254" in message
    cfg = config(cidr6="fd00:ec2::/64")
    assert only(cfg)[0] == "wgmesh:mesh.cidr6"
    assert {m for _, m in problems(cfg)} == {
        "fd00:ec2::/64 covers fd00:ec2::254/128 (AWS instance metadata service over IPv6)"
    }


def test_default_routes_are_refused_as_such() -> None:
    cfg = config(cidr="0.0.0.0/0")
    assert ("wgmesh:mesh.cidr", "0.0.0.0/0 is a default route: internet egress is a node's "
            "`gateway: true`, not a network") in problems(cfg)  # fmt: skip


@pytest.mark.parametrize(
    "cidr",
    ["10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "198.18.0.0/15", "192.0.2.0/24"],
)
def test_ordinary_and_shared_overlays_are_accepted(cidr: str) -> None:
    """100.64.0.0/10 (carrier NAT space, Tailscale's overlay) and the benchmark and documentation
    ranges are not special to a host."""
    assert parse(config(cidr=cidr)).mesh.cidr == ipaddress.IPv4Network(cidr)


def test_ula_and_global_ipv6_overlays_are_accepted() -> None:
    assert parse(config(cidr6="fd00:1::/64")).mesh.cidr6 is not None
    assert parse(config(cidr6="2600:1f18::/64")).mesh.cidr6 is not None


# ----------------------------------------------------------------------------- members' endpoints


def test_overlay_holding_a_lab_public_ip_is_refused() -> None:
    assert only(config(cidr="198.51.100.0/24")) == (
        "wgmesh:mesh.cidr",
        "198.51.100.0/24 contains wgmesh:nodes[2].publicIp 198.51.100.1: its tunnel would route into itself",
    )


def test_ipv6_overlay_holding_a_lab_public_ip6_is_refused() -> None:
    cfg = config(cidr6="fd99::/64")
    cfg["nodes"][2]["publicIp6"] = "fd99::5"
    assert only(cfg) == (
        "wgmesh:mesh.cidr6",
        "fd99::/64 contains wgmesh:nodes[2].publicIp6 fd99::5: its tunnel would route into itself",
    )


def test_a_cloud_endpoint_inside_a_routed_subnet_is_a_one_line_render_error() -> None:
    """Cloud IPs exist only once allocated: the render refuses an Endpoint inside AllowedIPs."""
    plan = mesh_plan(subnet_behind_first="203.0.113.0/24")
    endpoints = {"n1": "192.0.2.10", "n2": "203.0.113.7", "n3": "192.0.2.12"}
    with pytest.raises(RenderError) as info:
        node_wg_conf(plan, "n3", keys_for(plan, "n3"), endpoints)
    assert str(info.value) == (
        "n3: peer n2's endpoint 203.0.113.7 is inside 203.0.113.0/24, AllowedIPs of peer n1: its packets "
        "would be routed into the tunnel itself; move the overlay or subnet off that address"
    )
    endpoints["n2"] = "192.0.2.11"
    assert "Endpoint = 192.0.2.11:" in node_wg_conf(plan, "n3", keys_for(plan, "n3"), endpoints)


def test_a_cloud_endpoint_inside_the_overlay_is_a_render_error() -> None:
    plan = mesh_plan(subnet_behind_first=None)
    overlay_host = str(plan.node("n1").iface.address.ip + 50)
    endpoints = {"n1": "192.0.2.10", "n2": overlay_host, "n3": "192.0.2.12"}
    with pytest.raises(
        RenderError, match=f"endpoint {overlay_host} is inside 10.77.0.0/24, the overlay of wg0's Address"
    ):
        client_config(plan, "laptop", keys_for(plan, "laptop"), endpoints)


def test_a_full_tunnel_default_route_does_not_count_as_holding_the_endpoint() -> None:
    cfg = config()
    cfg["nodes"][0]["gateway"] = True
    cfg["clients"][0]["fullTunnel"] = True
    plan = build_plan(parse(cfg))
    keys = keys_for(plan, "laptop")
    text = client_config(plan, "laptop", keys, {"aws-fra": "192.0.2.10", "gcp-fra": "x", "lab-a": "y"})
    assert "AllowedIPs = 0.0.0.0/0, ::/0" in text and "Endpoint = 192.0.2.10:" in text


# ----------------------------------------------------------------------------- IPv6 needs MTU 1280


def test_ipv6_overlay_refuses_an_underlay_that_leaves_wg0_below_1280() -> None:
    cfg = config(cidr6="fd77::/64")
    cfg["nodes"][2]["underlayMtu"] = 1359
    assert only(cfg) == (
        "wgmesh:nodes[2].underlayMtu",
        "1359 leaves wg0 an MTU of 1279 (80 for WireGuard over IPv6), below the 1280 IPv6 needs "
        "(RFC 8200) with wgmesh:mesh.cidr6: use 1360 or more, or drop cidr6",
    )
    cfg["clients"][0]["underlayMtu"] = 1300
    assert [k for k, _ in problems(cfg)] == ["wgmesh:nodes[2].underlayMtu", "wgmesh:clients[0].underlayMtu"]


def test_the_smallest_underlay_the_message_names_gives_exactly_1280_everywhere() -> None:
    cfg = config(cidr6="fd77::/64")
    cfg["nodes"][2]["underlayMtu"] = IPV6_MIN_MTU + WG_OVERHEAD
    plan = build_plan(parse(cfg))
    mtus = [n.iface.mtu for n in plan.nodes] + [c.iface.mtu for c in plan.clients]
    assert min(mtus) == IPV6_MIN_MTU


def test_low_underlay_without_ipv6_in_wg0_is_fine() -> None:
    cfg = config(endpoints="ipv6")  # IPv6 only outside the tunnel: the underlay, already >= 1280
    cfg["nodes"][2].update(underlayMtu=1280, publicIp6="2001:db8::1")
    assert build_plan(parse(cfg)).node("lab-a").iface.mtu == 1200


# ----------------------------------------------------------------------------- admin CIDRs, SSH keys


@pytest.mark.parametrize(
    ("later", "how"),
    [("203.0.113.0/24", "duplicates"), ("203.0.113.8/29", "is inside"), ("203.0.0.0/16", "contains")],
)
def test_overlapping_admin_cidrs_are_refused_on_the_later_one(later: str, how: str) -> None:
    cfg = config(adminCidrs=["198.51.100.0/24", "203.0.113.0/24", later])
    assert only(cfg) == (
        "wgmesh:mesh.adminCidrs[2]",
        f"{later} {how} wgmesh:mesh.adminCidrs[1] 203.0.113.0/24: list each source once",
    )


def test_disjoint_admin_cidrs_of_both_families_are_accepted() -> None:
    cidrs = ["203.0.113.0/25", "203.0.113.128/25", "2001:db8::/48", "2001:db8:1::/48"]
    assert len(parse(config(adminCidrs=cidrs)).mesh.admin_cidrs) == 4


def test_the_same_ssh_key_with_another_comment_is_a_duplicate() -> None:
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVz9v9oKnQqvU3b9r7rXK5GxmKkXXtmCcm1bVvC+9Qm"
    cfg = config(sshPublicKeys=[f"{ED25519} alice@a", other, f"{ED25519} alice@b"])
    assert only(cfg) == (
        "wgmesh:mesh.sshPublicKeys[2]",
        "is the same key as wgmesh:mesh.sshPublicKeys[0] (only the comment differs)",
    )
    assert len(parse(config(sshPublicKeys=[ED25519, other])).mesh.ssh_public_keys) == 2


# ----------------------------------------------------------------------------- site networks


def sites_of(cfg: dict[str, Any]) -> dict[str, ipaddress.IPv4Network]:
    plan = build_plan(parse(cfg))
    groups: dict[str, Sequence[NodeSpec]] = {}
    for n in plan.spec.nodes:
        if n.cloud in ("aws", "gcp"):
            groups[f"{n.cloud}-{n.region}"] = [*groups.get(f"{n.cloud}-{n.region}", []), n]
    return {k: s.cidr for k, s in plan_sites(plan, groups).items()}


def test_a_slash_8_overlay_gets_site_networks_from_the_next_pool() -> None:
    sites = sites_of(config(cidr="10.0.0.0/8"))
    assert all(net.subnet_of(SITE_POOLS[1]) for net in sites.values()), sites
    assert len(set(sites.values())) == len(sites)


def test_site_networks_stay_in_the_first_pool_and_put_when_it_is_free() -> None:
    """Fallback pools change nothing for a mesh that fits the first one (no site moves)."""
    before = sites_of(config())
    assert all(net.subnet_of(SITE_POOLS[0]) for net in before.values())
    assert sites_of(config(cidr="10.78.0.0/16")) == before


def test_a_mesh_covering_every_pool_is_refused_before_any_resource() -> None:
    cfg = config(cidr="10.0.0.0/8")
    cfg["nodes"][2]["subnets"] = ["172.16.0.0/12", "192.168.0.0/16"]
    key, message = only(cfg)
    assert key == "wgmesh:mesh.cidr"
    assert message.startswith("10.0.0.0/8 leaves no free /24 for the network of site aws-eu-central-1, ")
    assert "wgmesh:nodes[2].subnets[0] 172.16.0.0/12, wgmesh:nodes[2].subnets[1] 192.168.0.0/16" in message


def test_a_site_walks_past_taken_slash_24s_inside_its_pool() -> None:
    first = free_site_network("aws-x", [])
    assert first is not None and first.subnet_of(SITE_POOLS[0])
    second = free_site_network("aws-x", [first])
    assert second is not None and second != first and second.subnet_of(SITE_POOLS[0])
    assert free_site_network("aws-x", [*SITE_POOLS]) is None
