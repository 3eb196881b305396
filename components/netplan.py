"""The private network each cloud site (AWS region VPC, GCP regional subnetwork) gets, as data.

A node's `subnets` are networks routed behind it. On a cloud that usually means the VPC it
lives in, so when exactly one node of a new site routes a private IPv4 subnet of a size the
cloud accepts, the site's network *is* that subnet and the site's route table sends the
mesh back through that node. Otherwise the site gets a /24 out of the first of
mesh.networks.SITE_POOLS (10.200.0.0/16 first) with one clear of every mesh network, picked by
hashing the site's name (stable when sites are added). A site that exists keeps its network
and its router (mesh/site_networks.py decides, from what components/catalog.py read of the
clouds at preview); a change that would move it is refused unless the site is listed in
`wgmesh:mesh.replaceNetworks`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mesh.errors import ConfigError
from mesh.network_rules import routed_networks
from mesh.plan_types import MeshPlan
from mesh.site_networks import decide_site_networks
from mesh.spec import IPNetwork, NodeSpec


@dataclass(frozen=True)
class SitePlan:
    """One site's private network and, when a node routes it, that node and its return routes."""

    key: str  # e.g. "aws-eu-central-1", "gcp-europe-west3"
    cidr: ipaddress.IPv4Network
    router: str | None  # the node whose routed subnet this network is
    return_routes: tuple[ipaddress.IPv4Network, ...]  # mesh networks the site sends to `router`


def net_slug(net: IPNetwork) -> str:
    """A network as a resource-name fragment GCP accepts (no dots or slashes): 10-1-0-0-24."""
    return f"{net.network_address}-{net.prefixlen}".replace(".", "-").replace(":", "-")


@dataclass(frozen=True)
class SitesPlanned:
    """Every site's plan, and what preview should say about them."""

    sites: dict[str, SitePlan]
    notes: tuple[str, ...] = ()  # sites kept where a new one would go elsewhere (log.info)
    warnings: tuple[str, ...] = ()  # replaceNetworks entries with nothing to replace (log.warn)


def plan_site_networks(
    plan: MeshPlan,
    sites: Mapping[str, Sequence[NodeSpec]],
    existing: Mapping[str, ipaddress.IPv4Network],
) -> SitesPlanned:
    """A SitePlan for each site key, existing networks kept (ConfigError: one that cannot be).

    Sites sharing one network, like GCP regions, get disjoint CIDRs.
    """
    spec = plan.spec
    decision = decide_site_networks(
        sites, routed_networks(spec.mesh, spec.nodes), existing, spec.mesh.replace_networks
    )
    if decision.problems:
        raise ConfigError(decision.problems)
    out: dict[str, SitePlan] = {}
    for key, choice in decision.sites.items():
        routes = return_routes(plan, choice.router) if choice.router is not None else ()
        out[key] = SitePlan(key, choice.cidr, choice.router, routes)
    return SitesPlanned(out, tuple(decision.notes), tuple(decision.warnings))


def plan_sites(plan: MeshPlan, sites: Mapping[str, Sequence[NodeSpec]]) -> dict[str, SitePlan]:
    """The sites as a first `up` plans them (nothing exists yet): the quota planner's view."""
    return plan_site_networks(plan, sites, {}).sites


def subnetwork_description(labels: Mapping[str, str], key: str) -> str:
    """A GCP subnetwork's description, by which preview finds it again (GCP subnetworks take no
    labels, and their names are Pulumi's random autonames). Set at creation only: the provider
    marks `description` ForceNew, so the subnetwork ignores later changes to it."""
    return f"wgmesh site {key} (wgmesh-mesh={labels['wgmesh-mesh']}, wgmesh-stack={labels['wgmesh-stack']})"


def return_routes(plan: MeshPlan, router: str) -> tuple[ipaddress.IPv4Network, ...]:
    """What the site's other hosts reach through the router: the overlay and the routes behind wg0."""
    node = plan.node(router)
    nets = {plan.spec.mesh.cidr}
    nets.update(r for r in node.routes if isinstance(r, ipaddress.IPv4Network) and r.prefixlen > 0)
    return tuple(sorted(nets, key=lambda n: (n.network_address.packed, n.prefixlen)))
