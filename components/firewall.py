"""Which ingress a node needs, as data, before any cloud turns it into its own firewall type.

One rule list for every cloud keeps AWS, GCP and Hetzner identical in what they open:
WireGuard from the peers' static IPs, WireGuard from anywhere only where roaming clients
connect, SSH from `adminCidrs` only, and the ICMP that path-MTU discovery needs.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from mesh.plan_types import NodePlan
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


@dataclass(frozen=True)
class IngressRule:
    """One allow rule. `from_peers`: the sources are the peers' static IPs, known only at deploy time."""

    key: str  # short stable name: becomes part of resource names on clouds with one resource per rule
    protocol: Protocol
    port: int | None  # None for ICMP
    sources: tuple[str, ...]
    description: str
    from_peers: bool = False
    roaming: bool = False

    @property
    def ipv4_sources(self) -> tuple[str, ...]:
        return tuple(s for s in self.sources if ipaddress.ip_network(s).version == 4)

    @property
    def ipv6_sources(self) -> tuple[str, ...]:
        return tuple(s for s in self.sources if ipaddress.ip_network(s).version == 6)


def ingress_rules(node: NodePlan, mesh: MeshSettings) -> tuple[IngressRule, ...]:
    """The allow rules for one node; anything not listed stays closed.

    A rule with no possible source is left out rather than emitted empty: an empty source list
    means "anywhere" on GCP.
    """
    rules: list[IngressRule] = []
    if node.peer_nodes:
        rules.append(
            IngressRule(
                key="wg-peers",
                protocol="udp",
                port=mesh.port,
                sources=(),
                description="WireGuard from the static IPs of the mesh peers",
                from_peers=True,
            )
        )
    if node.wg_open_to_world:
        rules.append(
            IngressRule(
                key="wg-roaming",
                protocol="udp",
                port=mesh.port,
                sources=(IPV4_ANY, IPV6_ANY),
                description="WireGuard from roaming clients (any address)",
                roaming=True,
            )
        )
    if mesh.admin_cidrs:
        rules.append(
            IngressRule(
                key="ssh",
                protocol="tcp",
                port=SSH_PORT,
                sources=tuple(str(c) for c in mesh.admin_cidrs),
                description="SSH from adminCidrs",
            )
        )
    rules.append(
        IngressRule(
            key="icmp",
            protocol="icmp",
            port=None,
            sources=(IPV4_ANY, IPV6_ANY),
            description="ICMP for path MTU discovery (fragmentation needed / packet too big)",
        )
    )
    return tuple(rules)


def host_networks(endpoints: dict[str, str]) -> dict[str, IPNetworkT]:
    """Each node's static IP as a host network (/32 or /128), parsed once for the whole mesh.

    Handed the IPs peers dial from: the IPv4 ones, or the IPv6 ones under `endpoints: ipv6`.
    """
    return {name: ipaddress.ip_network(ip) for name, ip in endpoints.items()}


def peer_cidrs(node: NodePlan, hosts: dict[str, IPNetworkT]) -> list[str]:
    """The peers' static IPs as host networks, sorted (by address) so plans do not churn."""
    nets = {hosts[p] for p in node.peer_nodes}
    return [str(n) for n in sorted(nets, key=lambda n: (n.version, n.network_address.packed))]
