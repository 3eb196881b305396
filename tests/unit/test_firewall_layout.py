"""The firewall layout as data: classes, per-cloud objects, the footprint and the limit checks.

Pure: plans are built from literal configs, no Pulumi. tests/program/test_program_firewalls.py
checks the same layout against what the program registers.
"""

from __future__ import annotations

from typing import Any

import pytest

from components.firewall import (
    GCP_NODE_TAG,
    aws_firewalls,
    firewall_footprint,
    firewall_layout,
    firewall_problems,
    gcp_firewalls,
    hcloud_firewalls,
)
from components.firewall_limits import (
    check_aws_instance_groups,
    check_aws_security_group,
    check_gcp_firewall,
    check_gcp_instance_tags,
    check_hcloud_firewall,
    check_hcloud_server_firewalls,
)
from mesh.plan import build_plan
from mesh.plan_types import MeshPlan
from mesh.spec import parse

CLOUDS = ("aws", "gcp", "hcloud")
REGION = {"aws": "eu-central-1", "gcp": "europe-west3", "hcloud": "nbg1"}


def mesh_plan(n: int, *, hubs: int = 0, clients: int = 0, **mesh: Any) -> MeshPlan:
    """n nodes round-robin over the three clouds (one region each); the first `hubs` are hubs."""
    nodes = [
        {
            "name": f"n{i}",
            "cloud": CLOUDS[i % 3],
            "region": REGION[CLOUDS[i % 3]],
            "address": f"10.96.{i // 250}.{i % 250 + 1}",
            **({"hub": True} if i < hubs else {}),
        }
        for i in range(n)
    ]
    settings: dict[str, Any] = {"cidr": "10.96.0.0/16", "adminCidrs": ["203.0.113.0/24"], **mesh}
    if hubs:
        settings["topology"] = "hub"
    members = [{"name": f"c{j}", "address": f"10.96.255.{j + 1}"} for j in range(clients)]
    return build_plan(parse({"mesh": settings, "nodes": nodes, "clients": members or None}))


def test_a_full_mesh_is_one_class_of_every_node() -> None:
    plan = mesh_plan(7)
    layout = firewall_layout(plan)
    ((c,),) = [layout.classes]
    assert (c.name, c.sources, c.members) == ("mesh", tuple(f"n{i}" for i in range(7)), c.sources)


def test_a_hub_topology_is_two_classes() -> None:
    plan = mesh_plan(9, hubs=2)
    layout = firewall_layout(plan)
    classes = {c.name: c for c in layout.classes}
    assert set(classes) == {"mesh", "hubs"}
    assert classes["mesh"].members == ("n0", "n1")
    assert classes["hubs"].sources == ("n0", "n1")
    assert classes["hubs"].members == tuple(f"n{i}" for i in range(2, 9))


@pytest.mark.parametrize("hubs", [0, 2])
def test_adding_or_removing_an_ordinary_node_moves_no_other_node(hubs: int) -> None:
    before = firewall_layout(mesh_plan(9, hubs=hubs)).node_class
    for n in (8, 10):
        after = firewall_layout(mesh_plan(n, hubs=hubs)).node_class
        common = set(before) & set(after)
        assert {k: after[k] for k in common} == {k: before[k] for k in common}


def test_roaming_nodes_are_the_ones_clients_dial() -> None:
    assert firewall_layout(mesh_plan(4, hubs=1, clients=1)).roaming == {"n0"}
    assert firewall_layout(mesh_plan(4)).roaming == frozenset()


def test_aws_spreads_the_peers_over_groups_of_sixty() -> None:
    plan = mesh_plan(150, clients=1)
    cloud = aws_firewalls(plan, "eu-central-1")
    keys = [f.key for f in cloud.firewalls]
    assert keys == ["base-roaming", "wg-mesh", "wg-mesh-2", "wg-mesh-3"]
    pieces = [f.rules[0].peers for f in cloud.firewalls[1:]]
    assert [len(p) for p in pieces] == [60, 60, 30]
    assert sum(pieces, ()) == tuple(f"n{i}" for i in range(150))
    assert set(cloud.attached.values()) == {tuple(keys)}


def test_gcp_and_hetzner_object_counts_do_not_grow_with_the_mesh() -> None:
    small, big = firewall_footprint(mesh_plan(12)), firewall_footprint(mesh_plan(150))
    assert (
        (small.gcp_firewalls, small.hcloud_firewalls) == (big.gcp_firewalls, big.hcloud_firewalls) == (3, 2)
    )
    assert big.hcloud_rules_per_firewall == 2  # 150 peers in rules of at most 100 sources
    assert big.aws_rules_per_group == {"eu-central-1": 60}
    assert big.aws_groups_per_interface == {"eu-central-1": 4}


def test_gcp_targets_tags_and_splits_families() -> None:
    plan = mesh_plan(6, hubs=2, clients=1, adminCidrs=["203.0.113.0/24", "2001:db8::/48"])
    cloud = gcp_firewalls(plan)
    by_key = {f.key: f for f in cloud.firewalls}
    assert set(by_key) == {"ssh", "ssh6", "icmp", "wg-mesh", "wg-hubs", "wg-roaming", "wg-roaming6"}
    assert by_key["ssh6"].rules[0].sources == ("2001:db8::/48",)
    assert by_key["wg-roaming"].roaming and by_key["wg-roaming"].description.endswith("[wgmesh-roaming]")
    # n1 is a GCP hub (clients dial it), n4 a GCP spoke.
    assert cloud.attached["n1"] == (GCP_NODE_TAG, "wgmesh-wg-mesh", "wgmesh-wg-roaming")
    assert cloud.attached["n4"] == (GCP_NODE_TAG, "wgmesh-wg-hubs")


def test_hetzner_firewalls_per_server() -> None:
    cloud = hcloud_firewalls(mesh_plan(6, hubs=3, clients=1))  # n2 a Hetzner hub, n5 a spoke
    assert [f.key for f in cloud.firewalls] == ["base", "wg-mesh", "wg-hubs", "wg-roaming"]
    assert cloud.attached == {"n2": ("base", "wg-mesh", "wg-roaming"), "n5": ("base", "wg-hubs")}


def test_too_many_peers_for_five_aws_groups_is_a_keyed_problem() -> None:
    problems = firewall_problems(mesh_plan(241))
    assert [p.key for p in problems] == ["wgmesh:nodes[0]"]
    assert "241 nodes: 6 AWS security groups" in problems[0].message
    assert firewall_problems(mesh_plan(240)) == []


def test_too_many_admin_cidrs_are_a_keyed_problem() -> None:
    admins = [f"198.51.100.{i}/32" for i in range(59)]
    assert firewall_problems(mesh_plan(3, adminCidrs=admins)) == []
    problems = firewall_problems(mesh_plan(3, adminCidrs=[*admins, "198.51.100.200/32"]))
    assert [p.key for p in problems] == ["wgmesh:mesh.adminCidrs"]


def test_too_many_admin_cidrs_for_a_hetzner_firewall_are_a_keyed_problem() -> None:
    admins = [f"10.{i // 250}.{i % 250}.0/24" for i in range(499)]
    plan = mesh_plan(3, adminCidrs=admins)  # AWS n0 fails too (60 per group): look at Hetzner's
    keys = [(p.key, "Hetzner" in p.message) for p in firewall_problems(plan)]
    assert ("wgmesh:mesh.adminCidrs", True) in keys


# ----------------------------------------------------------------------------- limit checks


def cidrs(n: int, v6: bool = False) -> list[str]:
    return [f"2001:db8::{i:x}/128" if v6 else f"10.0.{i // 250}.{i % 250}/32" for i in range(n)]


def test_aws_group_rules_per_family() -> None:
    assert (
        check_aws_security_group({"ingress": [{"cidrBlocks": cidrs(60), "ipv6CidrBlocks": cidrs(60, True)}]})
        == []
    )
    assert check_aws_security_group({"ingress": [{"cidrBlocks": cidrs(30)}, {"cidrBlocks": cidrs(31)}]})
    assert check_aws_security_group({"egress": [{"ipv6CidrBlocks": cidrs(61, True)}]})


def test_aws_groups_per_instance() -> None:
    assert check_aws_instance_groups({"vpcSecurityGroupIds": ["sg"] * 5}) == []
    assert check_aws_instance_groups({"vpcSecurityGroupIds": ["sg"] * 6})


def test_gcp_firewall_ranges_families_and_tags() -> None:
    assert check_gcp_firewall({"sourceRanges": cidrs(256), "targetTags": ["t"] * 70}) == []
    assert check_gcp_firewall({"sourceRanges": cidrs(257)})
    assert check_gcp_firewall({"sourceRanges": ["0.0.0.0/0", "::/0"]})
    assert check_gcp_firewall({"targetTags": ["t"] * 71})


def test_gcp_instance_tags() -> None:
    assert check_gcp_instance_tags({"tags": ["t"] * 64}) == []
    assert check_gcp_instance_tags({"tags": ["t"] * 65})


def test_hetzner_firewall_rules_sources_and_effective_rules() -> None:
    ok = {"rules": [{"sourceIps": cidrs(100)} for _ in range(5)]}
    assert check_hcloud_firewall(ok) == []
    assert check_hcloud_firewall({"rules": [{"sourceIps": cidrs(101)}]})
    assert check_hcloud_firewall({"rules": [{"sourceIps": cidrs(1)} for _ in range(51)]})
    assert check_hcloud_firewall(
        {"rules": [{"sourceIps": cidrs(100)} for _ in range(5)] + [{"sourceIps": ["::/0"]}]}
    )


def test_hetzner_firewalls_per_server_check() -> None:
    assert check_hcloud_server_firewalls({"firewallIds": [1, 2, 3, 4, 5]}) == []
    assert check_hcloud_server_firewalls({"firewallIds": [1, 2, 3, 4, 5, 6]})
