"""The quota planner against hand-counted meshes, each quota's limit, and `wgmesh:quotas` input.

Every expected count below is counted by hand from the stack config (what components/aws.py,
gcp.py and hcloud.py create for it), not computed with the planner's own helpers.
"""

from __future__ import annotations

from typing import Any

import pytest

from components.quota_catalog import (
    ALL_QUOTAS,
    QUOTAS,
    aws_counts_as_standard,
    aws_vcpus,
    gcp_counts_as_cpus,
    gcp_vcpus,
)
from components.quota_config import parse_quotas
from components.quota_plan import DEFAULT, READ, Need, QuotaKey, budget, in_force, over_quota, quota_needs
from mesh.errors import ConfigError
from mesh.plan import build_plan
from mesh.plan_types import MeshPlan
from mesh.spec import parse

ADMIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINmmuPryri6glS1QlhaDJjKjzx04JfygjBfH72YlFlq/ admin@example"


def plan_of(nodes: list[dict[str, Any]], **mesh: Any) -> MeshPlan:
    settings = {"cidr": "10.50.0.0/16", "sshPublicKeys": [ADMIN_KEY], **mesh}
    return build_plan(parse({"mesh": settings, "nodes": nodes}))


def aws(i: int, region: str = "eu-central-1", size: str = "t3.micro") -> dict[str, Any]:
    return {"name": f"a{i}", "cloud": "aws", "region": region, "size": size}


def gcp(i: int, region: str = "europe-west3") -> dict[str, Any]:
    return {"name": f"g{i}", "cloud": "gcp", "region": region, "size": "e2-small"}


def hcloud(i: int) -> dict[str, Any]:
    return {"name": f"h{i}", "cloud": "hcloud", "region": "fsn1", "size": "cax11"}


def counts(plan: MeshPlan) -> dict[QuotaKey, int]:
    return {n.qkey: n.count for n in quota_needs(plan)}


def test_a_small_three_cloud_mesh_counted_by_hand() -> None:
    # 3 AWS nodes in eu-central-1, 1 in us-east-1, 2 GCP, 2 Hetzner: a full mesh of 8, each with
    # 7 peers, SSH from one IPv4 CIDR, no clients (nothing open to the world), IPv4 only.
    nodes = [aws(0), aws(1), aws(2), aws(3, "us-east-1"), gcp(0), gcp(1), hcloud(0), hcloud(1)]
    got = counts(plan_of(nodes, adminCidrs=["203.0.113.0/24"]))
    fra, use = "eu-central-1", "us-east-1"
    assert got == {
        ("aws", fra, "elasticIps"): 3,
        ("aws", fra, "vpcs"): 1,
        ("aws", fra, "internetGateways"): 1,
        ("aws", fra, "securityGroups"): 2,  # shared per region: `base` (SSH, ICMP) and `wg-mesh`
        ("aws", fra, "rulesPerSecurityGroup"): 8,  # wg-mesh: the 8 members' /32s (own address included)
        ("aws", fra, "securityGroupsPerInterface"): 2,
        ("aws", fra, "routesPerRouteTable"): 1,  # 0.0.0.0/0 to the internet gateway
        ("aws", fra, "standardVcpus"): 6,  # 3 x t3.micro, 2 vCPUs each
        ("aws", use, "elasticIps"): 1,
        ("aws", use, "vpcs"): 1,
        ("aws", use, "internetGateways"): 1,
        ("aws", use, "securityGroups"): 2,
        ("aws", use, "rulesPerSecurityGroup"): 8,
        ("aws", use, "securityGroupsPerInterface"): 2,
        ("aws", use, "routesPerRouteTable"): 1,
        ("aws", use, "standardVcpus"): 2,
        ("gcp", None, "networks"): 1,
        ("gcp", None, "subnetworks"): 1,
        ("gcp", None, "firewalls"): 3,  # shared, by target tag: ssh, icmp, wg-mesh
        ("gcp", None, "routes"): 0,  # no node routes a subnet
        ("gcp", "europe-west3", "staticAddresses"): 2,
        ("gcp", "europe-west3", "inUseAddresses"): 2,
        ("gcp", "europe-west3", "cpus"): 4,  # 2 x e2-small
        ("hcloud", None, "servers"): 2,
        ("hcloud", None, "primaryIps"): 2,
        ("hcloud", None, "firewalls"): 2,  # shared: base (ssh, icmp) and wg-mesh
        ("hcloud", None, "rulesPerFirewall"): 2,  # base: ssh, icmp
        ("hcloud", None, "firewallsPerServer"): 2,
        ("hcloud", None, "sshKeys"): 1,
    }


def test_ipv6_roaming_and_a_routed_subnet_add_what_they_create() -> None:
    # cidr6 gives every node a static IPv6 (a second Hetzner primary IP, ICMPv6 rules); a client
    # opens WireGuard to the world on the hub; a1 routes 10.1.0.0/24 (its VPC) and gets return routes.
    nodes = [
        {**aws(0), "hub": True},
        {**aws(1), "subnets": ["10.1.0.0/24"]},
        {**gcp(0), "subnets": ["10.2.0.0/24"]},
        hcloud(0),
    ]
    clients = [{"name": "laptop"}]
    spec = parse(
        {
            "mesh": {
                "cidr": "10.50.0.0/16",
                "cidr6": "fd50::/64",
                "topology": "hub",
                "adminCidrs": ["2001:db8::/32"],
            },
            "nodes": nodes,
            "clients": clients,
        }
    )
    got = counts(build_plan(spec))
    # The hubs' class group `wg-mesh` admits all 4 nodes (IPv4: 4 rules); base-roaming holds
    # 0.0.0.0/0 + ICMP (IPv4: 2) and ::/0, ICMPv6, the admin CIDR (IPv6: 3).
    assert got[("aws", "eu-central-1", "rulesPerSecurityGroup")] == 4
    # a1's VPC is its routed subnet: 0.0.0.0/0 plus return routes to the overlay 10.50.0.0/16 and
    # to what a1 reaches through wg0 (g0's 10.2.0.0/24).
    assert got[("aws", "eu-central-1", "routesPerRouteTable")] == 3
    assert got[("hcloud", None, "primaryIps")] == 2  # IPv4 and IPv6
    # Shared GCP rules: ssh6, icmp, icmp6 and the spokes' wg-hubs; routes: return routes through g0.
    assert got[("gcp", None, "firewalls")] == 4
    assert got[("gcp", None, "routes")] == 2  # 10.50.0.0/16 and a1's 10.1.0.0/24 back through g0
    assert got[("hcloud", None, "firewalls")] == 2  # base and the spokes' wg-hubs
    assert got[("hcloud", None, "rulesPerFirewall")] == 2  # base: ssh (IPv6 admin CIDR), icmp


@pytest.mark.parametrize("quota", [q for q in ALL_QUOTAS if q.default is not None], ids=lambda q: q.key)
def test_each_quota_accepts_its_limit_and_refuses_one_more(quota: Any) -> None:
    region = None if not quota.regional else ("eu-central-1" if quota.cloud == "aws" else "europe-west3")
    limit = in_force(Need(quota, region, 0), {}, {})
    assert (limit.value, limit.origin) == (quota.default, DEFAULT)
    assert over_quota(Need(quota, region, quota.default), limit) is None
    problem = over_quota(Need(quota, region, quota.default + 1), limit)
    assert problem is not None
    text = str(problem)
    assert "\n" not in text
    assert problem.key.startswith(f"wgmesh:quotas.{quota.cloud}.") and problem.key.endswith(f".{quota.key}")
    assert f"'{quota.name}'" in text
    assert f"needs {quota.default + 1}, {quota.default} in force (documented default)" in text
    assert f"declare it as {problem.key}: {quota.default + 1}" in text
    if quota.aws_code is not None:
        assert quota.aws_code[1] in text and "request-service-quota-increase" in text
        assert ("1000 / securityGroupsPerInterface" in text) == (quota.key == "rulesPerSecurityGroup")
    elif quota.cloud == "gcp":
        assert f"--quota-id={quota.gcp_quota_id}" in text
    else:
        assert "hetzner" in text.lower()


def test_a_quota_with_no_published_default_is_printed_never_refused() -> None:
    ssh = QUOTAS[("hcloud", "sshKeys")]
    limit = in_force(Need(ssh, None, 10_000), {}, {})
    assert limit.value is None
    assert over_quota(Need(ssh, None, 10_000), limit) is None
    assert budget([Need(ssh, None, 3)], {}, {}).lines == (
        "quota hcloud account SSH keys: 3 needed / ? in force (no published default) ok",
    )


def test_the_sixth_aws_node_of_a_region_exceeds_the_elastic_ip_default() -> None:
    vcpus: dict[QuotaKey, int] = {("aws", "eu-central-1", "standardVcpus"): 100}
    five = budget(quota_needs(plan_of([aws(i) for i in range(5)])), vcpus, {})
    assert five.problems == ()
    six = budget(quota_needs(plan_of([aws(i) for i in range(6)])), vcpus, {})
    assert [p.key for p in six.problems] == ["wgmesh:quotas.aws.eu-central-1.elasticIps"]
    line = (
        "quota aws eu-central-1 Elastic IP addresses per Region: 6 needed / 5 in force (documented default)"
    )
    assert f"{line} OVER" in six.lines


def test_a_full_mesh_of_60_fits_an_aws_security_group() -> None:
    # Formerly one group per node held 59 peers + SSH + ICMP = 61 rules. Now the class group holds
    # the 60 members' /32s (exactly the default) and SSH and ICMP sit in the base group.
    nodes = [aws(0)] + [hcloud(i) for i in range(59)]
    need = {n.qkey: n for n in quota_needs(plan_of(nodes, adminCidrs=["203.0.113.0/24"]))}
    rules = need[("aws", "eu-central-1", "rulesPerSecurityGroup")]
    assert (rules.count, over_quota(rules, in_force(rules, {}, {}))) == (60, None)
    assert need[("aws", "eu-central-1", "securityGroups")].count == 2
    # One more member spills into a second class group: still 60 at most per group.
    need = {n.qkey: n for n in quota_needs(plan_of([*nodes, hcloud(59)], adminCidrs=["203.0.113.0/24"]))}
    assert need[("aws", "eu-central-1", "rulesPerSecurityGroup")].count == 60
    assert need[("aws", "eu-central-1", "securityGroups")].count == 3


def test_gcp_and_hetzner_firewalls_do_not_grow_per_node() -> None:
    got = counts(
        plan_of([gcp(i) for i in range(34)] + [hcloud(i) for i in range(51)], adminCidrs=["203.0.113.0/24"])
    )
    assert got[("gcp", None, "firewalls")] == 3  # was 34 x 3 = 102 > 100 with per-node firewalls
    assert got[("hcloud", None, "firewalls")] == 2  # was 51 > 50


def test_declared_quotas_override_read_ones_which_override_defaults() -> None:
    need = next(n for n in quota_needs(plan_of([aws(i) for i in range(6)])) if n.quota.key == "elasticIps")
    key = need.qkey
    assert in_force(need, {}, {}).value == 5
    assert in_force(need, {}, {key: 10}).value == 10 and in_force(need, {}, {key: 10}).origin == READ
    declared = in_force(need, {key: 20}, {key: 5})
    assert (declared.value, declared.origin) == (20, "declared in wgmesh:quotas.aws.eu-central-1.elasticIps")
    assert over_quota(need, declared) is None
    assert over_quota(need, in_force(need, {}, {key: 5})) is not None


def test_sizes_of_unknown_vcpus_are_named_not_guessed() -> None:
    need = next(
        n for n in quota_needs(plan_of([aws(0, size="m5.metal"), aws(1)])) if n.quota.key == "standardVcpus"
    )
    assert need.count == 2
    assert need.note == "vCPUs of 1 x m5.metal not known: not counted"
    # Non-standard families (GPU, FPGA) have their own quota: not counted against L-1216C47A.
    need = next(
        n for n in quota_needs(plan_of([aws(0, size="g4dn.xlarge")])) if n.quota.key == "standardVcpus"
    )
    assert (need.count, need.note) == (0, "")


@pytest.mark.parametrize(
    ("size", "vcpus"),
    [("t2.micro", 1), ("t3.micro", 2), ("t4g.nano", 2), ("t3.medium", 2), ("m6g.medium", 1), ("m5.large", 2),
     ("c6i.xlarge", 4), ("m5.2xlarge", 8), ("r6g.16xlarge", 64), ("m5.metal", None), ("t3", None)],
)  # fmt: skip
def test_aws_vcpus(size: str, vcpus: int | None) -> None:
    assert aws_vcpus(size) == vcpus


def test_aws_standard_families() -> None:
    assert all(
        aws_counts_as_standard(t) for t in ("t3.micro", "m7g.large", "c5.xlarge", "r6i.large", "z1d.large")
    )
    assert not any(
        aws_counts_as_standard(t) for t in ("g4dn.xlarge", "p3.2xlarge", "x2idn.16xlarge", "f1.2xlarge")
    )


@pytest.mark.parametrize(
    ("size", "vcpus"),
    [("e2-small", 2), ("e2-micro", 2), ("f1-micro", 1), ("n2-standard-4", 4), ("e2-custom-6-8192", 6),
     ("c4a-highcpu-72", 72), ("weird", None)],
)  # fmt: skip
def test_gcp_vcpus(size: str, vcpus: int | None) -> None:
    assert gcp_vcpus(size) == vcpus


def test_gcp_cpus_quota_series() -> None:
    assert gcp_counts_as_cpus("e2-small") and gcp_counts_as_cpus("n1-standard-1")
    assert not gcp_counts_as_cpus("n2-standard-4") and not gcp_counts_as_cpus("c4a-standard-1")


# ----------------------------------------------------------------------------- wgmesh:quotas


def test_declared_quotas_parse_per_cloud_and_region() -> None:
    raw = {
        "aws": {"eu-central-1": {"elasticIps": 20, "standardVcpus": 64}},
        "gcp": {"firewalls": 500, "regions": {"europe-west3": {"staticAddresses": 20}}},
        "hcloud": {"firewalls": 100, "servers": 0},
    }
    assert parse_quotas(raw) == {
        ("aws", "eu-central-1", "elasticIps"): 20,
        ("aws", "eu-central-1", "standardVcpus"): 64,
        ("gcp", None, "firewalls"): 500,
        ("gcp", "europe-west3", "staticAddresses"): 20,
        ("hcloud", None, "firewalls"): 100,
        ("hcloud", None, "servers"): 0,
    }
    assert parse_quotas(None) == {}


BAD_QUOTAS: list[tuple[object, str]] = [
    ([1], ": must be a mapping, got list"),
    ({"azure": {}}, ".azure: unknown cloud (known: aws, gcp, hcloud)"),
    (
        {"aws": {"eu-central-1": {"elasticIp": 20}}},
        ".aws.eu-central-1.elasticIp: unknown quota (did you mean 'elasticIps'?)",
    ),
    (
        {"aws": {"frankfurt": {"elasticIps": 20}}},
        ".aws.frankfurt: is not an AWS region name (like eu-central-1)",
    ),
    ({"aws": {"eu-central-1": 20}}, ".aws.eu-central-1: must be a mapping, got int"),
    (
        {"gcp": {"staticAddresses": 20}},
        ".gcp.staticAddresses: is a per-region quota: declare it as "
        "wgmesh:quotas.gcp.regions.<region>.staticAddresses",
    ),
    (
        {"gcp": {"regions": {"Europe": {"cpus": 8}}}},
        ".gcp.regions.Europe: is not a GCP region name (like europe-west3)",
    ),
    ({"hcloud": {"firewalls": "100"}}, ".hcloud.firewalls: must be a whole number, got '100'"),
    ({"hcloud": {"firewalls": True}}, ".hcloud.firewalls: must be a whole number, got True"),
    ({"hcloud": {"firewalls": 2.5}}, ".hcloud.firewalls: must be a whole number, got 2.5"),
    ({"hcloud": {"servers": -1}}, ".hcloud.servers: -1 is out of range 0..10000000"),
]


@pytest.mark.parametrize(("raw", "line"), BAD_QUOTAS)
def test_bad_declared_quotas_are_keyed_one_line_each(raw: object, line: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_quotas(raw)
    assert str(e.value) == f"wgmesh:quotas{line}"


def test_every_bad_declared_quota_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as e:
        parse_quotas({"hcloud": {"servers": -1, "firewall": 3}, "gcp": {"routes": "x"}})
    assert [p.key for p in e.value.problems] == [
        "wgmesh:quotas.hcloud.servers",
        "wgmesh:quotas.hcloud.firewall",
        "wgmesh:quotas.gcp.routes",
    ]
