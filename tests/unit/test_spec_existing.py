"""Stack-file rules of existing cloud networks (mesh/existing.py): keyed, at parse time."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.errors import ConfigError
from mesh.site_networks import site_groups
from mesh.spec import parse

VPC, SUBNET, RTB = "vpc-0a1b2c3d4e5f60718", "subnet-0a1b2c3d4e5f60719", "rtb-0a1b2c3d4e5f6071a"
AWS: dict[str, Any] = {"name": "aws-prod", "cloud": "aws", "region": "eu-central-1"}
GCP: dict[str, Any] = {"name": "gcp-prod", "cloud": "gcp", "region": "europe-west3"}
HCLOUD: dict[str, Any] = {"name": "office", "cloud": "hcloud", "region": "nbg1"}


def problems(node: dict[str, Any]) -> list[str]:
    try:
        parse({"mesh": {"cidr": "10.77.0.0/24"}, "nodes": [node]})
    except ConfigError as e:
        return [f"{p.key}: {p.message}" for p in e.problems]
    return []


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (
            {**AWS, "subnetId": SUBNET},
            "wgmesh:nodes[0].subnetId: needs vpcId: the VPC this subnet belongs to",
        ),
        ({**AWS, "vpcId": VPC}, "wgmesh:nodes[0].vpcId: needs subnetId"),
        ({**AWS, "vpcId": "vpc-12", "subnetId": SUBNET}, "wgmesh:nodes[0].vpcId: 'vpc-12' is not a vpc id"),
        (
            {**AWS, "vpcId": VPC, "subnetId": SUBNET, "routeTableIds": [RTB]},
            "wgmesh:nodes[0].routeTableIds: needs subnets",
        ),
        (
            {
                **AWS,
                "vpcId": VPC,
                "subnetId": SUBNET,
                "routeTableIds": [RTB, RTB],
                "subnets": ["172.31.0.0/16"],
            },
            f"wgmesh:nodes[0].routeTableIds[1]: '{RTB}' is listed twice",
        ),
        (
            {**AWS, "routeTableIds": [RTB], "subnets": ["172.31.0.0/16"]},
            "wgmesh:nodes[0].routeTableIds: needs vpcId",
        ),
        ({**GCP, "vpcId": VPC}, "wgmesh:nodes[0].vpcId: only AWS nodes take vpcId"),
        ({**GCP, "network": "prod"}, "wgmesh:nodes[0].network: needs subnetwork"),
        ({**GCP, "subnetwork": "prod-fra"}, "wgmesh:nodes[0].subnetwork: needs network"),
        (
            {**GCP, "network": "prod", "subnetwork": "projects/my-project/regions/us-east1/subnetworks/prod"},
            "wgmesh:nodes[0].subnetwork: is in region us-east1, the node in europe-west3",
        ),
        (
            {**GCP, "network": "Prod_Net", "subnetwork": "x"},
            "wgmesh:nodes[0].network: 'Prod_Net' is not a GCP",
        ),
        ({**HCLOUD, "network": 4711}, "wgmesh:nodes[0].network: needs subnets"),
        ({**HCLOUD, "network": "x", "subnetwork": "y", "subnets": ["10.0.0.0/16"]}, "subnetwork: only GCP"),
        ({**AWS, "network": "prod"}, "wgmesh:nodes[0].network: only GCP and Hetzner nodes take it"),
    ],
)
def test_an_existing_network_key_that_cannot_work_is_one_keyed_problem(
    node: dict[str, Any], expected: str
) -> None:
    found = problems(node)
    assert any(p.startswith(expected) or expected in p for p in found), found


@pytest.mark.parametrize(
    "node",
    [
        {**AWS, "vpcId": VPC, "subnetId": SUBNET},
        {**AWS, "vpcId": VPC, "subnetId": SUBNET, "routeTableIds": [RTB], "subnets": ["172.31.0.0/16"]},
        {**GCP, "network": "prod", "subnetwork": "prod-fra"},
        {
            **GCP,
            "network": "https://www.googleapis.com/compute/v1/projects/my-project/global/networks/prod",
            "subnetwork": "projects/my-project/regions/europe-west3/subnetworks/prod-fra",
        },
        {**HCLOUD, "network": 4711, "subnets": ["10.20.0.0/16"]},
        {**HCLOUD, "network": "office", "subnets": ["10.20.0.0/16"]},
    ],
)
def test_a_complete_existing_network_parses(node: dict[str, Any]) -> None:
    assert problems(node) == []


def test_an_existing_network_node_forms_no_site_of_the_stack() -> None:
    spec = parse(
        {
            "mesh": {"cidr": "10.77.0.0/24"},
            "nodes": [{**AWS, "vpcId": VPC, "subnetId": SUBNET}, {**GCP, "name": "gcp-own"}],
        }
    )
    assert list(site_groups(spec.nodes)) == ["gcp-europe-west3"]
    assert spec.nodes[0].existing_network and not spec.nodes[1].existing_network
