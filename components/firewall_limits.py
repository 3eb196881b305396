"""The clouds' documented firewall limits, encoded once, and pure checks over resource inputs.

The layout in `components/firewall.py` stays inside these by construction (it splits source
lists into chunks of the per-rule or per-group size) and reports what it cannot split as a
keyed error at preview. The `check_*` functions judge a resource's inputs as the engine sends
them (camelCase keys, secrets unwrapped) and return one message per violation, so a mock can
refuse what the cloud API would refuse.

Sources, read 2026-12:
- AWS, Amazon VPC quotas, "Security groups"
  (https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html#vpc-limits-security-groups):
  60 inbound (and 60 outbound) rules per security group, enforced separately for IPv4 and IPv6
  rules, each CIDR one rule; 5 security groups per network interface (adjustable up to 16);
  rules-per-group x groups-per-interface may not exceed 1,000.
- AWS, in place: terraform-provider-aws `resourceInstanceUpdate` changes `vpc_security_group_ids`
  with ModifyNetworkInterfaceAttribute; a group's inline `ingress` is revoked/authorized in place.
- GCP, VPC firewall rules (https://cloud.google.com/firewall/docs/firewalls,
  https://cloud.google.com/firewall/docs/quotas): a rule holds IPv4 or IPv6 source ranges, not
  both; at most 70 target tags per rule; an instance carries at most 64 network tags. Source
  ranges per rule: the quotas page has said 5,000 (crowdsecurity/cs-cloud-firewall-bouncer#27)
  and users hit 256 (bakaphp/kanvas-ecosystem-api#7933); 256 is what both accept.
- GCP, in place: terraform-provider-google updates an instance's `tags` with Instances.setTags.
- Hetzner, Firewalls overview and FAQ (https://docs.hetzner.com/cloud/firewalls/overview/) and
  the Cloud API "Set Rules" action (https://docs.hetzner.cloud/#firewall-actions-set-rules):
  5 firewalls per server, 50 firewalls per project, 50 rules per firewall and 500 effective
  rules (one rule with many sources counts once per source); `source_ips` holds at most 100
  CIDRs per rule (hcloud API/client docs).
- Hetzner, in place: terraform-provider-hcloud's server Update applies and removes firewalls on
  `d.HasChange("firewall_ids")`; server create applies `firewalls` "on the Server's public network
  interface at creation time" (Cloud API, Create a Server), so a server never boots unfiltered.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

AWS_RULES_PER_GROUP = 60  # per address family, inbound (and separately outbound)
AWS_GROUPS_PER_INTERFACE = 5
AWS_RULES_TIMES_GROUPS = 1000  # what a raised quota pair may reach at most
GCP_SOURCE_RANGES_PER_RULE = 256
GCP_TARGET_TAGS_PER_RULE = 70
GCP_TAGS_PER_INSTANCE = 64
HCLOUD_RULES_PER_FIREWALL = 50
HCLOUD_EFFECTIVE_RULES_PER_FIREWALL = 500
HCLOUD_SOURCES_PER_RULE = 100
HCLOUD_FIREWALLS_PER_SERVER = 5


def _version(cidr: object) -> int | None:
    try:
        return ipaddress.ip_network(str(cidr), strict=False).version
    except ValueError:
        return None


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def aws_rules_per_family(blocks: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """(IPv4 rules, IPv6 rules) of a group's ingress or egress blocks: one rule per CIDR."""
    v4 = sum(len(_list(b.get("cidrBlocks"))) for b in blocks)
    v6 = sum(len(_list(b.get("ipv6CidrBlocks"))) for b in blocks)
    return v4, v6


def check_aws_security_group(inputs: Mapping[str, Any]) -> list[str]:
    """An `aws:ec2/securityGroup:SecurityGroup`: at most 60 rules per direction and family."""
    out = []
    for direction in ("ingress", "egress"):
        blocks = [b for b in _list(inputs.get(direction)) if isinstance(b, Mapping)]
        for family, count in zip(("IPv4", "IPv6"), aws_rules_per_family(blocks), strict=True):
            if count > AWS_RULES_PER_GROUP:
                out.append(
                    f"{direction}: {count} {family} rules in one security group; "
                    f"AWS allows {AWS_RULES_PER_GROUP} by default"
                )
    return out


def check_aws_instance_groups(inputs: Mapping[str, Any]) -> list[str]:
    """An `aws:ec2/instance:Instance`: at most 5 security groups on its network interface."""
    groups = _list(inputs.get("vpcSecurityGroupIds"))
    if len(groups) > AWS_GROUPS_PER_INTERFACE:
        return [
            f"vpcSecurityGroupIds: {len(groups)} security groups; "
            f"AWS allows {AWS_GROUPS_PER_INTERFACE} per network interface by default"
        ]
    return []


def check_gcp_firewall(inputs: Mapping[str, Any]) -> list[str]:
    """A `gcp:compute/firewall:Firewall`: one address family, at most 256 ranges, 70 target tags."""
    out = []
    ranges = _list(inputs.get("sourceRanges"))
    if len(ranges) > GCP_SOURCE_RANGES_PER_RULE:
        out.append(f"sourceRanges: {len(ranges)} ranges; at most {GCP_SOURCE_RANGES_PER_RULE} per rule")
    if len({_version(r) for r in ranges}) > 1:
        out.append("sourceRanges: IPv4 and IPv6 ranges in one rule; GCP takes one family per rule")
    tags = _list(inputs.get("targetTags"))
    if len(tags) > GCP_TARGET_TAGS_PER_RULE:
        out.append(f"targetTags: {len(tags)} tags; at most {GCP_TARGET_TAGS_PER_RULE} per rule")
    return out


def check_gcp_instance_tags(inputs: Mapping[str, Any]) -> list[str]:
    """A `gcp:compute/instance:Instance`: at most 64 network tags."""
    tags = _list(inputs.get("tags"))
    if len(tags) > GCP_TAGS_PER_INSTANCE:
        return [f"tags: {len(tags)} network tags; an instance takes at most {GCP_TAGS_PER_INSTANCE}"]
    return []


def hcloud_effective_rules(rules: Sequence[Mapping[str, Any]]) -> int:
    """Hetzner's count against the 500: every source (and destination) of every rule."""
    return sum(len(_list(r.get("sourceIps"))) + len(_list(r.get("destinationIps"))) for r in rules)


def check_hcloud_firewall(inputs: Mapping[str, Any]) -> list[str]:
    """An `hcloud:index/firewall:Firewall`: 50 rules, 100 sources per rule, 500 effective rules."""
    rules = [r for r in _list(inputs.get("rules")) if isinstance(r, Mapping)]
    out = []
    if len(rules) > HCLOUD_RULES_PER_FIREWALL:
        out.append(f"rules: {len(rules)} rules; at most {HCLOUD_RULES_PER_FIREWALL} per firewall")
    for i, r in enumerate(rules):
        n = len(_list(r.get("sourceIps")))
        if n > HCLOUD_SOURCES_PER_RULE:
            out.append(f"rules[{i}].sourceIps: {n} CIDRs; at most {HCLOUD_SOURCES_PER_RULE} per rule")
    effective = hcloud_effective_rules(rules)
    if effective > HCLOUD_EFFECTIVE_RULES_PER_FIREWALL:
        out.append(
            f"rules: {effective} effective rules; at most {HCLOUD_EFFECTIVE_RULES_PER_FIREWALL} per firewall"
        )
    return out


def check_hcloud_server_firewalls(inputs: Mapping[str, Any]) -> list[str]:
    """An `hcloud:index/server:Server`: at most 5 firewalls applied."""
    ids = _list(inputs.get("firewallIds"))
    if len(ids) > HCLOUD_FIREWALLS_PER_SERVER:
        return [f"firewallIds: {len(ids)} firewalls; a server takes at most {HCLOUD_FIREWALLS_PER_SERVER}"]
    return []


# Resource type -> its checks: what a contract-checking mock runs on each registered resource.
CHECKS = {
    "aws:ec2/securityGroup:SecurityGroup": check_aws_security_group,
    "aws:ec2/instance:Instance": check_aws_instance_groups,
    "gcp:compute/firewall:Firewall": check_gcp_firewall,
    "gcp:compute/instance:Instance": check_gcp_instance_tags,
    "hcloud:index/firewall:Firewall": check_hcloud_firewall,
    "hcloud:index/server:Server": check_hcloud_server_firewalls,
}
