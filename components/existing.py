"""Existing cloud networks, read at preview: a typo in `vpcId`, `subnetId`, `routeTableIds`,
`network` or `subnetwork` fails `pulumi preview` with one keyed line, before any resource.

Blocking invokes (as components/catalog.py): a refusal must come before anything is registered.
What they return (ids, self links, ranges) is what the components build on; the stack never
creates a VPC, subnet, route table, network or subnetwork for these nodes, only the node, its
address, its firewall and the routes it adds (mesh/existing.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_hcloud as hcloud

from components.config import StackConfigError
from components.netplan import SitePlan, return_routes
from components.providers import Providers
from mesh.errors import Problem
from mesh.existing import GCP_NETWORK_RE, GCP_SUBNETWORK_RE
from mesh.plan_types import MeshPlan
from mesh.spec import NodeSpec

# Hetzner network routes: "destination ... Must be one of private IPv4 ranges of RFC1918 or
# 0.0.0.0/0. Must not overlap with an existing ip_range in any subnets or with any destinations
# in other routes"; "gateway ... Cannot be the first IP of the networks ip_range" (Cloud API
# reference, networks add_route; as generated in the hcloud crate's models/route.rs).
RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


@dataclass(frozen=True)
class AwsExisting:
    """The user's VPC and subnet a node goes into, and the tables that route the mesh to it."""

    vpc_id: str
    subnet_id: str
    route_table_ids: tuple[str, ...]
    cidr: ipaddress.IPv4Network  # the VPC's primary block
    availability_zone: str  # the subnet's: the instance runs there


@dataclass(frozen=True)
class GcpExisting:
    network: str  # self link
    subnetwork: str  # self link
    cidr: ipaddress.IPv4Network  # the subnetwork's primary range


@dataclass(frozen=True)
class HcloudExisting:
    network_id: int
    ip_range: ipaddress.IPv4Network


Existing = AwsExisting | GcpExisting | HcloudExisting


def existing_site(plan: MeshPlan, node: NodeSpec) -> SitePlan:
    """A node's own site in a network the user owns: it routes the mesh back (its return routes)."""
    cidr = ipaddress.IPv4Network("0.0.0.0/32")  # not ours to choose: never sent to a cloud
    # Only a node that routes `subnets` takes the mesh back for them: a reply from the network's
    # hosts has their source address, which peers accept only inside the node's AllowedIPs.
    if not node.subnets:
        return SitePlan(f"{node.cloud}-{node.name}", cidr, None, ())
    return SitePlan(f"{node.cloud}-{node.name}", cidr, node.name, return_routes(plan, node.name))


def read_existing_networks(plan: MeshPlan, providers: Providers) -> dict[str, Existing]:
    """Each existing-network node's network as the cloud reports it; StackConfigError (every
    problem, each keyed on the node's key) when an id is unknown or does not fit."""
    out: dict[str, Existing] = {}
    problems: list[Problem] = []
    for n in plan.spec.nodes:
        if not n.existing_network:
            continue
        routes = return_routes(plan, n.name)
        if plan.spec.mesh.public_ipv6 and n.cloud in ("aws", "gcp"):
            # Its static IPv6 comes from the subnet's block, which a network we do not own may lack.
            key = f"{n.key}.{'vpcId' if n.cloud == 'aws' else 'network'}"
            problems.append(
                Problem(key, "an existing network takes no IPv6 endpoints yet (cidr6, endpoints: ipv6)")
            )
            continue
        found: Existing | None
        if n.cloud == "aws":
            found = _aws(n, providers, routes, problems)
        elif n.cloud == "gcp":
            found = _gcp(n, providers, routes, problems)
        else:
            found = _hcloud(n, routes, problems)
        if found is not None:
            out[n.name] = found
    if problems:
        raise StackConfigError(problems)
    for name, net in out.items():
        pulumi.log.info(
            f"wgmesh existing network: {name} goes into {_describe(net)} (not managed by this stack)"
        )
    return out


def _describe(net: Existing) -> str:
    if isinstance(net, AwsExisting):
        return f"{net.vpc_id} ({net.cidr}), {net.subnet_id} in {net.availability_zone}"
    if isinstance(net, GcpExisting):
        return f"{net.subnetwork} ({net.cidr})"
    return f"Hetzner network {net.network_id} ({net.ip_range})"


def _refused(e: Exception) -> str:
    """The first line of a provider's refusal, short enough for one keyed line."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) < 120 else text[:117] + "..."


def _overlap(
    key: str, what: str, cidr: ipaddress.IPv4Network, routes: tuple[ipaddress.IPv4Network, ...]
) -> list[Problem]:
    """A mesh network routed into the user's network must not overlap that network's own range."""
    return [
        Problem(key, f"{what} {cidr} overlaps {net}, which the node routes into the mesh")
        for net in routes
        if net.overlaps(cidr)
    ]


def _aws(
    n: NodeSpec, providers: Providers, routes: tuple[ipaddress.IPv4Network, ...], problems: list[Problem]
) -> AwsExisting | None:
    opts = pulumi.InvokeOptions(provider=providers.aws(n.region))
    try:
        vpc = aws.ec2.get_vpc(id=n.vpc_id, opts=opts)
    except Exception as e:  # the provider's "no matching EC2 VPC found", as an invoke error
        problems.append(Problem(f"{n.key}.vpcId", f"{n.vpc_id!r} was not found in {n.region}: {_refused(e)}"))
        return None
    try:
        subnet = aws.ec2.get_subnet(id=n.subnet_id, opts=opts)
    except Exception as e:
        problems.append(
            Problem(f"{n.key}.subnetId", f"{n.subnet_id!r} was not found in {n.region}: {_refused(e)}")
        )
        return None
    if subnet.vpc_id != n.vpc_id:
        problems.append(
            Problem(f"{n.key}.subnetId", f"{n.subnet_id!r} is in {subnet.vpc_id}, not in vpcId {n.vpc_id}")
        )
    cidr = ipaddress.IPv4Network(vpc.cidr_block)
    problems += _overlap(f"{n.key}.vpcId", "the VPC's range", cidr, routes)
    # The node's Elastic IP: "EIP may require IGW to exist prior to association" (pulumi-aws Eip
    # docs); AssociateAddress in a VPC without one fails with Gateway.NotAttached (EC2 API errors).
    try:
        aws.ec2.get_internet_gateway(filters=[{"name": "attachment.vpc-id", "values": [n.vpc_id]}], opts=opts)
    except Exception:
        why = f"{n.vpc_id} has no internet gateway: the node's Elastic IP (what peers dial) needs one"
        problems.append(Problem(f"{n.key}.vpcId", why))
    # The instance runs in the subnet's AZ, which may not offer its type (RunInstances:
    # "Unsupported: Your requested instance type ... is not supported in your requested
    # Availability Zone"): asked as components/catalog.py asks for the stack's own subnets.
    offered = aws.ec2.get_instance_type_offerings(
        location_type="availability-zone",
        filters=[{"name": "instance-type", "values": [n.size]}],
        opts=opts,
    )
    zones = {
        z for t, z in zip(offered.instance_types or [], offered.locations or [], strict=True) if t == n.size
    }
    if subnet.availability_zone not in zones:
        why = f"{n.size} is not offered in {subnet.availability_zone}, the zone of {n.subnet_id}"
        problems.append(Problem(f"{n.key}.subnetId", why))
    for i, table in enumerate(n.route_table_ids):
        key = f"{n.key}.routeTableIds[{i}]"
        try:
            rt = aws.ec2.get_route_table(route_table_id=table, opts=opts)
        except Exception as e:
            problems.append(Problem(key, f"{table!r} was not found in {n.region}: {_refused(e)}"))
            continue
        # CreateRoute to a target of another VPC is refused: "route table rtb-x and network
        # gateway igw-x belong to different networks (... Error Code: InvalidParameterValue)"
        # (smoketurner/serverless-vpc-plugin#147); an ENI target is checked the same way.
        if rt.vpc_id != n.vpc_id:
            problems.append(Problem(key, f"{table!r} is a table of {rt.vpc_id}, not of vpcId {n.vpc_id}"))
            continue
        # CreateRoute refuses a destination the table already routes elsewhere (RouteAlreadyExists);
        # a route of ours (a former `up`) goes through this node's interface and is kept.
        for r in rt.routes or []:
            dest = r.cidr_block
            if dest and ipaddress.ip_network(dest, strict=False) in routes and not r.network_interface_id:
                problems.append(
                    Problem(key, f"{table!r} already routes {dest} elsewhere; remove that route first")
                )
    return AwsExisting(n.vpc_id, n.subnet_id, n.route_table_ids, cidr, subnet.availability_zone)


def _gcp(
    n: NodeSpec, providers: Providers, routes: tuple[ipaddress.IPv4Network, ...], problems: list[Problem]
) -> GcpExisting | None:
    opts = pulumi.InvokeOptions(provider=providers.gcp())
    net_match = GCP_NETWORK_RE.fullmatch(n.network)
    sub_match = GCP_SUBNETWORK_RE.fullmatch(n.subnetwork)
    assert net_match is not None and sub_match is not None  # mesh/existing.py checked the shapes
    try:
        network = gcp.compute.get_network(name=net_match["name"], project=net_match["project"], opts=opts)
    except Exception as e:
        problems.append(Problem(f"{n.key}.network", f"{n.network!r} was not found: {_refused(e)}"))
        return None
    try:
        sub = gcp.compute.get_subnetwork(
            name=sub_match["name"],
            region=sub_match["region"] or n.region,
            project=sub_match["project"],
            opts=opts,
        )
    except Exception as e:
        problems.append(
            Problem(f"{n.key}.subnetwork", f"{n.subnetwork!r} was not found in {n.region}: {_refused(e)}")
        )
        return None
    if sub.region and sub.region != n.region:
        problems.append(Problem(f"{n.key}.subnetwork", f"is in region {sub.region}, the node in {n.region}"))
    if _link_tail(sub.network) != _link_tail(network.self_link):
        problems.append(
            Problem(f"{n.key}.subnetwork", f"belongs to {sub.network}, not to network {n.network}")
        )
    cidr = ipaddress.IPv4Network(sub.ip_cidr_range)
    # A static route's destination may not overlap a subnet route of the network (VPC docs,
    # "Interactions between subnet routes and static routes": such a route is refused).
    problems += _overlap(f"{n.key}.subnetwork", "the subnetwork's range", cidr, routes)
    return GcpExisting(network.self_link, sub.self_link, cidr)


def _link_tail(link: str) -> str:
    """`projects/p/global/networks/n` of a self link, whatever API host and version precede it."""
    return link[link.find("projects/") :] if "projects/" in link else link


def _hcloud(
    n: NodeSpec, routes: tuple[ipaddress.IPv4Network, ...], problems: list[Problem]
) -> HcloudExisting | None:
    key = f"{n.key}.network"
    try:
        found = (
            hcloud.get_network(id=int(n.network))
            if n.network.isdigit()
            else hcloud.get_network(name=n.network)
        )
    except Exception as e:
        problems.append(Problem(key, f"{n.network!r} was not found: {_refused(e)}"))
        return None
    ip_range = ipaddress.IPv4Network(found.ip_range)
    for j, sub in enumerate(n.subnets):
        if not (isinstance(sub, ipaddress.IPv4Network) and sub.subnet_of(ip_range)):
            problems.append(
                Problem(f"{n.key}.subnets[{j}]", f"{sub} is outside the network's range {ip_range}")
            )
    problems += _overlap(key, "the network's range", ip_range, routes)
    for net in routes:
        if not any(net.subnet_of(p) for p in RFC1918):
            problems.append(Problem(key, f"Hetzner routes only RFC 1918 destinations; {net} is not one"))
    return HcloudExisting(int(found.id), ip_range)
