"""Nodes placed into networks the stack does not own, under mocks that hold the user's
networks (tests/program/cloud_catalog.py `user_networks`) and refuse unknown ids.

Per cloud: what the stack creates (the node, its address, firewall and routes; never a VPC,
subnet, route table, network or subnetwork), that adding such a node to a running stack
replaces nothing, what `pulumi destroy` (or removing the node) deletes, and the keyed one-line
refusals at preview for ids the cloud does not have.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import synthetic_stacks as synthetic
from cloud_catalog import (
    GCP_PROJECT_LINK,
    HCLOUD_NETWORK_ID,
    OTHER_VPC_SUBNET,
    OTHER_VPC_TABLE,
    USER_ROUTE_TABLES,
    USER_SUBNET,
    USER_VPC,
)
from engine_sim import simulate
from program_expectations import only_providers
from wgmesh_mocks import Captured, ProgramRun, run_program, stack_config

from components.config import StackConfigError

REPO = Path(__file__).resolve().parents[2]
STACK_FILE = REPO / "stacks" / "Pulumi.existing.yaml"
STACK = "existing"
MESH_CIDR = "10.79.0.0/24"
# Each node's routed network, as the stack file says: what the others' networks route back.
ROUTED = {"aws-prod": "172.31.0.0/16", "gcp-prod": "10.10.0.0/20", "hetzner-office": "10.20.0.0/16"}
NETWORK = f"{GCP_PROJECT_LINK}/global/networks/prod-vpc"
SUBNETWORK = f"{GCP_PROJECT_LINK}/regions/europe-west3/subnetworks/prod-fra"
# Types that would stand in place of the user's network: none may be created for these nodes.
NETWORK_TYPES = frozenset(
    {
        "aws:ec2/vpc:Vpc",
        "aws:ec2/subnet:Subnet",
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/routeTableAssociation:RouteTableAssociation",
        "aws:ec2/mainRouteTableAssociation:MainRouteTableAssociation",
        "aws:ec2/internetGateway:InternetGateway",
        "gcp:compute/network:Network",
        "gcp:compute/subnetwork:Subnetwork",
        "hcloud:index/network:Network",
        "hcloud:index/networkSubnet:NetworkSubnet",
    }
)
# What the stack owns for each node in an existing network: all `pulumi destroy` deletes of it.
OWNED: dict[str, set[str]] = {
    "aws-prod": {
        "aws:Instance aws-prod",
        "aws:Eip aws-prod-eip",
        "aws:EipAssociation aws-prod-eip-assoc",
        "aws:SecurityGroup aws-eu-central-1-aws-prod-base",
        "aws:SecurityGroup aws-eu-central-1-aws-prod-wg-mesh",
        *(
            f"aws:Route aws-prod-{t}-{n.replace('.', '-').replace('/', '-')}"
            for t in USER_ROUTE_TABLES
            for n in (MESH_CIDR, ROUTED["gcp-prod"], ROUTED["hetzner-office"])
        ),
        "random:RandomBytes aws-prod-key",
    },
    "gcp-prod": {
        "gcp:Instance gcp-prod",
        "gcp:Address gcp-prod-ip",
        # named by a hash of the node: a 31-character node name would make them too long for GCP
        "gcp:Firewall wgmesh-0b2323-ssh",
        "gcp:Firewall wgmesh-0b2323-icmp",
        "gcp:Firewall wgmesh-0b2323-wg-mesh",
        *(
            f"gcp:Route gcp-prod-rt-{n.replace('.', '-').replace('/', '-')}"
            for n in (MESH_CIDR, ROUTED["aws-prod"], ROUTED["hetzner-office"])
        ),
        "random:RandomBytes gcp-prod-key",
    },
    "hetzner-office": {
        "hcloud:Server hetzner-office",
        "hcloud:PrimaryIp hetzner-office-ip",
        *(
            f"hcloud:NetworkRoute hetzner-office-route-{n.replace('.', '-').replace('/', '-')}"
            for n in (MESH_CIDR, ROUTED["aws-prod"], ROUTED["gcp-prod"])
        ),
        "random:RandomBytes hetzner-office-key",
    },
}


def short(r: Captured) -> str:
    return f"{r.type.split(':', 1)[0]}:{r.type.rsplit(':', 1)[-1]} {r.name}"


def cloud_objects(run: ProgramRun) -> set[str]:
    """Every custom resource but providers: what the state holds and `destroy` deletes."""
    return {short(r) for r in run.resources if r.custom and not r.type.startswith("pulumi:providers:")}


@pytest.fixture(scope="module")
def existing() -> ProgramRun:
    run = run_program(STACK, stack_config(STACK_FILE))
    assert run.error is None, run.error
    return run


def nodes_of_stack_file() -> list[dict[str, Any]]:
    return list(json.loads(stack_config(STACK_FILE)["wgmesh:nodes"]))


def test_no_resource_stands_in_for_the_users_networks(existing: ProgramRun) -> None:
    made = sorted(short(r) for r in existing.resources if r.type in NETWORK_TYPES)
    assert made == []
    # hetzner-edge is the stack's own node: Hetzner needs no network for it either.
    assert existing.one("hcloud:index/server:Server", "hetzner-edge").inputs.get("networks") is None


def test_aws_instance_goes_into_the_users_subnet_and_its_tables_route_the_mesh_to_it(
    existing: ProgramRun,
) -> None:
    instance = existing.one("aws:ec2/instance:Instance", "aws-prod")
    assert instance.inputs["subnetId"] == USER_SUBNET
    assert instance.inputs["sourceDestCheck"] is False  # it forwards for the VPC's hosts
    groups = existing.of_type("aws:ec2/securityGroup:SecurityGroup")
    assert {g.inputs["vpcId"] for g in groups} == {USER_VPC}
    assert sorted(instance.inputs["vpcSecurityGroupIds"]) == sorted(g.id for g in groups)
    eni = instance.outputs["primaryNetworkInterfaceId"]
    routes = existing.of_type("aws:ec2/route:Route")
    assert {(r.inputs["routeTableId"], r.inputs["destinationCidrBlock"]) for r in routes} == {
        (t, n) for t in USER_ROUTE_TABLES for n in (MESH_CIDR, ROUTED["gcp-prod"], ROUTED["hetzner-office"])
    }
    assert {r.inputs["networkInterfaceId"] for r in routes} == {eni}
    assert not any("gatewayId" in r.inputs for r in routes)  # no default route into the user's table


def test_gcp_instance_goes_into_the_users_subnetwork_with_rules_and_routes_on_its_network(
    existing: ProgramRun,
) -> None:
    vm = existing.one("gcp:compute/instance:Instance", "gcp-prod")
    (nic,) = vm.inputs["networkInterfaces"]
    assert nic["subnetwork"] == SUBNETWORK
    assert vm.inputs["canIpForward"] is True  # a route's next hop must be allowed to forward
    firewalls = existing.of_type("gcp:compute/firewall:Firewall")
    assert {f.inputs["network"] for f in firewalls} == {NETWORK}
    assert {t for f in firewalls for t in f.inputs["targetTags"]} <= set(vm.inputs["tags"])
    routes = existing.of_type("gcp:compute/route:Route")
    assert {r.inputs["destRange"] for r in routes} == {
        MESH_CIDR,
        ROUTED["aws-prod"],
        ROUTED["hetzner-office"],
    }
    assert {r.inputs["network"] for r in routes} == {NETWORK}
    assert {r.inputs["nextHopInstance"] for r in routes} == {vm.outputs["selfLink"]}


def test_hetzner_server_attaches_to_the_users_network_and_it_routes_the_mesh_through_it(
    existing: ProgramRun,
) -> None:
    server = existing.one("hcloud:index/server:Server", "hetzner-office")
    assert server.inputs["networks"] == [{"networkId": HCLOUD_NETWORK_ID}]  # attached at creation
    (attached,) = server.outputs["networks"]
    private_ip = ipaddress.IPv4Address(attached["ip"])
    assert private_ip in ipaddress.IPv4Network(ROUTED["hetzner-office"])
    routes = existing.of_type("hcloud:index/networkRoute:NetworkRoute")
    assert {r.inputs["destination"] for r in routes} == {MESH_CIDR, ROUTED["aws-prod"], ROUTED["gcp-prod"]}
    assert {(r.inputs["networkId"], r.inputs["gateway"]) for r in routes} == {
        (HCLOUD_NETWORK_ID, str(private_ip))
    }


def test_destroy_deletes_exactly_what_the_stack_owns_in_the_users_networks(existing: ProgramRun) -> None:
    """The state holds the nodes' own objects and nothing of the user's: that is what destroy deletes."""
    state = cloud_objects(existing)
    owned = set().union(*OWNED.values())
    assert owned <= state
    # The rest is the stack's own Hetzner node and what the mesh shares: nothing of any network.
    assert state - owned == {
        "hcloud:Server hetzner-edge",
        "hcloud:PrimaryIp hetzner-edge-ip",
        "random:RandomBytes hetzner-edge-key",
        "hcloud:SshKey wgmesh-hcloud-ssh",
        "random:RandomBytes wgmesh-hcloud-ssh-seed",
        "hcloud:Firewall wgmesh-hcloud-base",
        "hcloud:Firewall wgmesh-hcloud-wg-mesh",
        "random:RandomBytes wgmesh-psk-root",
    }
    user_ids = {USER_VPC, USER_SUBNET, *USER_ROUTE_TABLES, str(HCLOUD_NETWORK_ID), NETWORK, SUBNETWORK}
    assert not [short(r) for r in existing.resources if r.id in user_ids]


def test_adding_nodes_in_existing_networks_to_a_running_stack_replaces_nothing() -> None:
    """A running stack (its own AWS region and a Hetzner node) gets the three nodes: all they
    bring is created, nothing is replaced or deleted, and the stack's own VPC stays as it is."""
    own_aws = {"name": "aws-own", "cloud": "aws", "region": "eu-central-1"}
    after_nodes = [own_aws, *nodes_of_stack_file()]
    before_nodes = [n for n in after_nodes if n["name"] not in OWNED]
    mesh = json.loads(stack_config(STACK_FILE)["wgmesh:mesh"])
    outcome = simulate(STACK, synthetic.config(mesh, before_nodes), synthetic.config(mesh, after_nodes))
    assert outcome.replaced == frozenset()
    assert outcome.deleted == frozenset()
    assert set().union(*OWNED.values()) <= outcome.created
    assert [short(r) for r in outcome.diff.created if r.type in NETWORK_TYPES] == []
    assert "aws:Vpc aws-eu-central-1-vpc" not in outcome.updated  # the stack's own VPC is untouched


def test_removing_the_nodes_deletes_only_what_they_owned() -> None:
    """Dropping the three nodes from the stack file deletes their objects and nothing else (an
    own AWS node keeps hetzner-edge a peer, so the mesh's shared firewalls stay)."""
    nodes = [{"name": "aws-own", "cloud": "aws", "region": "eu-central-1"}, *nodes_of_stack_file()]
    mesh = json.loads(stack_config(STACK_FILE)["wgmesh:mesh"])
    kept = [n for n in nodes if n["name"] not in OWNED]
    outcome = simulate(STACK, synthetic.config(mesh, nodes), synthetic.config(mesh, kept))
    deleted = {
        short(r) for r in outcome.diff.deleted if r.custom and not r.type.startswith("pulumi:providers:")
    }
    assert deleted == set().union(*OWNED.values()), sorted(deleted)
    assert outcome.replaced == frozenset()


# ----------------------------------------------------------------------------- refused at preview


def refused(**changes: Any) -> str:
    """The one-line refusal of the stack file with node fields changed ({node: {key: value}})."""
    nodes = nodes_of_stack_file()
    for n in nodes:
        n.update(changes.get(n["name"].replace("-", "_"), {}))
    mesh = json.loads(stack_config(STACK_FILE)["wgmesh:mesh"])
    run = run_program(STACK, synthetic.config(mesh, nodes))
    assert isinstance(run.error, StackConfigError), repr(run.error)
    assert only_providers(run) == []  # refused before any resource but the providers
    message = str(run.error)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"aws_prod": {"vpcId": "vpc-0a1b2c3d4e5f6071f"}},
            "wgmesh:nodes[0].vpcId: 'vpc-0a1b2c3d4e5f6071f' was not found in eu-central-1",
        ),
        (
            {
                "aws_prod": {
                    "vpcId": "vpc-0f0e0d0c0b0a09089",
                    "subnetId": OTHER_VPC_SUBNET,
                    "routeTableIds": [],
                }
            },
            "wgmesh:nodes[0].vpcId: vpc-0f0e0d0c0b0a09089 has no internet gateway",
        ),
        (
            {"aws_prod": {"subnetId": OTHER_VPC_SUBNET}},
            f"wgmesh:nodes[0].subnetId: '{OTHER_VPC_SUBNET}' is in vpc-0f0e0d0c0b0a09089, not in vpcId",
        ),
        (
            {"aws_prod": {"routeTableIds": [USER_ROUTE_TABLES[0], OTHER_VPC_TABLE]}},
            f"wgmesh:nodes[0].routeTableIds[1]: '{OTHER_VPC_TABLE}' is a table of vpc-0f0e0d0c0b0a09089",
        ),
        (
            {"aws_prod": {"routeTableIds": ["rtb-0a1b2c3d4e5f6071c"]}},
            "wgmesh:nodes[0].routeTableIds[0]: 'rtb-0a1b2c3d4e5f6071c' was not found in eu-central-1",
        ),
        (
            {"aws_prod": {"size": "c7g.medium"}},  # the fixture's eu-central-1a offers no c7g
            "wgmesh:nodes[0].subnetId: c7g.medium is not offered in eu-central-1a, the zone of subnet-",
        ),
        (
            {"gcp_prod": {"network": "prod-vcp"}},
            "wgmesh:nodes[1].network: 'prod-vcp' was not found",
        ),
        (
            {"gcp_prod": {"subnetwork": "prod-use"}},
            "wgmesh:nodes[1].subnetwork: 'prod-use' was not found in europe-west3",
        ),
        (
            {"hetzner_office": {"network": 4712}},
            "wgmesh:nodes[2].network: '4712' was not found",
        ),
        (
            {"hetzner_office": {"network": "offcie"}},
            "wgmesh:nodes[2].network: 'offcie' was not found",
        ),
        (
            {"hetzner_office": {"subnets": ["10.21.0.0/24"]}},
            "wgmesh:nodes[2].subnets[0]: 10.21.0.0/24 is outside the network's range 10.20.0.0/16",
        ),
        (
            {"gcp_prod": {"subnets": ["172.31.128.0/20"]}, "aws_prod": {"subnets": ["172.30.0.0/16"]}},
            "wgmesh:nodes[0].vpcId: the VPC's range 172.31.0.0/16 overlaps 172.31.128.0/20",
        ),
    ],
)
def test_an_id_the_cloud_does_not_have_is_refused_at_preview_with_one_keyed_line(
    changes: dict[str, dict[str, Any]], expected: str
) -> None:
    assert expected in refused(**changes)


def test_a_gcp_node_with_the_longest_name_gets_rules_gcp_accepts() -> None:
    """The contract mocks refuse a GCP name over 63 characters; the rules on the user's network
    carry a hash of the node, not its name, so the longest node name still fits."""
    nodes = nodes_of_stack_file()
    nodes[1]["name"] = "g" + "x" * 30  # 31 characters, the longest the stack file takes
    mesh = json.loads(stack_config(STACK_FILE)["wgmesh:mesh"])
    run = run_program(STACK, synthetic.config(mesh, nodes, [{"name": "laptop"}]))
    assert run.error is None, run.error
    names = [r.name for r in run.of_type("gcp:compute/firewall:Firewall")]
    assert any("roaming" in n for n in names), names  # the longest rule keys are there too


def test_an_aws_or_gcp_node_in_an_existing_network_with_ipv6_endpoints_is_refused() -> None:
    nodes = nodes_of_stack_file()
    mesh = {**json.loads(stack_config(STACK_FILE)["wgmesh:mesh"]), "cidr6": "fd79:79::/64"}
    run = run_program(STACK, synthetic.config(mesh, nodes))
    assert isinstance(run.error, StackConfigError), repr(run.error)
    assert only_providers(run) == []
    assert [p.key for p in run.error.problems] == ["wgmesh:nodes[0].vpcId", "wgmesh:nodes[1].network"]


def test_a_hetzner_network_by_name_is_the_same_network() -> None:
    nodes = nodes_of_stack_file()
    nodes[2]["network"] = "office"
    mesh = json.loads(stack_config(STACK_FILE)["wgmesh:mesh"])
    run = run_program(STACK, synthetic.config(mesh, nodes))
    assert run.error is None, run.error
    server = run.one("hcloud:index/server:Server", "hetzner-office")
    assert server.inputs["networks"] == [{"networkId": HCLOUD_NETWORK_ID}]
