"""Stack-file rules about what networks, MTUs, admin CIDRs and SSH keys mean (called by mesh.spec).

Each function returns Problems keyed on the value to change (the later one of a pair), so
`parse()` can report them with everything else in one round.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from mesh.errors import Problem
from mesh.networks import (
    IPV6_MIN_MTU,
    IPV6_MIN_UNDERLAY_MTU,
    SITE_POOLS,
    SITE_PREFIX,
    WG_OVERHEAD,
    IPNetwork,
    allocate_site_networks,
    pools_text,
    site_router_subnet,
    special_clash,
)
from mesh.site_networks import site_groups

if TYPE_CHECKING:
    from mesh.spec import ClientSpec, MeshSettings, NodeSpec


def routed_networks(mesh: MeshSettings, nodes: Sequence[NodeSpec]) -> list[tuple[str, IPNetwork]]:
    """(key, network) of both overlays and every routed subnet, in file order."""
    out: list[tuple[str, IPNetwork]] = [("wgmesh:mesh.cidr", mesh.cidr)]
    if mesh.cidr6 is not None:
        out.append(("wgmesh:mesh.cidr6", mesh.cidr6))
    out += [(f"{n.key}.subnets[{j}]", net) for n in nodes for j, net in enumerate(n.subnets)]
    return out


def special_range_problems(networks: Iterable[tuple[str, IPNetwork]]) -> list[Problem]:
    """Overlays and subnets become routes into wg0 on every member: none may take a range a host
    needs for itself (loopback, link-local and the metadata service, multicast, a default route)."""
    return [Problem(key, f"{net} {why}") for key, net in networks if (why := special_clash(net)) is not None]


def endpoint_problems(mesh: MeshSettings, nodes: Sequence[NodeSpec]) -> list[Problem]:
    """An overlay holding a member's public endpoint routes the tunnel's own packets into itself.

    Only lab nodes have their endpoint in the stack file; cloud endpoints are checked when
    the configs are rendered (cloudinit.wireguard refuses an Endpoint inside an AllowedIPs).
    Routed subnets get the same check in mesh.spec (`_check_members`).
    """
    overlays: list[tuple[str, IPNetwork]] = [("wgmesh:mesh.cidr", mesh.cidr)]
    if mesh.cidr6 is not None:
        overlays.append(("wgmesh:mesh.cidr6", mesh.cidr6))
    problems = []
    for key, net in overlays:
        for n in nodes:
            for attr, ip in (("publicIp", n.public_ip), ("publicIp6", n.public_ip6)):
                if ip is not None and ip.version == net.version and ip in net:
                    problems.append(
                        Problem(
                            key, f"{net} contains {n.key}.{attr} {ip}: its tunnel would route into itself"
                        )
                    )
    return problems


def ipv6_mtu_problems(mesh: MeshSettings, members: Iterable[NodeSpec | ClientSpec]) -> list[Problem]:
    """With `cidr6`, wg0 carries IPv6 and needs MTU >= 1280 (RFC 8200), on every member.

    mesh.plan gives each member the smallest underlay among itself and the peers and hops its
    traffic crosses, minus WG_OVERHEAD. So every wg0 MTU is >= 1280 exactly when every
    member's underlay is >= 1280 + WG_OVERHEAD: a member below that is the one to change.
    """
    if mesh.cidr6 is None:
        return []
    return [
        Problem(
            f"{m.key}.underlayMtu",
            f"{m.underlay_mtu} leaves wg0 an MTU of {m.underlay_mtu - WG_OVERHEAD} ({WG_OVERHEAD} for "
            f"WireGuard over IPv6), below the {IPV6_MIN_MTU} IPv6 needs (RFC 8200) with wgmesh:mesh.cidr6: "
            f"use {IPV6_MIN_UNDERLAY_MTU} or more, or drop cidr6",
        )
        for m in members
        if m.underlay_mtu < IPV6_MIN_UNDERLAY_MTU
    ]


def duplicate_admin_cidr_problems(cidrs: Sequence[tuple[str, IPNetwork]]) -> list[Problem]:
    """Each admin CIDR is one firewall rule per node: AWS refuses a duplicate rule
    (InvalidPermission.Duplicate), and one inside another only spends rule quota. Two CIDRs
    overlap only when one holds the other, so any overlap is refused, keyed on the later one."""
    problems = []
    for i, (key, net) in enumerate(cidrs):
        for earlier_key, earlier in cidrs[:i]:
            if net.version != earlier.version or not net.overlaps(earlier):
                continue
            if net == earlier:
                how = "duplicates"
            elif net.subnet_of(earlier):  # type: ignore[arg-type]
                how = "is inside"
            else:
                how = "contains"
            problems.append(Problem(key, f"{net} {how} {earlier_key} {earlier}: list each source once"))
            break
    return problems


def duplicate_ssh_key_problems(keys: Sequence[tuple[str, str]]) -> list[Problem]:
    """The same key twice (the comment does not count): Hetzner refuses a second SSH key with the
    same fingerprint ("SSH key with the same fingerprint already exists", uniqueness_error)."""
    seen: dict[tuple[str, ...], str] = {}
    problems = []
    for key, text in keys:
        material = tuple(text.split()[:2])  # type and base64 blob
        if material in seen:
            problems.append(Problem(key, f"is the same key as {seen[material]} (only the comment differs)"))
        else:
            seen[material] = key
    return problems


def site_network_problems(mesh: MeshSettings, nodes: Sequence[NodeSpec]) -> list[Problem]:
    """Each AWS region and GCP region with nodes needs a private /24 (mesh.networks.SITE_POOLS)
    clear of the mesh's networks: refuse, before any resource, a mesh that leaves none."""
    sites = site_groups(nodes)  # nodes in an existing network (`vpcId`, `network`) need none
    if not sites:
        return []
    networks = routed_networks(mesh, nodes)
    routed = {key: site_router_subnet(n.subnets for n in members) for key, members in sites.items()}
    allocated = allocate_site_networks(routed, [net for _, net in networks])
    full = [key for key, net in allocated.items() if net is None]
    if not full:
        return []
    blockers = [
        (key, net)
        for key, net in networks
        if isinstance(net, ipaddress.IPv4Network) and any(net.overlaps(p) for p in SITE_POOLS)
    ]
    key, net = blockers[0] if blockers else ("wgmesh:nodes", mesh.cidr)
    others = ", ".join(f"{k} {n}" for k, n in blockers[1:])
    return [
        Problem(
            key,
            f"{net} leaves no free /{SITE_PREFIX} for the network of site {', '.join(full)}: wgmesh "
            f"allocates AWS VPCs and GCP subnetworks from {pools_text()}, and these are covered by it"
            + (f" and {others}" if others else "")
            + "; use a smaller overlay or move a subnet",
        )
    ]
