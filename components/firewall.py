"""Which ingress the mesh needs, as data: shared firewall objects per class, before any cloud.

One layout for every cloud keeps AWS, GCP and Hetzner identical in what they open:
WireGuard from the peers' static IPs, WireGuard from anywhere only where roaming clients
connect, SSH from `adminCidrs` only, and the ICMP that path-MTU discovery needs.

Firewall objects are shared, never one per node (GCP counts firewall rules per project,
Hetzner allows 50 firewalls per project). Nodes whose WireGuard sources are the same share a
class; a rule may also admit the node's own address (harmless), which merges a full mesh into
one class ("mesh": every node) and a hub topology into two ("mesh" for the hubs, "hubs" for the
spokes). Adding or removing an ordinary node renames no class and moves no other node.
Each cloud then maps the classes onto its own objects (`aws_firewalls`, `gcp_firewalls`,
`hcloud_firewalls`), splitting long source lists to fit `components/firewall_limits.py`;
`firewall_footprint` counts the result as the quotas do, and `firewall_problems` reports what
no split can fit, before any resource.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from components.firewall_limits import (
    AWS_GROUPS_PER_INTERFACE,
    AWS_RULES_PER_GROUP,
    GCP_SOURCE_RANGES_PER_RULE,
    GCP_TAGS_PER_INSTANCE,
    HCLOUD_EFFECTIVE_RULES_PER_FIREWALL,
    HCLOUD_FIREWALLS_PER_SERVER,
    HCLOUD_RULES_PER_FIREWALL,
    HCLOUD_SOURCES_PER_RULE,
)
from mesh.errors import Problem
from mesh.plan_types import MeshPlan, NodePlan
from mesh.spec import MeshSettings

Protocol = Literal["udp", "tcp", "icmp"]
IPNetworkT = ipaddress.IPv4Network | ipaddress.IPv6Network
IPV4_ANY = "0.0.0.0/0"
IPV6_ANY = "::/0"
SSH_PORT = 22
# Label/tag key marking the resources that deliberately open WireGuard to the world (roaming
# clients connect there); the policy pack allows a world-open WireGuard port only with it.
ROAMING_MARKER = "wgmesh-roaming"
# ICMPv6 type 2 code 0 ("packet too big"): what IPv6 path-MTU discovery needs.
ICMPV6_PACKET_TOO_BIG = (2, 0)
# GCP network tags: every mesh VM, and one per WireGuard class and for roaming.
GCP_NODE_TAG = "wgmesh-node"
MESH_CLASS = "mesh"  # every node: the one class of a full mesh, the hubs' class in a hub topology
HUBS_CLASS = "hubs"  # the hubs: the spokes' class in a hub topology
ROAMING_KEY = "wg-roaming"


@dataclass(frozen=True)
class IngressRule:
    """One allow rule: literal `sources`, and `peers` (node names) resolved to their static IPs."""

    key: str  # short stable name
    protocol: Protocol
    port: int | None  # None for ICMP
    sources: tuple[str, ...]
    description: str
    peers: tuple[str, ...] = ()
    roaming: bool = False

    @property
    def ipv4_sources(self) -> tuple[str, ...]:
        return tuple(s for s in self.sources if ipaddress.ip_network(s).version == 4)

    @property
    def ipv6_sources(self) -> tuple[str, ...]:
        return tuple(s for s in self.sources if ipaddress.ip_network(s).version == 6)


@dataclass(frozen=True)
class WireGuardClass:
    """Nodes that admit WireGuard from the same set of nodes."""

    name: str  # stable: "mesh", "hubs", or "peers-<hash of the sources>"
    sources: tuple[str, ...]  # node names, in stack order
    members: tuple[str, ...]  # cloud nodes this class applies to


@dataclass(frozen=True)
class FirewallLayout:
    """The whole mesh's ingress, cloud-neutral."""

    classes: tuple[WireGuardClass, ...]
    node_class: dict[str, str]  # cloud node -> its class (nodes without node peers have none)
    roaming: frozenset[str]  # cloud nodes WireGuard is open to the world on
    peer_version: int  # 4, or 6 under `endpoints: ipv6`: the family of the peers' sources


@dataclass(frozen=True)
class FirewallPlan:
    """One firewall object: an AWS security group, a GCP firewall rule or a Hetzner firewall."""

    key: str  # stable, part of the resource name
    rules: tuple[IngressRule, ...]
    description: str
    roaming: bool = False  # opens WireGuard to the world: carries ROAMING_MARKER
    target_tag: str | None = None  # GCP: the network tag it applies to
    members: tuple[str, ...] = ()  # nodes it applies to


@dataclass(frozen=True)
class CloudFirewalls:
    """A cloud's (or AWS region's) firewall objects and, per node, the ones applied to it."""

    firewalls: tuple[FirewallPlan, ...]
    attached: dict[str, tuple[str, ...]] = field(default_factory=dict)  # node -> keys (GCP: tags)


@dataclass(frozen=True)
class FirewallFootprint:
    """The firewall objects a mesh creates, as the clouds' quotas count them."""

    aws_groups: dict[str, int]  # AWS region -> security groups created in its VPC
    aws_rules_per_group: dict[
        str, int
    ]  # AWS region -> most inbound rules of one address family in any one group
    aws_groups_per_interface: dict[str, int]  # AWS region -> most security groups attached to one instance
    gcp_firewalls: int  # GCP firewall rules in the project (all regions)
    hcloud_firewalls: int  # Hetzner firewalls in the project
    hcloud_rules_per_firewall: int  # most rules in one Hetzner firewall
    hcloud_firewalls_per_server: int  # most firewalls applied to one server
    gcp_tags_per_instance: int = 0  # most network tags on one GCP instance
    hcloud_effective_rules: int = 0  # most effective rules (sources) in one Hetzner firewall


# ----------------------------------------------------------------------------- classes


def firewall_layout(plan: MeshPlan) -> FirewallLayout:
    """Group the cloud nodes by the nodes they admit WireGuard from."""
    names = tuple(n.name for n in plan.nodes)
    everyone = frozenset(names)
    hubs = frozenset(n.name for n in plan.spec.nodes if n.hub)
    by_sources: dict[tuple[str, ...], list[str]] = {}
    for node in plan.nodes:
        if node.cloud in ("lab", "external") or not node.peer_nodes:  # no cloud firewall of ours
            continue
        peers = set(node.peer_nodes)
        admitted = everyone if peers | {node.name} == everyone else peers
        by_sources.setdefault(tuple(n for n in names if n in admitted), []).append(node.name)
    classes = tuple(
        WireGuardClass(_class_name(sources, everyone, hubs), sources, tuple(members))
        for sources, members in by_sources.items()
    )
    return FirewallLayout(
        classes=classes,
        node_class={m: c.name for c in classes for m in c.members},
        roaming=frozenset(
            n.name for n in plan.nodes if n.wg_open_to_world and n.cloud not in ("lab", "external")
        ),
        peer_version=6 if plan.spec.mesh.endpoints == "ipv6" else 4,
    )


def _class_name(sources: tuple[str, ...], everyone: frozenset[str], hubs: frozenset[str]) -> str:
    if set(sources) == everyone:
        return MESH_CLASS
    if hubs and set(sources) == hubs:
        return HUBS_CLASS
    return "peers-" + hashlib.sha256("\0".join(sorted(sources)).encode()).hexdigest()[:8]


def chunks(items: Sequence[str], size: int) -> list[tuple[str, ...]]:
    """`items` in order, cut into pieces of at most `size` (none for no items)."""
    return [tuple(items[i : i + size]) for i in range(0, len(items), size)]


def chunk_key(key: str, index: int) -> str:
    """The first piece keeps the plain key, so a list that grows past one piece renames nothing."""
    return key if index == 0 else f"{key}-{index + 1}"


# ----------------------------------------------------------------------------- rules


def wireguard_rule(mesh: MeshSettings, peers: tuple[str, ...]) -> IngressRule:
    return IngressRule(
        key="wg-peers",
        protocol="udp",
        port=mesh.port,
        sources=(),
        description="WireGuard from the mesh peers static IPs",
        peers=peers,
    )


def roaming_rule(mesh: MeshSettings, sources: tuple[str, ...] = (IPV4_ANY, IPV6_ANY)) -> IngressRule:
    return IngressRule(
        key=ROAMING_KEY,
        protocol="udp",
        port=mesh.port,
        sources=sources,
        description="WireGuard from roaming clients (any address)",
        roaming=True,
    )


def ssh_rule(sources: tuple[str, ...]) -> IngressRule:
    return IngressRule(
        key="ssh", protocol="tcp", port=SSH_PORT, sources=sources, description="SSH from adminCidrs"
    )


def icmp_rule(sources: tuple[str, ...]) -> IngressRule:
    return IngressRule(
        key="icmp",
        protocol="icmp",
        port=None,
        sources=sources,
        description="ICMP for path MTU discovery (fragmentation needed / packet too big)",
    )


def _admin(mesh: MeshSettings, version: int) -> tuple[str, ...]:
    return tuple(str(c) for c in mesh.admin_cidrs if c.version == version)


def _icmp_sources(mesh: MeshSettings) -> tuple[str, ...]:
    """AWS and GCP name ICMPv6 separately: let it in only where the VMs have public IPv6."""
    return (IPV4_ANY, IPV6_ANY) if mesh.public_ipv6 else (IPV4_ANY,)


def resolved_sources(rule: IngressRule, hosts: dict[str, IPNetworkT]) -> list[str]:
    """The rule's sources with its peers replaced by their static IPs (/32 or /128)."""
    return [*rule.sources, *(str(hosts[p]) for p in rule.peers)]


def host_networks(endpoints: dict[str, str]) -> dict[str, IPNetworkT]:
    """Each node's static IP as a host network (/32 or /128), parsed once for the whole mesh.

    Handed the IPs peers dial from: the IPv4 ones, or the IPv6 ones under `endpoints: ipv6`.
    """
    # ext: an external node with a DNS name or behind NAT has no address ("", a name): none to admit.
    return {name: ipaddress.ip_network(ip) for name, ip in endpoints.items() if _is_ip(ip)}


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _members(layout: FirewallLayout, nodes: Sequence[NodePlan]) -> Iterator[tuple[WireGuardClass, list[str]]]:
    """Each class with its members among `nodes` (classes with none left out)."""
    names = {n.name for n in nodes}
    for c in layout.classes:
        here = [m for m in c.members if m in names]
        if here:
            yield c, here


# ----------------------------------------------------------------------------- per cloud


def aws_firewalls(plan: MeshPlan, region: str, layout: FirewallLayout | None = None) -> CloudFirewalls:
    """One region's security groups: `base` (SSH, ICMP, all outbound) or `base-roaming` (the same
    plus WireGuard from anywhere) on every node, and each class's peers in groups of at most 60
    rules (`wg-<class>`, `wg-<class>-2`, ...) on its members. Peers' /32s are one family, so a
    group of 60 peers is full; the others stay small (base: adminCidrs + 1 per family).
    """
    layout = layout or firewall_layout(plan)
    mesh = plan.spec.mesh
    nodes = [n for n in plan.nodes if n.cloud == "aws" and plan.spec.node(n.name).region == region]
    base = (*_present(ssh_rule(_admin(mesh, 4) + _admin(mesh, 6))), icmp_rule(_icmp_sources(mesh)))
    plain = [n.name for n in nodes if n.name not in layout.roaming]
    roaming = [n.name for n in nodes if n.name in layout.roaming]
    fws: list[FirewallPlan] = []
    if plain:
        fws.append(FirewallPlan("base", base, "wgmesh: SSH from adminCidrs, ICMP", members=tuple(plain)))
    if roaming:
        rules = (*base, roaming_rule(mesh))
        desc = "wgmesh: SSH from adminCidrs, ICMP, WireGuard from roaming clients"
        fws.append(FirewallPlan("base-roaming", rules, desc, roaming=True, members=tuple(roaming)))
    attached: dict[str, tuple[str, ...]] = {n: ("base",) for n in plain}
    attached |= {n: ("base-roaming",) for n in roaming}
    for c, members in _members(layout, nodes):
        for i, piece in enumerate(chunks(c.sources, AWS_RULES_PER_GROUP)):
            key = chunk_key(f"wg-{c.name}", i)
            desc = f"wgmesh: WireGuard from the {c.name} class, part {i + 1}"
            fws.append(FirewallPlan(key, (wireguard_rule(mesh, piece),), desc, members=tuple(members)))
            for m in members:
                attached[m] += (key,)
    return CloudFirewalls(tuple(fws), attached)


def gcp_firewalls(plan: MeshPlan, layout: FirewallLayout | None = None) -> CloudFirewalls:
    """The project's firewall rules for the mesh network, one family and at most 256 sources
    each: SSH and ICMP for every mesh VM (tag `wgmesh-node`), WireGuard per class (tag
    `wgmesh-wg-<class>`) and from anywhere (tag `wgmesh-wg-roaming`). Constant in the node count
    up to 256 nodes per class.
    """
    layout = layout or firewall_layout(plan)
    mesh = plan.spec.mesh
    nodes = [n for n in plan.nodes if n.cloud == "gcp"]
    if not nodes:
        return CloudFirewalls(())
    everyone = tuple(n.name for n in nodes)
    fws: list[FirewallPlan] = []
    for rule in (ssh_rule(_admin(mesh, 4)), ssh_rule(_admin(mesh, 6)), icmp_rule(_icmp_sources(mesh))):
        fws += _gcp_split(rule, GCP_NODE_TAG, everyone)
    attached: dict[str, tuple[str, ...]] = {n: (GCP_NODE_TAG,) for n in everyone}
    for c, members in _members(layout, nodes):
        tag = f"wgmesh-wg-{c.name}"
        for i, piece in enumerate(chunks(c.sources, GCP_SOURCE_RANGES_PER_RULE)):
            desc = "WireGuard from the mesh peers static IPs"
            rule = wireguard_rule(mesh, piece)
            fws.append(
                FirewallPlan(
                    chunk_key(f"wg-{c.name}", i), (rule,), desc, target_tag=tag, members=tuple(members)
                )
            )
        for m in members:
            attached[m] += (tag,)
    roaming = tuple(n for n in everyone if n in layout.roaming)
    if roaming:
        tag = f"wgmesh-{ROAMING_KEY}"
        fws += _gcp_split(roaming_rule(mesh), tag, roaming)
        for m in roaming:
            attached[m] += (tag,)
    return CloudFirewalls(tuple(fws), attached)


def _gcp_split(rule: IngressRule, tag: str, members: tuple[str, ...]) -> list[FirewallPlan]:
    """GCP rules take one address family and at most 256 ranges: one firewall per piece."""
    out = []
    for version, suffix in ((4, ""), (6, "6")):
        sources = rule.ipv4_sources if version == 4 else rule.ipv6_sources
        for i, piece in enumerate(chunks(sources, GCP_SOURCE_RANGES_PER_RULE)):
            part = IngressRule(
                rule.key, rule.protocol, rule.port, piece, rule.description, roaming=rule.roaming
            )
            desc = rule.description + (f" [{ROAMING_MARKER}]" if rule.roaming else "")
            key = chunk_key(rule.key + suffix, i)
            out.append(
                FirewallPlan(key, (part,), desc, roaming=rule.roaming, target_tag=tag, members=members)
            )
    return out


def hcloud_firewalls(plan: MeshPlan, layout: FirewallLayout | None = None) -> CloudFirewalls:
    """The project's Hetzner firewalls: `base` (SSH, ICMP) on every server, `wg-<class>` per
    class and `wg-roaming` (WireGuard from anywhere) on the servers roaming clients dial; long
    source lists become several rules of at most 100 sources in the same firewall.
    """
    layout = layout or firewall_layout(plan)
    mesh = plan.spec.mesh
    nodes = [n for n in plan.nodes if n.cloud == "hcloud"]
    if not nodes:
        return CloudFirewalls(())
    everyone = tuple(n.name for n in nodes)
    ssh = _hcloud_rules(ssh_rule(tuple(str(c) for c in mesh.admin_cidrs)))
    base = (*ssh, icmp_rule((IPV4_ANY, IPV6_ANY)))  # one Hetzner rule covers both families
    fws = [FirewallPlan("base", base, "wgmesh: SSH from adminCidrs, ICMP", members=everyone)]
    attached: dict[str, tuple[str, ...]] = {n: ("base",) for n in everyone}
    for c, members in _members(layout, nodes):
        key = f"wg-{c.name}"
        rules = _hcloud_rules(wireguard_rule(mesh, c.sources))
        fws.append(
            FirewallPlan(key, rules, f"wgmesh: WireGuard from the {c.name} class", members=tuple(members))
        )
        for m in members:
            attached[m] += (key,)
    roaming = tuple(n for n in everyone if n in layout.roaming)
    if roaming:
        fws.append(
            FirewallPlan(
                ROAMING_KEY,
                (roaming_rule(mesh),),
                "wgmesh: WireGuard from roaming clients",
                roaming=True,
                members=roaming,
            )
        )
        for m in roaming:
            attached[m] += (ROAMING_KEY,)
    return CloudFirewalls(tuple(fws), attached)


def _hcloud_rules(rule: IngressRule) -> tuple[IngressRule, ...]:
    """The rule as Hetzner rules of at most 100 sources (literal sources first, then peers)."""
    items = [*(("s", s) for s in rule.sources), *(("p", p) for p in rule.peers)]
    out = []
    for i in range(0, len(items), HCLOUD_SOURCES_PER_RULE):
        piece = items[i : i + HCLOUD_SOURCES_PER_RULE]
        sources = tuple(v for k, v in piece if k == "s")
        peers = tuple(v for k, v in piece if k == "p")
        out.append(
            IngressRule(rule.key, rule.protocol, rule.port, sources, rule.description, peers, rule.roaming)
        )
    return tuple(out)


def _present(rule: IngressRule) -> tuple[IngressRule, ...]:
    """A rule with no possible source is left out, never emitted empty (GCP: empty means anywhere)."""
    return (rule,) if rule.sources or rule.peers else ()


def aws_regions(plan: MeshPlan) -> list[str]:
    regions: list[str] = []
    for n in plan.spec.nodes:
        if n.cloud == "aws" and n.region not in regions:
            regions.append(n.region)
    return regions


# ----------------------------------------------------------------------------- counting


def rules_per_family(fw: FirewallPlan, peer_version: int) -> tuple[int, int]:
    """(IPv4, IPv6) source entries of an object: AWS counts one rule per CIDR and family."""
    v4 = v6 = 0
    for r in fw.rules:
        v4 += len(r.ipv4_sources) + (len(r.peers) if peer_version == 4 else 0)
        v6 += len(r.ipv6_sources) + (len(r.peers) if peer_version == 6 else 0)
    return v4, v6


def effective_rules(fw: FirewallPlan) -> int:
    """Hetzner's count: every source of every rule."""
    return sum(len(r.sources) + len(r.peers) for r in fw.rules)


def firewall_footprint(plan: MeshPlan) -> FirewallFootprint:
    """What the components create, counted from the same layout they read."""
    layout = firewall_layout(plan)
    aws = {r: aws_firewalls(plan, r, layout) for r in aws_regions(plan)}
    gcp = gcp_firewalls(plan, layout)
    hcloud = hcloud_firewalls(plan, layout)
    v = layout.peer_version
    return FirewallFootprint(
        aws_groups={r: len(c.firewalls) for r, c in aws.items()},
        aws_rules_per_group={
            r: max(max(rules_per_family(f, v)) for f in c.firewalls) for r, c in aws.items()
        },
        aws_groups_per_interface={r: max(len(a) for a in c.attached.values()) for r, c in aws.items()},
        gcp_firewalls=len(gcp.firewalls),
        hcloud_firewalls=len(hcloud.firewalls),
        hcloud_rules_per_firewall=max((len(f.rules) for f in hcloud.firewalls), default=0),
        hcloud_firewalls_per_server=max((len(a) for a in hcloud.attached.values()), default=0),
        gcp_tags_per_instance=max((len(a) for a in gcp.attached.values()), default=0),
        hcloud_effective_rules=max((effective_rules(f) for f in hcloud.firewalls), default=0),
    )


def firewall_problems(plan: MeshPlan) -> list[Problem]:
    """What the clouds' default firewall limits refuse for this mesh, one keyed line each."""
    layout = firewall_layout(plan)
    spec = plan.spec
    problems: list[Problem] = []
    admin = "wgmesh:mesh.adminCidrs"
    for region in aws_regions(plan):
        cloud = aws_firewalls(plan, region, layout)
        for fw in cloud.firewalls:
            worst = max(rules_per_family(fw, layout.peer_version))
            if worst > AWS_RULES_PER_GROUP:
                problems.append(
                    Problem(
                        admin,
                        f"{worst} rules of one address family in the AWS security group for SSH and ICMP "
                        f"({region}); AWS allows {AWS_RULES_PER_GROUP} per group by default",
                    )
                )
        reported: set[str] = set()  # one line per class and region, at its first member
        for node, keys in cloud.attached.items():
            name = layout.node_class.get(node, "")
            if len(keys) > AWS_GROUPS_PER_INTERFACE and name not in reported:
                reported.add(name)
                peers = len(next(c for c in layout.classes if c.name == name).sources)
                problems.append(
                    Problem(
                        spec.node(node).key,
                        f"'{node}' admits WireGuard from {peers} nodes: {len(keys)} AWS security groups "
                        f"at {AWS_RULES_PER_GROUP} rules each, and AWS allows {AWS_GROUPS_PER_INTERFACE} "
                        "per network interface by default; use topology: hub or fewer nodes",
                    )
                )
    gcp = gcp_firewalls(plan, layout)
    for node, tags in gcp.attached.items():
        if len(tags) > GCP_TAGS_PER_INSTANCE:  # never with today's classes; kept with its limit
            problems.append(
                Problem(spec.node(node).key, f"{len(tags)} network tags; GCP allows {GCP_TAGS_PER_INSTANCE}")
            )
    hcloud = hcloud_firewalls(plan, layout)
    for fw in hcloud.firewalls:
        effective = effective_rules(fw)
        if len(fw.rules) > HCLOUD_RULES_PER_FIREWALL or effective > HCLOUD_EFFECTIVE_RULES_PER_FIREWALL:
            key = admin if fw.key == "base" else spec.node(fw.members[0]).key
            problems.append(
                Problem(
                    key,
                    f"the Hetzner firewall {fw.key} needs {len(fw.rules)} rules with {effective} "
                    f"sources; Hetzner allows {HCLOUD_RULES_PER_FIREWALL} rules and "
                    f"{HCLOUD_EFFECTIVE_RULES_PER_FIREWALL} effective rules per firewall; "
                    "use topology: hub or fewer nodes",
                )
            )
    for node, keys in hcloud.attached.items():
        if len(keys) > HCLOUD_FIREWALLS_PER_SERVER:  # at most 3 today; kept with its limit
            problems.append(
                Problem(
                    spec.node(node).key,
                    f"{len(keys)} firewalls; Hetzner allows {HCLOUD_FIREWALLS_PER_SERVER}",
                )
            )
    return problems
