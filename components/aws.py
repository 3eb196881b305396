"""AWS: per region a provider, VPC, public subnet, internet gateway, route table, AMI lookups,
the nodes' Elastic IPs and the shared security groups; per node an instance and the EIP
association.

Security groups are per region and class, never per node (components/firewall.py): a base
group (SSH, ICMP, outbound) on every instance, and the WireGuard peers' /32s spread over
groups of 60 rules, so a full mesh of up to 240 nodes fits the default 5 groups per interface.

With `cidr6` or `endpoints: ipv6` the VPC also takes an Amazon-provided IPv6 /56, the subnet
its first /64 with a ::/0 route to the internet gateway, and each instance one fixed IPv6
address in that /64 (`static_ipv6`: a hash of the node name). AWS has no Elastic IP for IPv6;
an address picked from the subnet's block is known as soon as the subnet exists, so peers'
first-boot configs can dial it, and a replaced instance (deleted first) takes the same one.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import pulumi
import pulumi_aws as aws

from components.existing import AwsExisting
from components.firewall import (
    ICMPV6_PACKET_TOO_BIG,
    ROAMING_MARKER,
    FirewallLayout,
    FirewallPlan,
    IngressRule,
    IPNetworkT,
    aws_firewalls,
    resolved_sources,
)
from components.images import Arch, ami_query, aws_arch, image_keys
from components.netplan import SitePlan, net_slug
from components.node import (
    MeshNode,
    NodeArgs,
    StaticIp,
    boot_ignore,
    fit_user_data,
    read_boot_digest,
    vm_options,
    with_boot_label,
)
from mesh.plan_types import MeshPlan
from mesh.spec import NodeSpec

REGION_TYPE = "wgmesh:aws:Region"
NODE_TYPE = "wgmesh:aws:Node"
ROOT_VOLUME_GB = 8
# ICMP type 3 code 4 ("fragmentation needed"): the only ICMP path-MTU discovery needs.
ICMP_FRAG_NEEDED = (3, 4)
# AWS keeps the first four and the last IPv6 address of every subnet block for itself.
AWS_RESERVED_LOW, AWS_RESERVED_HIGH = 4, 1


@dataclass(frozen=True)
class AwsRegionArgs:
    region: str
    site: SitePlan
    nodes: Sequence[NodeSpec]  # the region's nodes: one Elastic IP and an AMI lookup each needs
    provider: aws.Provider  # the region's provider (components/providers.py)
    availability_zone: str  # of the subnet: offers every type of the region's nodes (catalog)
    ipv6: bool = False  # dual-stack VPC and subnet (the mesh has `cidr6`)
    # The user's VPC, subnet and route tables (`vpcId`, read at preview): none of them is created.
    existing: AwsExisting | None = None


class AwsRegion(pulumi.ComponentResource):
    """Everything a region's nodes share, and their Elastic IPs (allocated before any instance)."""

    def __init__(self, name: str, args: AwsRegionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(REGION_TYPE, name, None, opts)
        self._name = name
        self.region = args.region
        self.group_ids: dict[str, list[pulumi.Output[str]]] = {}
        self.site = args.site
        self.provider = args.provider
        child = pulumi.ResourceOptions(parent=self, provider=self.provider)
        self.node_names = {n.name for n in args.nodes}
        self.existing = args.existing
        self.amis = {key: self._lookup_ami(*key) for key in image_keys(args.nodes, aws_arch)}
        self.static_ips = {n.name: self._elastic_ip(n.name) for n in args.nodes}
        self.static_ip6s: dict[str, pulumi.Output[str]] = {}
        self.vpc_id: pulumi.Input[str]
        self.subnet_id: pulumi.Input[str]
        self.route_table_ids: list[pulumi.Input[str]]
        if args.existing is not None:
            # Nothing of the network is ours: the instance goes into the user's subnet, whose
            # internet path (gateway, routes) is the user's too, so nothing to wait for.
            self.vpc_id = args.existing.vpc_id
            self.subnet_id = args.existing.subnet_id
            self.route_table_ids = list(args.existing.route_table_ids)
            self.internet_path: list[pulumi.Resource] = []
            self.register_outputs({"vpcId": self.vpc_id, "subnetId": self.subnet_id})
            return
        cidr = str(args.site.cidr)
        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            assign_generated_ipv6_cidr_block=True if args.ipv6 else None,
            tags={"Name": f"{name}-vpc"},
            opts=child,
        )
        self.subnet = aws.ec2.Subnet(
            f"{name}-subnet",
            vpc_id=self.vpc.id,
            cidr_block=cidr,
            # Set, not left to EC2: an AZ may not offer the instance type (us-east-1e has no t3).
            availability_zone=args.availability_zone,
            map_public_ip_on_launch=False,
            ipv6_cidr_block=self.vpc.ipv6_cidr_block.apply(first_ipv6_subnet) if args.ipv6 else None,
            tags={"Name": f"{name}-subnet"},
            # Pinned: the catalog's pick may change later (new types, AZs); the engine then keeps
            # the stored AZ, even if the subnet is replaced for another reason (pulumi/pulumi#2657).
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(ignore_changes=["availabilityZone"])
            ),
        )
        gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=self.vpc.id, tags={"Name": f"{name}-igw"}, opts=child
        )
        # Standalone routes only (no inline `routes`): nodes add return routes to this table.
        self.route_table = aws.ec2.RouteTable(
            f"{name}-rt", vpc_id=self.vpc.id, tags={"Name": f"{name}-rt"}, opts=child
        )
        default = aws.ec2.Route(
            f"{name}-default",
            route_table_id=self.route_table.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=gateway.id,
            opts=child,
        )
        # What each instance and Elastic IP association waits for: the internet path of the
        # subnet. The pulumi-aws Eip docs: "EIP may require IGW to exist prior to association. Use
        # depends_on to set an explicit dependency on the IGW"; and first boot (packages) needs
        # the default route and the subnet's association with this table, which no input names.
        self.internet_path = [gateway, default]
        if args.ipv6:
            default6 = aws.ec2.Route(
                f"{name}-default6",
                route_table_id=self.route_table.id,
                destination_ipv6_cidr_block="::/0",
                gateway_id=gateway.id,
                opts=child,
            )
            self.internet_path.append(default6)
        rta = aws.ec2.RouteTableAssociation(
            f"{name}-rta", subnet_id=self.subnet.id, route_table_id=self.route_table.id, opts=child
        )
        self.internet_path.append(rta)
        self.vpc_id = self.vpc.id
        self.subnet_id = self.subnet.id
        self.route_table_ids = [self.route_table.id]
        # Known once the subnet exists, before any instance: what peers dial under endpoints: ipv6.
        if args.ipv6:
            block = self.subnet.ipv6_cidr_block
            self.static_ip6s = {n.name: block.apply(partial(static_ipv6, n.name)) for n in args.nodes}
        self.register_outputs({"vpcId": self.vpc.id, "subnetId": self.subnet.id})

    def _lookup_ami(self, image: str, arch: Arch) -> pulumi.Output[str]:
        query = ami_query(image, arch)
        result = aws.ec2.get_ami_output(
            most_recent=True,
            owners=[query.owner],
            filters=[
                {"name": "name", "values": [query.name_pattern]},
                {"name": "architecture", "values": [query.architecture]},
                {"name": "virtualization-type", "values": ["hvm"]},
            ],
            opts=pulumi.InvokeOutputOptions(parent=self, provider=self.provider),
        )
        return result.id

    def _elastic_ip(self, node: str) -> StaticIp:
        eip = aws.ec2.Eip(
            f"{node}-eip",
            domain="vpc",
            tags={"Name": node},
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider),
        )
        return StaticIp(address=eip.public_ip, resource=eip)

    def ami(self, spec: NodeSpec) -> pulumi.Output[str]:
        return self.amis[(spec.image, aws_arch(spec.size))]

    def create_firewalls(
        self, plan: MeshPlan, layout: FirewallLayout, hosts: pulumi.Output[dict[str, IPNetworkT]]
    ) -> None:
        """The region's shared security groups (once the static IPs they admit are known)."""
        cloud = aws_firewalls(plan, self.region, layout)
        # A security group belongs to one VPC: each site makes the groups its own nodes wear.
        attached = {node: keys for node, keys in cloud.attached.items() if node in self.node_names}
        used = {k for keys in attached.values() for k in keys}
        groups = {
            fw.key: self._security_group(fw, plan.spec.mesh.public_ipv6, hosts)
            for fw in cloud.firewalls
            if fw.key in used
        }
        self.group_ids = {node: [groups[k].id for k in keys] for node, keys in attached.items()}

    def _security_group(
        self, fw: FirewallPlan, ipv6: bool, hosts: pulumi.Output[dict[str, IPNetworkT]]
    ) -> aws.ec2.SecurityGroup:
        name = f"{self._name}-{fw.key}"
        # Outbound on the base groups only: groups add up, so one all-outbound rule is enough.
        egress = [
            aws.ec2.SecurityGroupEgressArgs(
                protocol="-1",
                from_port=0,
                to_port=0,
                cidr_blocks=["0.0.0.0/0"],
                ipv6_cidr_blocks=["::/0"],
                description="all outbound",
            )
        ]
        base = fw.key.startswith("base")
        return aws.ec2.SecurityGroup(
            name,
            vpc_id=self.vpc_id,
            description=fw.description,
            ingress=hosts.apply(partial(_ingress_blocks, fw.rules, ipv6)),
            egress=egress if base else [],
            tags={"Name": name, **({ROAMING_MARKER: "true"} if fw.roaming else {})},
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider),
        )


def first_ipv6_subnet(vpc_block: str) -> str:
    """The subnet's IPv6 block: the first /64 of the VPC's Amazon-provided /56."""
    return str(next(ipaddress.IPv6Network(vpc_block).subnets(new_prefix=64)))


def static_ipv6(node: str, subnet_block: str | None) -> str:
    """The node's fixed IPv6 in its subnet's /64: a pure function of (name, block), as overlay
    addresses are, skipping the addresses AWS reserves. Two nodes of one region colliding is a
    2^-64 chance; the instance create would then fail loudly, never move a peer's endpoint.
    """
    if not subnet_block:
        raise ValueError(f"{node}: the subnet has no IPv6 block to take a static IPv6 from")
    net = ipaddress.IPv6Network(subnet_block)
    digest = hashlib.sha256(f"wgmesh aws ipv6\0{node}".encode()).digest()
    usable = net.num_addresses - AWS_RESERVED_LOW - AWS_RESERVED_HIGH
    return str(net.network_address + AWS_RESERVED_LOW + int.from_bytes(digest[:16], "big") % usable)


class AwsNode(MeshNode):
    def __init__(
        self, name: str, args: NodeArgs, region: AwsRegion, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(NODE_TYPE, name, args, opts)
        child = pulumi.ResourceOptions(parent=self, provider=region.provider)
        ipv6 = args.mesh.public_ipv6
        user_data_b64: pulumi.Output[str] = pulumi.Output.secret(
            args.user_data.apply(partial(aws_user_data, node=name))
        )
        self.instance = aws.ec2.Instance(
            name,
            ami=region.ami(args.spec),
            instance_type=args.spec.size,
            subnet_id=region.subnet_id,
            vpc_security_group_ids=region.group_ids[
                name
            ],  # updated in place (ModifyNetworkInterfaceAttribute)
            # An ephemeral address until the Elastic IP is associated, so first boot can reach a mirror.
            associate_public_ip_address=True,
            source_dest_check=not args.spec.routes,
            ipv6_addresses=[region.static_ip6s[name]] if ipv6 else None,
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_tokens="required", http_endpoint="enabled", http_put_response_hop_limit=1
            ),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                encrypted=True, volume_type="gp3", volume_size=ROOT_VOLUME_GB, delete_on_termination=True
            ),
            user_data_base64=user_data_b64,
            user_data_replace_on_change=False,
            tags=with_boot_label(args, {"Name": name}),  # + the boot digest (components/stale.py)
            opts=vm_options(
                self,
                ["userDataBase64", "ami", boot_ignore("tags")],
                provider=region.provider,
                depends_on=region.internet_path,
            ),
        )
        self.vm_id = self.instance.id  # a new instance id on every replacement
        self.booted = read_boot_digest(self.instance.tags)
        if ipv6:
            self.public_ip6 = region.static_ip6s[name]
        static_ip = args.static_ip.resource
        assert isinstance(static_ip, aws.ec2.Eip)
        aws.ec2.EipAssociation(
            f"{name}-eip-assoc",
            allocation_id=static_ip.allocation_id,
            instance_id=self.instance.id,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=region.internet_path)),
        )
        if region.site.router == name and region.existing is None:
            for net in region.site.return_routes:
                aws.ec2.Route(
                    f"{name}-rt-{net_slug(net)}",
                    route_table_id=region.route_table.id,
                    destination_cidr_block=str(net),
                    network_interface_id=self.instance.primary_network_interface_id,
                    opts=child,
                )
        elif region.existing is not None and region.existing.route_table_ids:
            # The user's tables send the mesh to this instance's interface (its source/dest check
            # is off: `routeTableIds` needs `subnets`). CreateRoute takes a network interface as
            # target ("You must specify one of the following targets: ... network interface",
            # EC2 API reference, CreateRoute); one route per table and network, each ours.
            for table in region.existing.route_table_ids:
                for net in region.site.return_routes:
                    aws.ec2.Route(
                        f"{name}-{table}-{net_slug(net)}",
                        route_table_id=table,
                        destination_cidr_block=str(net),
                        network_interface_id=self.instance.primary_network_interface_id,
                        opts=child,
                    )
        self._done()


def aws_user_data(text: str, node: str) -> str:
    """Base64 for `user_data_base64`: of the plain text when it fits 16 KB, else of its gzip.

    One input whichever form is sent, so a node crossing the limit does not swap properties.
    """
    encoded = fit_user_data(text, "aws", node)
    if encoded.gzip_b64 is not None:
        return encoded.gzip_b64
    assert encoded.text is not None
    return base64.b64encode(encoded.text.encode()).decode()


def _ingress_blocks(
    rules: Sequence[IngressRule], ipv6: bool, hosts: dict[str, IPNetworkT]
) -> list[aws.ec2.SecurityGroupIngressArgs]:
    blocks: list[aws.ec2.SecurityGroupIngressArgs] = []
    for rule in rules:
        blocks += _ingress(rule, resolved_sources(rule, hosts), ipv6)
    return blocks


def _ingress(rule: IngressRule, sources: list[str], ipv6: bool) -> list[aws.ec2.SecurityGroupIngressArgs]:
    """Security group ingress blocks for one rule, its sources resolved (each CIDR one AWS rule)."""
    v4 = [s for s in sources if ":" not in s]
    v6 = [s for s in sources if ":" in s]
    if rule.protocol == "icmp":
        # ICMPv6 is its own protocol on AWS; the layout offers ::/0 only on dual-stack VPCs.
        out = []
        if v4:
            out.append(
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="icmp",
                    from_port=ICMP_FRAG_NEEDED[0],  # for ICMP, from_port is the type, to_port the code
                    to_port=ICMP_FRAG_NEEDED[1],
                    cidr_blocks=v4,
                    description=rule.description,
                )
            )
        if v6 and ipv6:
            out.append(
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="icmpv6",
                    from_port=ICMPV6_PACKET_TOO_BIG[0],
                    to_port=ICMPV6_PACKET_TOO_BIG[1],
                    ipv6_cidr_blocks=v6,
                    description="ICMPv6 packet too big, for IPv6 path MTU discovery",
                )
            )
        return out
    assert rule.port is not None
    return [
        aws.ec2.SecurityGroupIngressArgs(
            protocol=rule.protocol,
            from_port=rule.port,
            to_port=rule.port,
            cidr_blocks=v4 or None,  # peers dialing over IPv6 (endpoints: ipv6) leave no IPv4 source
            ipv6_cidr_blocks=v6 or None,
            description=rule.description,
        )
    ]
