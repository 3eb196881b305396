"""The private network each cloud site (AWS region VPC, GCP regional subnetwork) gets, as data.

A node's `subnets` are networks routed behind it. On a cloud that usually means the VPC it
lives in, so when exactly one node of a site routes a private IPv4 subnet of a size the
cloud accepts, the site's network *is* that subnet and the site's route table sends the
mesh back through that node. Otherwise the site gets a /24 out of the first of
mesh.networks.SITE_POOLS (10.200.0.0/16 first) with one clear of every mesh network, picked by
hashing the site's name (stable when sites are added). The spec refuses, keyed, a mesh whose
networks leave no pool free, so the allocation here cannot fail on a parsed spec.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from mesh.networks import SITE_PREFIX, allocate_site_networks, hostable_subnet, pools_text
from mesh.plan_types import MeshPlan
from mesh.spec import IPNetwork, NodeSpec


@dataclass(frozen=True)
class SitePlan:
    """One site's private network and, when a node routes it, that node and its return routes."""

    key: str  # e.g. "aws-eu-central-1", "gcp-europe-west3"
    cidr: ipaddress.IPv4Network
    router: str | None  # the node whose routed subnet this network is
    return_routes: tuple[ipaddress.IPv4Network, ...]  # mesh networks the site sends to `router`


def routed_private_subnet(node: NodeSpec) -> ipaddress.IPv4Network | None:
    """The node's first routed subnet if a cloud can host it as a VPC/subnetwork."""
    return hostable_subnet(node.subnets)


def net_slug(net: IPNetwork) -> str:
    """A network as a resource-name fragment GCP accepts (no dots or slashes): 10-1-0-0-24."""
    return f"{net.network_address}-{net.prefixlen}".replace(".", "-").replace(":", "-")


def plan_sites(plan: MeshPlan, sites: dict[str, Sequence[NodeSpec]]) -> dict[str, SitePlan]:
    """A SitePlan for each site key (sites sharing one network, like GCP regions, get disjoint CIDRs)."""
    routers = {key: _router(nodes) for key, nodes in sites.items()}
    nets = allocate_site_networks(
        {key: routed_private_subnet(r) if r is not None else None for key, r in routers.items()},
        _mesh_networks(plan),
    )
    out: dict[str, SitePlan] = {}
    for key, net in nets.items():
        if net is None:  # mesh.spec.parse refuses such a mesh first (site_network_problems)
            raise ValueError(f"no free /{SITE_PREFIX} left in {pools_text()} for site {key}")
        router = routers[key]
        if router is not None:
            out[key] = SitePlan(key, net, router.name, _return_routes(plan, router.name))
        else:
            out[key] = SitePlan(key, net, None, ())
    return out


def _router(nodes: Sequence[NodeSpec]) -> NodeSpec | None:
    candidates = [n for n in nodes if routed_private_subnet(n) is not None]
    return candidates[0] if len(candidates) == 1 else None


def _return_routes(plan: MeshPlan, router: str) -> tuple[ipaddress.IPv4Network, ...]:
    """What the site's other hosts reach through the router: the overlay and the routes behind wg0."""
    node = plan.node(router)
    nets = {plan.spec.mesh.cidr}
    nets.update(r for r in node.routes if isinstance(r, ipaddress.IPv4Network) and r.prefixlen > 0)
    return tuple(sorted(nets, key=lambda n: (n.network_address.packed, n.prefixlen)))


def _mesh_networks(plan: MeshPlan) -> list[IPNetwork]:
    nets: list[IPNetwork] = [plan.spec.mesh.cidr]
    for n in plan.spec.nodes:
        nets.extend(n.subnets)
    return nets
