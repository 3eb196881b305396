"""Site networks stay put across later `up`s, under mocks whose catalog holds what an `up` made.

Each scenario runs the program once (a first `up`), records the VPCs and subnetworks it created
in the catalog as the clouds would report them (`CloudCatalog.remember_networks`), and runs the
changed stack against that catalog, as the next `pulumi preview`/`up` does. Also: the AWS
instances and Elastic IP associations wait for the region's internet path.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

import pytest
import synthetic_stacks as synthetic
from cloud_catalog import CloudCatalog
from engine_sim import diff
from program_expectations import only_providers
from wgmesh_mocks import Captured, ProgramRun, run_program

from components.config import StackConfigError
from mesh.contracts import label_value
from mesh.networks import SITE_POOLS

STACK = "sites"
LABELS = {"wgmesh-mesh": label_value("wgmesh"), "wgmesh-stack": label_value(STACK)}
MESH: dict[str, Any] = {"cidr": "10.50.0.0/24", "sshPublicKeys": [synthetic.ADMIN]}
VPC, SUBNET, ROUTE = "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/route:Route"
SUBNETWORK, GCP_ROUTE = "gcp:compute/subnetwork:Subnetwork", "gcp:compute/route:Route"
INSTANCE, EIP_ASSOC = "aws:ec2/instance:Instance", "aws:ec2/eipAssociation:EipAssociation"
# What a new network would replace: everything in a region's VPC, and GCP subnetworks and VMs.
NETWORK_TYPES = frozenset(
    {
        VPC,
        SUBNET,
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ec2/routeTableAssociation:RouteTableAssociation",
        INSTANCE,
        SUBNETWORK,
        "gcp:compute/instance:Instance",
    }
)

Node = dict[str, Any]
AWS_ROUTER: Node = {"name": "aws-fra", "cloud": "aws", "region": "eu-central-1", "subnets": ["10.1.0.0/24"]}
AWS_PLAIN: Node = {"name": "aws-fra2", "cloud": "aws", "region": "eu-central-1"}
AWS_SECOND: Node = {**AWS_PLAIN, "subnets": ["10.3.0.0/24"]}
GCP_ROUTER: Node = {"name": "gcp-fra", "cloud": "gcp", "region": "europe-west3", "subnets": ["10.2.0.0/24"]}
GCP_SECOND: Node = {"name": "gcp-fra2", "cloud": "gcp", "region": "europe-west3", "subnets": ["10.4.0.0/24"]}
BEFORE: list[Node] = [AWS_ROUTER, AWS_PLAIN, GCP_ROUTER]


def run(nodes: Sequence[Node], catalog: CloudCatalog | None = None, **mesh: object) -> ProgramRun:
    return run_program(STACK, synthetic.config({**MESH, **mesh}, [dict(n) for n in nodes]), catalog=catalog)


def up(nodes: Sequence[Node]) -> tuple[ProgramRun, CloudCatalog]:
    """A first `up`, and the catalog a later preview reads: the clouds holding its networks."""
    first = run(nodes)
    assert first.error is None, first.error
    return first, CloudCatalog().remember_networks(first.resources, LABELS)


def replacing(before: ProgramRun, after: ProgramRun) -> list[tuple[str, tuple[str, ...]]]:
    """Existing network and VM resources whose change forces a new one (or that disappear)."""
    d = diff(before, after)
    out = [(f"{c.before.type} {c.before.name}", c.replacing) for c in d.changed if c.replacing]
    out += [(f"{r.type} {r.name}", ("deleted",)) for r in d.deleted if r.type in NETWORK_TYPES]
    # A subnetwork's range changes in place only when it grows (ForceNewIfChange: shrinkage).
    for c in d.changed:
        if c.before.type == SUBNETWORK and "ipCidrRange" in c.effective:
            out.append((f"{SUBNETWORK} {c.before.name}", ("ipCidrRange",)))
    return out


def refusal(result: ProgramRun) -> str:
    assert isinstance(result.error, StackConfigError), repr(result.error)
    assert only_providers(result) == []  # nothing but the providers the reads went through
    message = str(result.error)
    assert "\n" not in message
    return message


def cidr(r: ProgramRun, typ: str, name: str) -> str:
    res = r.one(typ, name)
    return str(res.inputs["cidrBlock" if typ == VPC else "ipCidrRange"])


def route_names(r: ProgramRun, typ: str) -> set[str]:
    return {x.name for x in r.of_type(typ)}


# ----------------------------------------------------------------------------- sticky networks


def test_a_second_router_in_a_region_replaces_no_network_and_no_vm(caplog: pytest.LogCaptureFixture) -> None:
    before, clouds = up(BEFORE)
    assert cidr(before, VPC, "aws-eu-central-1-vpc") == "10.1.0.0/24"
    assert cidr(before, SUBNETWORK, "wgmesh-gcp-europe-west3") == "10.2.0.0/24"
    with caplog.at_level(logging.INFO):
        after = run([AWS_ROUTER, AWS_SECOND, GCP_ROUTER, GCP_SECOND], clouds)
    assert after.error is None, after.error
    assert replacing(before, after) == []
    assert cidr(after, VPC, "aws-eu-central-1-vpc") == "10.1.0.0/24"
    assert cidr(after, SUBNETWORK, "wgmesh-gcp-europe-west3") == "10.2.0.0/24"
    # The return routes still go through the routers that own the networks (plus routes to the
    # new subnets, through the same router; no route moves to the second router).
    assert route_names(before, ROUTE) < route_names(after, ROUTE)
    assert not any(n.startswith("aws-fra2-rt-") for n in route_names(after, ROUTE))
    assert set() != route_names(before, GCP_ROUTE) < route_names(after, GCP_ROUTE)
    assert all(n.startswith("gcp-fra-rt-") for n in route_names(after, GCP_ROUTE))
    notes = [r.getMessage() for r in caplog.records if "keeps its network" in r.getMessage()]
    assert any("aws-eu-central-1 keeps its network 10.1.0.0/24 routed behind aws-fra" in n for n in notes)


def test_reordered_nodes_keep_their_networks_and_routers() -> None:
    before, clouds = up([AWS_ROUTER, AWS_SECOND, GCP_ROUTER])  # two routers: a hashed /24
    vpc = cidr(before, VPC, "aws-eu-central-1-vpc")
    assert any(ipaddress_in(vpc, pool) for pool in SITE_POOLS)
    after = run([GCP_ROUTER, AWS_PLAIN, AWS_ROUTER], clouds)  # one router left, order changed
    assert after.error is None, after.error
    assert cidr(after, VPC, "aws-eu-central-1-vpc") == vpc  # today's choice would be 10.1.0.0/24
    assert replacing(before, after) == []


def test_removing_the_router_that_owns_the_vpc_is_refused_naming_what_would_be_replaced() -> None:
    _, clouds = up(BEFORE)
    result = run([AWS_PLAIN, GCP_ROUTER], clouds)
    assert refusal(result) == (
        "wgmesh:nodes: site aws-eu-central-1 runs on 10.1.0.0/24 and no node of the site routes it "
        "any more (its router left or dropped that subnet); route 10.1.0.0/24 from a node of "
        "aws-eu-central-1 to keep it; a new network replaces the VPC, subnet, route table, security "
        "groups and every VM in aws-eu-central-1 (aws-fra2). To accept that, list aws-eu-central-1 "
        "in wgmesh:mesh.replaceNetworks"
    )


def test_moving_the_subnet_to_another_node_of_the_site_keeps_the_vpc() -> None:
    before, clouds = up(BEFORE)
    moved = [{**AWS_ROUTER, "subnets": []}, {**AWS_PLAIN, "subnets": ["10.1.0.0/24"]}, GCP_ROUTER]
    after = run(moved, clouds)
    assert after.error is None, after.error
    assert cidr(after, VPC, "aws-eu-central-1-vpc") == "10.1.0.0/24"
    assert sorted(n for n in route_names(after, ROUTE) if "-rt-" in n) == [
        n.replace("aws-fra-", "aws-fra2-") for n in sorted(route_names(before, ROUTE)) if "-rt-" in n
    ]


def test_replace_networks_lets_the_router_go_and_moves_the_region() -> None:
    before, clouds = up(BEFORE)
    after = run([AWS_PLAIN, GCP_ROUTER], clouds, replaceNetworks=["aws-eu-central-1"])
    assert after.error is None, after.error
    moved = cidr(after, VPC, "aws-eu-central-1-vpc")
    assert moved != "10.1.0.0/24" and ipaddress_in(moved, SITE_POOLS[0])
    assert ("aws:ec2/vpc:Vpc aws-eu-central-1-vpc", ("cidrBlock",)) in replacing(before, after)
    assert cidr(after, SUBNETWORK, "wgmesh-gcp-europe-west3") == "10.2.0.0/24"  # not listed: kept


def test_a_user_subnet_over_a_site_network_is_refused_at_its_key() -> None:
    _, clouds = up([AWS_ROUTER, AWS_SECOND])  # two routers: the VPC gets a hashed /24
    hz = {"name": "hz-nbg", "cloud": "hcloud", "region": "nbg1", "subnets": ["10.200.0.0/16"]}
    message = refusal(run([AWS_ROUTER, AWS_SECOND, hz], clouds))
    assert message.startswith("wgmesh:nodes[2].subnets[0]: site aws-eu-central-1 runs on 10.200.")
    assert "and 10.200.0.0/16 overlaps it; a new network replaces the VPC," in message


def test_a_gcp_router_growing_its_subnet_expands_the_subnetwork_in_place() -> None:
    before, clouds = up([GCP_ROUTER])
    after = run([{**GCP_ROUTER, "subnets": ["10.2.0.0/23"]}], clouds)
    assert after.error is None, after.error
    assert cidr(after, SUBNETWORK, "wgmesh-gcp-europe-west3") == "10.2.0.0/23"
    d = diff(before, after)
    assert [c.replacing for c in d.changed if c.before.type == SUBNETWORK] == [()]


def test_an_aws_router_growing_its_subnet_is_refused() -> None:
    _, clouds = up(BEFORE)
    message = refusal(run([{**AWS_ROUTER, "subnets": ["10.1.0.0/23"]}, AWS_PLAIN, GCP_ROUTER], clouds))
    assert message.startswith(
        "wgmesh:nodes[0].subnets[0]: site aws-eu-central-1 runs on 10.1.0.0/24 and "
        "10.1.0.0/23 now contains it; a new network replaces the VPC,"
    )


def test_the_subnetwork_carries_the_description_preview_finds_it_by() -> None:
    first, clouds = up(BEFORE)
    sub = first.one(SUBNETWORK, "wgmesh-gcp-europe-west3")
    description = "wgmesh site gcp-europe-west3 (wgmesh-mesh=wgmesh, wgmesh-stack=sites)"
    assert sub.inputs["description"] == description
    assert "description" in sub.ignore_changes  # ForceNew upstream: never replace for it
    assert [s["cidr"] for s in clouds.gcp_subnetworks] == ["10.2.0.0/24"]


def ipaddress_in(net: str, pool: ipaddress.IPv4Network) -> bool:
    return ipaddress.IPv4Network(net).subnet_of(pool)


# ----------------------------------------------------------------------------- AWS ordering


def _deps(r: Captured) -> set[str]:
    return {u.rsplit("::", 1)[-1] for u in r.dependencies}


@pytest.mark.parametrize("ipv6", [False, True])
def test_instances_and_eip_associations_wait_for_the_internet_path(ipv6: bool) -> None:
    result = run(BEFORE, None, cidr6="fd50::/64") if ipv6 else run(BEFORE)
    assert result.error is None, result.error
    path = {"aws-eu-central-1-igw", "aws-eu-central-1-default", "aws-eu-central-1-rta"}
    if ipv6:
        path.add("aws-eu-central-1-default6")
    waiting = result.of_type(INSTANCE) + result.of_type(EIP_ASSOC)
    names = ["aws-fra", "aws-fra-eip-assoc", "aws-fra2", "aws-fra2-eip-assoc"]
    assert sorted(r.name for r in waiting) == names
    for r in waiting:
        assert path <= _deps(r), (r.name, sorted(_deps(r)))


def test_preview_reads_each_site_network_once_through_the_sites_provider() -> None:
    result = run(BEFORE)
    assert result.error is None, result.error
    reads = [
        (i.token.rsplit(":", 1)[-1], (i.provider or "::").split("::")[-2], i.args) for i in result.invokes
    ]
    vpcs = [r for r in reads if r[0] in ("getVpcs", "getVpc")]
    assert vpcs == [("getVpcs", "aws-eu-central-1", {"tags": {"Name": "aws-eu-central-1-vpc", **LABELS}})]
    subnetworks = [r for r in reads if r[0] == "getSubnetworks"]
    description = "wgmesh site gcp-europe-west3 (wgmesh-mesh=wgmesh, wgmesh-stack=sites)"
    assert subnetworks == [
        (
            "getSubnetworks",
            "wgmesh-gcp",
            {"region": "europe-west3", "filter": f'description = "{description}"'},
        )
    ]
