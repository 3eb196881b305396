"""Which private network each cloud site (AWS region VPC, GCP regional subnetwork) runs on.

A site's network cannot move without replacing what sits in it: an AWS VPC's and subnet's
`cidr_block` force new resources (and the route table, security groups and instances go with
the VPC), and a GCP subnetwork's `ip_cidr_range` forces a new subnetwork unless the new range
contains the old one (terraform-provider-google resource_compute_subnetwork.go:
`customdiff.ForceNewIfChange("ip_cidr_range", IsShrinkageIpCidr)`; the Compute API's
`subnetworks.expandIpCidrRange` "can only be larger than ... the range previously defined").
So a site that exists keeps the network the cloud reports for it, whatever the stack file
says now, and a change that cannot keep it is refused unless the user lists the site in
`wgmesh:mesh.replaceNetworks`.

A new site (or one listed there) chooses as it always did: the routed subnet of its only
node that routes one a cloud can host (mesh.networks.hostable_subnet), else a /24 hashed
from the site key out of mesh.networks.SITE_POOLS. An existing site keeps its network and its
router, the node whose `subnets` hold that network, even when a second router appears or the
node order changes. Pure: no Pulumi; `existing` is what components/catalog.py read at preview.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mesh.errors import Problem
from mesh.networks import (
    SITE_POOLS,
    SITE_PREFIX,
    IPNetwork,
    allocate_site_networks,
    hostable_subnet,
    pools_text,
)

if TYPE_CHECKING:
    from mesh.spec import MeshSettings, NodeSpec

REPLACE_KEY = "wgmesh:mesh.replaceNetworks"
SITE_CLOUDS = ("aws", "gcp")  # clouds whose nodes share a per-region private network


def site_key(node: NodeSpec) -> str | None:
    """`aws-<region>` / `gcp-<region>`: the site a node's VM lives in; None off AWS and GCP, and
    for a node in an existing network (`vpcId`, `network`): that network is the user's."""
    if node.cloud not in SITE_CLOUDS or node.existing_network:
        return None
    return f"{node.cloud}-{node.region}"


def site_groups(nodes: Sequence[NodeSpec]) -> dict[str, list[NodeSpec]]:
    """Each site's nodes in file order; AWS sites first, then GCP (the order sites are planned in)."""
    groups: dict[str, list[NodeSpec]] = {}
    for cloud in SITE_CLOUDS:
        for n in nodes:
            if n.cloud == cloud and not n.existing_network:  # the user's network is no site of ours
                groups.setdefault(f"{cloud}-{n.region}", []).append(n)
    return groups


def replace_networks_problems(mesh: MeshSettings, nodes: Sequence[NodeSpec]) -> list[Problem]:
    """Every `replaceNetworks` entry must name a site of this stack, once."""
    sites = site_groups(nodes)
    known = ", ".join(sites) or "none: no AWS or GCP nodes"
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, key in enumerate(mesh.replace_networks):
        if key not in sites:
            why = f"{key!r} is not a site of this stack (sites: {known})"
            problems.append(Problem(f"{REPLACE_KEY}[{i}]", why))
        elif key in seen:
            problems.append(Problem(f"{REPLACE_KEY}[{i}]", f"{key!r} is listed twice"))
        seen.add(key)
    return problems


@dataclass(frozen=True)
class SiteChoice:
    """A site's network and the node it is routed behind (None: no node routes it)."""

    cidr: ipaddress.IPv4Network
    router: str | None


@dataclass(frozen=True)
class SiteDecision:
    sites: dict[str, SiteChoice]
    problems: list[Problem] = field(default_factory=list)  # refusals: one keyed line each
    notes: list[str] = field(default_factory=list)  # where keeping differs from a fresh choice
    warnings: list[str] = field(default_factory=list)  # replaceNetworks entries with nothing to do


def decide_site_networks(
    sites: Mapping[str, Sequence[NodeSpec]],
    mesh_networks: Sequence[tuple[str, IPNetwork]],
    existing: Mapping[str, ipaddress.IPv4Network],
    replace: Sequence[str] = (),
) -> SiteDecision:
    """Each site's network: the existing one kept, else chosen fresh; a refusal per site that
    would move off its existing network without being listed in `replace`.

    `mesh_networks` are the overlays and routed subnets, keyed (mesh.network_rules.routed_networks);
    `existing` maps a site key to the network the cloud holds for it (absent: nothing yet).
    """
    problems: list[Problem] = []
    notes: list[str] = []
    kept: dict[str, SiteChoice] = {}
    refused: set[str] = set()
    for key, members in sites.items():
        old = existing.get(key)
        if old is None or key in replace:
            continue
        choice, problem = _keep(key, members, mesh_networks, old)
        if choice is not None:
            kept[key] = choice
        else:
            refused.add(key)
            assert problem is not None
            problems.append(problem)
    fresh, full = _fresh(sites, mesh_networks, [c.cidr for c in kept.values()], skip=set(kept))
    if full:  # only when kept networks fill what the spec's check left free
        why = f"no free /{SITE_PREFIX} left in {pools_text()} for site {', '.join(full)}"
        problems.append(Problem("wgmesh:nodes", why))
        return SiteDecision({}, problems)
    chosen = {key: kept.get(key) or fresh[key] for key in sites}
    first_up, _ = _fresh(sites, mesh_networks, [], skip=set())  # what a first `up` would choose
    for key, choice in kept.items():
        if key in first_up and first_up[key] != choice:
            notes.append(_kept_note(key, choice, first_up[key]))
    for key in sites:  # the guard: no existing network moves unless the user listed its site
        old = existing.get(key)
        if old is None or key in replace or key in refused or _keeps(key, old, chosen[key].cidr):
            continue
        problems.append(_problem("wgmesh:nodes", key, sites[key], old, f"would move to {chosen[key].cidr}"))
    warnings = [
        f"{REPLACE_KEY}[{i}]: {key} {_unchanged(existing.get(key), chosen[key].cidr)}; remove it, so a "
        "later change cannot replace that network without asking"
        for i, key in enumerate(replace)
        if key in chosen and existing.get(key) in (None, chosen[key].cidr)
    ]
    return SiteDecision(chosen, problems, notes, warnings)


def _keep(
    key: str,
    members: Sequence[NodeSpec],
    mesh_networks: Sequence[tuple[str, IPNetwork]],
    old: ipaddress.IPv4Network,
) -> tuple[SiteChoice | None, Problem | None]:
    """The site on its existing network, or why it cannot stay there."""
    owner = next((n for n in members if old in n.subnets), None)
    if owner is not None:  # the spec keeps routed subnets disjoint: nothing else overlaps it
        return SiteChoice(old, owner.name), None
    grown = next(((n, net) for n in members if (net := _superset(n, old)) is not None), None)
    if grown is not None and key.startswith("gcp-"):
        return SiteChoice(grown[1], grown[0].name), None  # GCP expands a subnetwork's range in place
    clash = next(((k, net) for k, net in mesh_networks if net.version == 4 and net.overlaps(old)), None)
    if clash is not None:
        ckey, cnet = clash
        how = "overlaps" if grown is None else "now contains"
        return None, _problem(ckey, key, members, old, f"{cnet} {how} it")
    if _allocated(old):
        return SiteChoice(old, None), None  # a wgmesh /24: no node ever had to route it
    return None, _problem(
        "wgmesh:nodes",
        key,
        members,
        old,
        "no node of the site routes it any more (its router left or dropped that subnet); route "
        f"{old} from a node of {key} to keep it",
    )


def _superset(node: NodeSpec, old: ipaddress.IPv4Network) -> ipaddress.IPv4Network | None:
    """The node's hostable routed subnet strictly containing `old`, if any."""
    v4 = [n for n in node.subnets if isinstance(n, ipaddress.IPv4Network)]
    return hostable_subnet(n for n in v4 if n != old and old.subnet_of(n))


def _keeps(key: str, old: ipaddress.IPv4Network, new: ipaddress.IPv4Network) -> bool:
    """Whether moving `old` to `new` replaces nothing: the same network, or a GCP expansion."""
    return new == old or (key.startswith("gcp-") and old.subnet_of(new))


def _allocated(net: ipaddress.IPv4Network) -> bool:
    """Whether a network looks like a wgmesh-allocated site /24 (inside one of the pools)."""
    return net.prefixlen == SITE_PREFIX and any(net.subnet_of(p) for p in SITE_POOLS)


def _fresh(
    sites: Mapping[str, Sequence[NodeSpec]],
    mesh_networks: Sequence[tuple[str, IPNetwork]],
    taken: Sequence[ipaddress.IPv4Network],
    skip: set[str],
) -> tuple[dict[str, SiteChoice], list[str]]:
    """Today's choice for every site not in `skip`, clear of the `taken` (kept) networks, and
    the sites left without a free /24."""
    routers = {key: _router(members) for key, members in sites.items() if key not in skip}
    nets = allocate_site_networks(
        {key: hostable_subnet(r.subnets) if r is not None else None for key, r in routers.items()},
        [*(net for _, net in mesh_networks), *taken],
    )
    out: dict[str, SiteChoice] = {}
    for key, net in nets.items():
        if net is not None:
            router = routers[key]
            out[key] = SiteChoice(net, router.name if router is not None else None)
    return out, [key for key, net in nets.items() if net is None]


def _router(members: Sequence[NodeSpec]) -> NodeSpec | None:
    """The site's only node routing a hostable subnet (two or more: none is the site's)."""
    candidates = [n for n in members if hostable_subnet(n.subnets) is not None]
    return candidates[0] if len(candidates) == 1 else None


def replaced_text(key: str, members: Sequence[NodeSpec]) -> str:
    """What a new network for the site replaces, in the cloud's words."""
    vms = ", ".join(n.name for n in members)
    if key.startswith("aws-"):
        return f"the VPC, subnet, route table, security groups and every VM in {key} ({vms})"
    return f"the subnetwork and every VM in {key} ({vms})"


def _problem(
    config_key: str, key: str, members: Sequence[NodeSpec], old: ipaddress.IPv4Network, why: str
) -> Problem:
    return Problem(
        config_key,
        f"site {key} runs on {old} and {why}; a new network replaces {replaced_text(key, members)}. "
        f"To accept that, list {key} in {REPLACE_KEY}",
    )


def _kept_note(key: str, kept: SiteChoice, fresh: SiteChoice) -> str:
    via = f" routed behind {kept.router}" if kept.router else ""
    return f"site {key} keeps its network {kept.cidr}{via} (a new site would get {fresh.cidr})"


def _unchanged(old: ipaddress.IPv4Network | None, new: ipaddress.IPv4Network) -> str:
    return f"has no network yet (it gets {new})" if old is None else f"keeps {new}: nothing to replace"
