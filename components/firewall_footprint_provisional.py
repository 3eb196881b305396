"""PROVISIONAL: how many firewall objects and rules today's layout creates, for the quota planner.

The firewall layout is being redesigned (components/firewall.py will provide `FirewallFootprint`
and `firewall_footprint` with exactly this interface). Until then this module counts what
components/aws.py, gcp.py and hcloud.py create today: one security group per AWS node with one
rule per peer CIDR, one GCP firewall per ingress rule and address family per node, one Hetzner
firewall per server. At merge, components/quota_plan.py imports from components.firewall
instead and this module goes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from components.firewall import ingress_rules
from mesh.plan_types import MeshPlan, NodePlan


@dataclass(frozen=True)
class FirewallFootprint:
    aws_groups: dict[str, int]  # AWS region -> security groups created in its VPC
    # AWS region -> most inbound rules of one address family in any one group
    aws_rules_per_group: dict[str, int]
    aws_groups_per_interface: dict[str, int]  # AWS region -> most security groups attached to one instance
    gcp_firewalls: int  # GCP firewall rules in the project (all regions)
    hcloud_firewalls: int  # Hetzner firewalls in the project
    hcloud_rules_per_firewall: int  # most rules in one Hetzner firewall
    hcloud_firewalls_per_server: int  # most firewalls applied to one server


def firewall_footprint(plan: MeshPlan) -> FirewallFootprint:
    mesh = plan.spec.mesh
    aws_groups: Counter[str] = Counter()
    aws_rules: dict[str, int] = {}
    gcp_firewalls = hcloud_firewalls = hcloud_rules = 0
    for node in plan.nodes:
        region = plan.spec.node(node.name).region
        rules = ingress_rules(node, mesh)
        if node.cloud == "aws":
            aws_groups[region] += 1
            aws_rules[region] = max(aws_rules.get(region, 0), *_aws_rules_per_family(node, plan))
        elif node.cloud == "gcp":
            gcp_firewalls += _gcp_firewalls(node, plan)
        elif node.cloud == "hcloud":
            hcloud_firewalls += 1
            hcloud_rules = max(hcloud_rules, len(rules))
    return FirewallFootprint(
        aws_groups=dict(aws_groups),
        aws_rules_per_group=aws_rules,
        aws_groups_per_interface={region: 1 for region in aws_groups},
        gcp_firewalls=gcp_firewalls,
        hcloud_firewalls=hcloud_firewalls,
        hcloud_rules_per_firewall=hcloud_rules,
        hcloud_firewalls_per_server=1 if hcloud_firewalls else 0,
    )


def _aws_rules_per_family(node: NodePlan, plan: MeshPlan) -> tuple[int, int]:
    """(IPv4, IPv6) inbound rules of the node's group: AWS counts one rule per source CIDR."""
    mesh = plan.spec.mesh
    v4 = v6 = 0
    for rule in ingress_rules(node, mesh):
        if rule.from_peers:
            peers = len(node.peer_nodes)
            v4, v6 = (v4, v6 + peers) if mesh.endpoints == "ipv6" else (v4 + peers, v6)
        elif rule.protocol == "icmp":
            v4 += len(rule.ipv4_sources)
            v6 += len(rule.ipv6_sources) if mesh.public_ipv6 else 0  # ICMPv6 on dual-stack VPCs only
        else:
            v4 += len(rule.ipv4_sources)
            v6 += len(rule.ipv6_sources)
    return v4, v6


def _gcp_firewalls(node: NodePlan, plan: MeshPlan) -> int:
    """One firewall per rule and address family (components/gcp.py `_firewalls`)."""
    mesh = plan.spec.mesh
    count = 0
    for rule in ingress_rules(node, mesh):
        if rule.from_peers:
            count += 1
            continue
        count += 1 if rule.ipv4_sources else 0
        if rule.ipv6_sources and (rule.protocol != "icmp" or mesh.public_ipv6):
            count += 1
    return count
