"""Node names the spec's pattern allows but a cloud would refuse: one keyed line at parse time,
before any resource, instead of a failure half-way through `pulumi up`."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.errors import ConfigError
from mesh.spec import parse

REGION = {"aws": "eu-central-1", "gcp": "europe-west3", "hcloud": "nbg1"}


def config(name: str, cloud: str) -> dict[str, Any]:
    return {
        "mesh": {"cidr": "10.77.0.0/24"},
        "nodes": [
            {"name": "peer", "cloud": "lab", "publicIp": "198.51.100.1"},
            {"name": name, "cloud": cloud, "region": REGION[cloud]},
        ],
    }


@pytest.mark.parametrize(
    ("name", "cloud", "rule"),
    [
        ("sg-db", "aws", "AWS security group name 'sg-db-sg-xxxxxxx' must not start with 'sg-'"),
        ("sg", "aws", "AWS security group name 'sg-sg-xxxxxxx' must not start with 'sg-'"),
        ("edge-", "gcp", "GCP network tag 'wgmesh-edge-' must match [a-z]([-a-z0-9]*[a-z0-9])?"),
        ("edge-", "hcloud", "Hetzner label value 'edge-' must match"),
    ],
)
def test_a_name_a_cloud_refuses_is_one_keyed_line(name: str, cloud: str, rule: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(config(name, cloud))
    (problem,) = info.value.problems
    assert problem.key == "wgmesh:nodes[1].name"
    assert problem.message.startswith(f"{name!r} cannot be used on {cloud}: {rule}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "cloud"), [("edge-", "aws"), ("sg-db", "gcp"), ("sg-db", "hcloud"), ("n" * 31, "gcp")]
)
def test_names_no_cloud_rule_reaches_are_accepted(name: str, cloud: str) -> None:
    spec = parse(config(name, cloud))
    assert spec.nodes[1].name == name


def test_every_bad_name_is_reported_at_once() -> None:
    cfg = config("sg-a", "aws")
    cfg["nodes"].append({"name": "b-", "cloud": "gcp", "region": "europe-west3"})
    with pytest.raises(ConfigError) as info:
        parse(cfg)
    assert [p.key for p in info.value.problems] == ["wgmesh:nodes[1].name", "wgmesh:nodes[2].name"]


def admin_cidrs(n: int) -> list[str]:
    return [f"198.51.{i}.0/24" for i in range(n)]


def test_a_hetzner_node_caps_admin_cidrs_at_one_firewall_rule() -> None:
    cfg = config("hz", "hcloud")
    cfg["mesh"]["adminCidrs"] = admin_cidrs(100)
    assert len(parse(cfg).mesh.admin_cidrs) == 100
    cfg["mesh"]["adminCidrs"] = admin_cidrs(101)
    with pytest.raises(ConfigError) as info:
        parse(cfg)
    (problem,) = info.value.problems
    assert str(problem) == (
        "wgmesh:mesh.adminCidrs: 101 CIDR blocks in one Hetzner firewall rule, over the limit of 100"
        " (the SSH rule of the Hetzner nodes)"
    )


def test_without_hetzner_nodes_that_cap_does_not_apply() -> None:
    cfg = config("gcp-a", "gcp")
    cfg["mesh"]["adminCidrs"] = admin_cidrs(101)
    assert len(parse(cfg).mesh.admin_cidrs) == 101
