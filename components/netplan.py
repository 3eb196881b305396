"""The private network each cloud site (AWS region VPC, GCP regional subnetwork) gets, as data.

A node's `subnets` are networks routed behind it. On a cloud that usually means the VPC it
lives in, so when exactly one node of a site routes a private IPv4 subnet of a size the
cloud accepts, the site's network *is* that subnet and the site's route table sends the
mesh back through that node. Otherwise the site gets a /24 out of 10.200.0.0/16 picked by
hashing the site's name (stable when sites are added) and clear of every mesh network.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mesh.plan_types import MeshPlan
from mesh.spec import IPNetwork, NodeSpec

DEFAULT_POOL = ipaddress.IPv4Network("10.200.0.0/16")
SITE_PREFIX = 24
# AWS VPCs and GCP subnetworks both accept /16 to /28 (GCP allows up to /29).
MIN_PREFIX, MAX_PREFIX = 16, 28


@dataclass(frozen=True)
class SitePlan:
    """One site's private network and, when a node routes it, that node and its return routes."""

    key: str  # e.g. "aws-eu-central-1", "gcp-europe-west3"
    cidr: ipaddress.IPv4Network
    router: str | None  # the node whose routed subnet this network is
    return_routes: tuple[ipaddress.IPv4Network, ...]  # mesh networks the site sends to `router`


def routed_private_subnet(node: NodeSpec) -> ipaddress.IPv4Network | None:
    """The node's first routed subnet if a cloud can host it as a VPC/subnetwork."""
    for net in node.subnets:
        fits = MIN_PREFIX <= net.prefixlen <= MAX_PREFIX
        if isinstance(net, ipaddress.IPv4Network) and net.is_private and fits:
            return net
    return None


def net_slug(net: IPNetwork) -> str:
    """A network as a resource-name fragment GCP accepts (no dots or slashes): 10-1-0-0-24."""
    return f"{net.network_address}-{net.prefixlen}".replace(".", "-").replace(":", "-")


def plan_sites(plan: MeshPlan, sites: dict[str, Sequence[NodeSpec]]) -> dict[str, SitePlan]:
    """A SitePlan for each site key (sites sharing one network, like GCP regions, get disjoint CIDRs)."""
    mesh_nets = _mesh_networks(plan)
    used: list[ipaddress.IPv4Network] = []
    out: dict[str, SitePlan] = {}
    # Sites that host a routed subnet claim theirs first so hashed picks steer around them.
    routed = {key: _router(nodes) for key, nodes in sites.items()}
    for key, router in routed.items():
        if router is not None:
            net = routed_private_subnet(router)
            assert net is not None
            used.append(net)
            out[key] = SitePlan(key, net, router.name, _return_routes(plan, router.name))
    for key in sites:
        if key not in out:
            net = _hashed_site_network(key, [*mesh_nets, *used])
            used.append(net)
            out[key] = SitePlan(key, net, None, ())
    return {key: out[key] for key in sites}


def _router(nodes: Sequence[NodeSpec]) -> NodeSpec | None:
    candidates = [n for n in nodes if routed_private_subnet(n) is not None]
    return candidates[0] if len(candidates) == 1 else None


def _return_routes(plan: MeshPlan, router: str) -> tuple[ipaddress.IPv4Network, ...]:
    """What the site's other hosts reach through the router: the overlay and the routes behind wg0."""
    node = plan.node(router)
    nets = {plan.spec.mesh.cidr}
    nets.update(r for r in node.routes if isinstance(r, ipaddress.IPv4Network) and r.prefixlen > 0)
    return tuple(sorted(nets, key=lambda n: (n.network_address.packed, n.prefixlen)))


def _mesh_networks(plan: MeshPlan) -> list[ipaddress.IPv4Network]:
    nets: list[IPNetwork] = [plan.spec.mesh.cidr]
    for n in plan.spec.nodes:
        nets.extend(n.subnets)
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


def _hashed_site_network(key: str, taken: Iterable[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    candidates = list(DEFAULT_POOL.subnets(new_prefix=SITE_PREFIX))
    start = int.from_bytes(hashlib.sha256(f"wgmesh site\0{key}".encode()).digest()[:4], "big")
    blocked = list(taken)
    for i in range(len(candidates)):
        net = candidates[(start + i) % len(candidates)]
        if not any(net.overlaps(t) for t in blocked):
            return net
    raise ValueError(f"no free /{SITE_PREFIX} left in {DEFAULT_POOL} for site {key}")
