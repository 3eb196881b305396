"""Quotas planned, not discovered: what a stack needs of each cloud quota, before any resource.

Pure (no Pulumi). `quota_needs` counts, per AWS region, GCP project and region, and Hetzner
account, everything the program creates that a default quota caps; `budget` sets each need
next to the number in force (a value the stack file declares under `wgmesh:quotas`; else the
account's own, read from AWS Service Quotas; else the documented default) and says which
needs exceed it, one line each. Only what this stack creates is counted: other stacks and
the account's default VPC draw on the same quotas.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# The firewall layout's own count; components.firewall provides it once the redesign lands.
from components.firewall import FirewallFootprint, firewall_footprint
from components.netplan import SitePlan, plan_sites
from components.quota_catalog import (
    QUOTAS,
    Quota,
    aws_counts_as_standard,
    aws_vcpus,
    gcp_counts_as_cpus,
    gcp_vcpus,
    raise_hint,
)
from mesh.errors import Problem
from mesh.plan_types import MeshPlan
from mesh.spec import NodeSpec

# (cloud, region or None for project/account-wide, quota key): how declared and read numbers are keyed.
QuotaKey = tuple[str, str | None, str]
DEFAULT = "documented default"
READ = "read from AWS Service Quotas"


@dataclass(frozen=True)
class Need:
    """How many of one quota the stack uses in one region (or project/account-wide)."""

    quota: Quota
    region: str | None
    count: int
    note: str = ""  # what the count leaves out, e.g. sizes whose vCPUs are not known

    @property
    def qkey(self) -> QuotaKey:
        return (self.quota.cloud, self.region, self.quota.key)

    @property
    def config_key(self) -> str:
        return config_key(self.qkey)

    @property
    def where(self) -> str:
        scope = {"aws": "account", "gcp": "project", "hcloud": "account"}[self.quota.cloud]
        return f"{self.quota.cloud} {self.region or scope}"


@dataclass(frozen=True)
class InForce:
    value: int | None  # None: no published default and none declared (printed, never refused)
    origin: str  # documented default | declared in wgmesh:quotas... | read from AWS Service Quotas


def config_key(key: QuotaKey) -> str:
    """The `wgmesh:quotas` key that declares this quota."""
    cloud, region, name = key
    if region is None:
        return f"wgmesh:quotas.{cloud}.{name}"
    if cloud == "gcp":
        return f"wgmesh:quotas.gcp.regions.{region}.{name}"
    return f"wgmesh:quotas.{cloud}.{region}.{name}"


def quota_needs(
    plan: MeshPlan, footprint: FirewallFootprint | None = None, sites: Mapping[str, SitePlan] | None = None
) -> list[Need]:
    """Every quota the plan draws on, in a stable order (cloud, region, catalog order).

    `sites`: the site networks as planned against the clouds (existing ones kept, with their
    routers); None: as a first `up` plans them.
    """
    fw = footprint if footprint is not None else firewall_footprint(plan)
    by_cloud: dict[str, list[NodeSpec]] = defaultdict(list)
    for n in plan.spec.nodes:
        by_cloud[n.cloud].append(n)
    needs: list[Need] = []
    if by_cloud["aws"]:
        needs += _aws_needs(plan, by_cloud["aws"], fw, sites)
    if by_cloud["gcp"]:
        needs += _gcp_needs(plan, by_cloud["gcp"], fw, sites)
    if by_cloud["hcloud"]:
        needs += _hcloud_needs(plan, by_cloud["hcloud"], fw)
    return needs


def _need(cloud: str, key: str, region: str | None, count: int, note: str = "") -> Need:
    return Need(QUOTAS[(cloud, key)], region, count, note)


def _regions(nodes: list[NodeSpec]) -> dict[str, list[NodeSpec]]:
    out: dict[str, list[NodeSpec]] = {}
    for n in nodes:
        out.setdefault(n.region, []).append(n)
    return out


def _aws_needs(
    plan: MeshPlan, nodes: list[NodeSpec], fw: FirewallFootprint, planned: Mapping[str, SitePlan] | None
) -> list[Need]:
    regions = _regions(nodes)
    own = _regions([n for n in nodes if not n.existing_network])  # the user's networks are no site
    sites = planned or plan_sites(plan, {f"aws-{r}": ns for r, ns in own.items()})
    needs: list[Need] = []
    for region, ns in regions.items():
        vcpus, unknown = _vcpus(ns, aws_vcpus, aws_counts_as_standard)
        # The table's IPv4 routes: the default route and the return routes through its router;
        # IPv6 (the default ::/0 only) is counted separately by AWS and is always smaller.
        site = sites.get(f"aws-{region}")  # none when every node of the region is in the user's VPC
        routes = 1 + len(site.return_routes) if site is not None else 0
        owned = 1 if site is not None else 0
        needs += [
            _need("aws", "elasticIps", region, len(ns)),
            _need("aws", "vpcs", region, owned),
            _need("aws", "internetGateways", region, owned),
            _need("aws", "securityGroups", region, fw.aws_groups.get(region, 0)),
            _need("aws", "rulesPerSecurityGroup", region, fw.aws_rules_per_group.get(region, 0)),
            _need("aws", "securityGroupsPerInterface", region, fw.aws_groups_per_interface.get(region, 0)),
            _need("aws", "routesPerRouteTable", region, routes),
            _need("aws", "standardVcpus", region, vcpus, unknown),
        ]
    return needs


def _gcp_needs(
    plan: MeshPlan, nodes: list[NodeSpec], fw: FirewallFootprint, planned: Mapping[str, SitePlan] | None
) -> list[Need]:
    regions = _regions(nodes)
    own = _regions([n for n in nodes if not n.existing_network])  # the user's networks are no site
    sites = planned or plan_sites(plan, {f"gcp-{r}": ns for r, ns in own.items()})
    gcp_sites = [s for key, s in sites.items() if key.startswith("gcp-")]
    routers = [s for s in gcp_sites if s.router is not None]
    # GCP routes are network-wide: the program adds return routes only when exactly one node routes.
    routes = len(routers[0].return_routes) if len(routers) == 1 else 0
    own_regions = {key.removeprefix("gcp-") for key in sites if key.startswith("gcp-")}
    needs = [
        _need("gcp", "networks", None, 1 if own_regions else 0),  # nodes in the user's network: none
        _need("gcp", "subnetworks", None, len(own_regions & set(regions))),
        _need("gcp", "firewalls", None, fw.gcp_firewalls),
        _need("gcp", "routes", None, routes),
    ]
    for region, ns in regions.items():
        vcpus, unknown = _vcpus(ns, gcp_vcpus, gcp_counts_as_cpus)
        needs += [
            _need("gcp", "staticAddresses", region, len(ns)),  # one reserved external IPv4 per node
            _need("gcp", "inUseAddresses", region, len(ns)),  # which each node's VM then uses
            _need("gcp", "cpus", region, vcpus, unknown),
        ]
    return needs


def _hcloud_needs(plan: MeshPlan, nodes: list[NodeSpec], fw: FirewallFootprint) -> list[Need]:
    per_node_ips = 2 if plan.spec.mesh.public_ipv6 else 1
    return [
        _need("hcloud", "servers", None, len(nodes)),
        _need("hcloud", "primaryIps", None, len(nodes) * per_node_ips),
        _need("hcloud", "firewalls", None, fw.hcloud_firewalls),
        _need("hcloud", "rulesPerFirewall", None, fw.hcloud_rules_per_firewall),
        _need("hcloud", "firewallsPerServer", None, fw.hcloud_firewalls_per_server),
        _need("hcloud", "sshKeys", None, 1),  # one stack key whatever sshPublicKeys holds (hcloud.py)
    ]


def _vcpus(
    nodes: list[NodeSpec], vcpus_of: Callable[[str], int | None], counts: Callable[[str], bool]
) -> tuple[int, str]:
    """Total vCPUs of the sizes that count against the quota, and a note naming unknown sizes."""
    total = 0
    unknown: Counter[str] = Counter()
    for n in nodes:
        if not counts(n.size):
            continue
        v = vcpus_of(n.size)
        if v is None:
            unknown[n.size] += 1
        else:
            total += v
    note = ", ".join(f"{count} x {size}" for size, count in sorted(unknown.items()))
    return total, (f"vCPUs of {note} not known: not counted" if note else "")


def in_force(need: Need, declared: dict[QuotaKey, int], read: dict[QuotaKey, int]) -> InForce:
    """The number that caps `need`: declared in the stack file, else read from the cloud, else the default.

    A declared number wins over a read one: it is the user's word (an increase approved but
    not yet shown, a number read where the program may not). components/quota_aws.py reads
    only quotas the stack file does not declare.
    """
    if need.qkey in declared:
        return InForce(declared[need.qkey], f"declared in {need.config_key}")
    if need.qkey in read:
        return InForce(read[need.qkey], READ)
    return InForce(need.quota.default, DEFAULT if need.quota.default is not None else "no published default")


def budget_line(need: Need, limit: InForce) -> str:
    """One line of the preview's quota budget."""
    cap = "?" if limit.value is None else str(limit.value)
    verdict = "OVER" if limit.value is not None and need.count > limit.value else "ok"
    note = f"; {need.note}" if need.note else ""
    numbers = f"{need.count} needed / {cap} in force ({limit.origin}{note})"
    return f"quota {need.where} {need.quota.name}: {numbers} {verdict}"


def over_quota(need: Need, limit: InForce) -> Problem | None:
    """A one-line problem when `need` exceeds what is in force: the quota, the numbers, how to raise it."""
    if limit.value is None or need.count <= limit.value:
        return None
    where = need.region or ("the project" if need.quota.cloud == "gcp" else "the account")
    how = raise_hint(need.quota, need.region, need.count)
    return Problem(
        need.config_key,
        f"{need.quota.cloud} quota '{need.quota.name}' in {where}: this stack needs {need.count}, "
        f"{limit.value} in force ({limit.origin}); raise it ({how}), "
        f"then declare it as {need.config_key}: {need.count}",
    )


@dataclass(frozen=True)
class Budget:
    lines: tuple[str, ...]
    problems: tuple[Problem, ...]


def budget(needs: list[Need], declared: dict[QuotaKey, int], read: dict[QuotaKey, int]) -> Budget:
    lines: list[str] = []
    problems: list[Problem] = []
    for need in needs:
        limit = in_force(need, declared, read)
        lines.append(budget_line(need, limit))
        problem = over_quota(need, limit)
        if problem is not None:
            problems.append(problem)
    return Budget(tuple(lines), tuple(problems))
