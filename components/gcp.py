"""GCP: one explicit provider and VPC network per stack, a subnetwork per region, image lookups
and the nodes' static external addresses; per node firewalls, the instance and return routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import pulumi
import pulumi_gcp as gcp

from components.firewall import ROAMING_MARKER, IngressRule, ingress_rules
from components.images import GCP_UBUNTU_PROJECT, Arch, gcp_arch, gcp_family
from components.netplan import SitePlan, net_slug
from components.node import MeshNode, NodeArgs, StaticIp, plain_user_data, vm_options
from mesh.spec import UNDERLAY_MTU, NodeSpec

NETWORK_TYPE = "wgmesh:gcp:Network"
NODE_TYPE = "wgmesh:gcp:Node"
BOOT_DISK_GB = 10
NETWORK_TIER = "PREMIUM"


@dataclass(frozen=True)
class GcpNetworkArgs:
    project: str | None  # `gcp:project`; None: the provider falls back to GOOGLE_PROJECT / gcloud
    sites: dict[str, SitePlan]  # region -> its subnetwork plan
    nodes: Sequence[NodeSpec]


class GcpNetwork(pulumi.ComponentResource):
    """The stack's VPC network, one subnetwork per region, image lookups and static addresses."""

    def __init__(self, name: str, args: GcpNetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(NETWORK_TYPE, name, None, opts)
        self.provider = gcp.Provider(name, project=args.project, opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=self.provider)
        self.network = gcp.compute.Network(
            f"{name}-net",
            auto_create_subnetworks=False,
            mtu=UNDERLAY_MTU["gcp"],  # the planner's WireGuard MTU assumes this underlay
            routing_mode="REGIONAL",
            description="wgmesh underlay network",
            opts=child,
        )
        self.sites = args.sites
        self.subnetworks = {
            region: gcp.compute.Subnetwork(
                f"{name}-{region}",
                region=region,
                network=self.network.id,
                ip_cidr_range=str(site.cidr),
                private_ip_google_access=True,
                opts=child,
            )
            for region, site in args.sites.items()
        }
        # GCP routes are network-wide: return routes through a node only when one node routes.
        routers = [s.router for s in args.sites.values() if s.router is not None]
        self.router = routers[0] if len(routers) == 1 else None
        self.images = {key: self._lookup_image(*key) for key in _image_keys(args.nodes)}
        self.static_ips = {n.name: self._address(n) for n in args.nodes}
        self.register_outputs({"networkId": self.network.id})

    def _lookup_image(self, image: str, arch: Arch) -> pulumi.Output[str]:
        result = gcp.compute.get_image_output(
            family=gcp_family(image, arch),
            project=GCP_UBUNTU_PROJECT,
            opts=pulumi.InvokeOutputOptions(parent=self, provider=self.provider),
        )
        return result.self_link

    def _address(self, node: NodeSpec) -> StaticIp:
        address = gcp.compute.Address(
            f"{node.name}-ip",
            region=node.region,
            address_type="EXTERNAL",
            network_tier=NETWORK_TIER,
            description=f"wgmesh node {node.name}",
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider),
        )
        return StaticIp(address=address.address, resource=address)

    def image(self, spec: NodeSpec) -> pulumi.Output[str]:
        return self.images[(spec.image, gcp_arch(spec.size))]


def _image_keys(nodes: Sequence[NodeSpec]) -> list[tuple[str, Arch]]:
    keys: list[tuple[str, Arch]] = []
    for n in nodes:
        key = (n.image, gcp_arch(n.size))
        if key not in keys:
            keys.append(key)
    return keys


def network_tag(node: str) -> str:
    """The instance's network tag, which its firewalls target."""
    return f"wgmesh-{node}"


class GcpNode(MeshNode):
    def __init__(
        self, name: str, args: NodeArgs, network: GcpNetwork, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(NODE_TYPE, name, args, opts)
        child = pulumi.ResourceOptions(parent=self, provider=network.provider)
        tag = network_tag(name)
        for rule in ingress_rules(args.plan, args.mesh):
            _firewalls(name, rule, tag, network, args.peer_cidrs, child)
        user_data: pulumi.Output[str] = pulumi.Output.secret(
            args.user_data.apply(partial(plain_user_data, cloud="gcp", node=name))
        )
        static_ip = args.static_ip.address
        self.instance = gcp.compute.Instance(
            name,
            machine_type=args.spec.size,
            zone=args.spec.zone,
            boot_disk={
                "auto_delete": True,
                "initialize_params": {
                    "image": network.image(args.spec),
                    "size": BOOT_DISK_GB,
                    "type": "pd-balanced",
                },
            },
            network_interfaces=[
                {
                    "subnetwork": network.subnetworks[args.spec.region].id,
                    "access_configs": [{"nat_ip": static_ip, "network_tier": NETWORK_TIER}],
                }
            ],
            metadata={"user-data": user_data, "block-project-ssh-keys": "true"},
            can_ip_forward=args.spec.routes,
            allow_stopping_for_update=True,
            shielded_instance_config={
                "enable_secure_boot": True,
                "enable_vtpm": True,
                "enable_integrity_monitoring": True,
            },
            tags=[tag],
            opts=vm_options(
                self,
                ['metadata["user-data"]', "bootDisk.initializeParams.image"],
                provider=network.provider,
            ),
        )
        site = network.sites[args.spec.region]
        if network.router == name and site.router == name:
            for net in site.return_routes:
                gcp.compute.Route(
                    f"{name}-rt-{net_slug(net)}",
                    network=network.network.id,
                    dest_range=str(net),
                    next_hop_instance=self.instance.self_link,
                    priority=900,
                    description=f"mesh traffic back through {name}",
                    opts=child,
                )
        self._done()


def _firewalls(
    node: str,
    rule: IngressRule,
    tag: str,
    network: GcpNetwork,
    peer_cidrs: pulumi.Output[list[str]],
    opts: pulumi.ResourceOptions,
) -> None:
    """One firewall per rule and address family (GCP rules cannot mix IPv4 and IPv6 sources)."""
    allow = gcp.compute.FirewallAllowArgs(
        protocol=rule.protocol, ports=[str(rule.port)] if rule.port is not None else None
    )
    description = rule.description + (f" [{ROAMING_MARKER}]" if rule.roaming else "")
    families: list[tuple[str, pulumi.Input[Sequence[str]]]] = []
    if rule.from_peers:
        families.append(("", peer_cidrs))
    else:
        if rule.ipv4_sources:
            families.append(("", list(rule.ipv4_sources)))
        # The subnetworks are IPv4-only: IPv6 ICMP cannot arrive, the roaming rule keeps ::/0 anyway.
        if rule.ipv6_sources and rule.protocol != "icmp":
            families.append(("6", list(rule.ipv6_sources)))
    for suffix, sources in families:
        gcp.compute.Firewall(
            f"{node}-{rule.key}{suffix}",
            network=network.network.id,
            direction="INGRESS",
            allows=[allow],
            source_ranges=sources,
            target_tags=[tag],
            description=description,
            opts=opts,
        )
