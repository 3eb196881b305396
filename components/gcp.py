"""GCP: one explicit provider and VPC network per stack, a subnetwork per region, image lookups,
the nodes' static external addresses and the mesh's firewall rules; per node the instance and
return routes.

Firewall rules are shared (the project's FIREWALLS quota counts them): each targets a network
tag (`wgmesh-node` for SSH and ICMP, `wgmesh-wg-<class>` for WireGuard from a class's peers,
`wgmesh-wg-roaming` for WireGuard from anywhere), and each VM carries the tags of its rules.

With `cidr6` or `endpoints: ipv6` the subnetworks are dual stack with external IPv6, and each
node reserves a regional external IPv6 `compute.Address` (ip_version IPV6, endpoint type VM,
in its region's subnetwork) before any VM: the /96 a VM's ipv6 access config takes, whose first
address is the VM's public IPv6 and what peers dial. Like the IPv4 address, it outlives a
replaced VM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import pulumi
import pulumi_gcp as gcp

from components.existing import GcpExisting
from components.firewall import (
    FirewallLayout,
    FirewallPlan,
    IPNetworkT,
    gcp_firewalls,
    resolved_sources,
)
from components.images import GCP_UBUNTU_PROJECT, Arch, gcp_arch, gcp_family, image_keys
from components.netplan import SitePlan, net_slug, subnetwork_description
from components.node import (
    MeshNode,
    NodeArgs,
    StaticIp,
    boot_ignore,
    pinned,
    plain_user_data,
    read_boot_digest,
    vm_options,
    with_boot_label,
)
from mesh.placement import gcp_boot_disk_type
from mesh.plan_types import MeshPlan
from mesh.spec import UNDERLAY_MTU, NodeSpec

NETWORK_TYPE = "wgmesh:gcp:Network"
NODE_TYPE = "wgmesh:gcp:Node"
BOOT_DISK_GB = 10
NETWORK_TIER = "PREMIUM"  # also the only tier GCP offers for external IPv6
DUAL_STACK = "IPV4_IPV6"
ICMPV6 = "58"  # GCP firewalls name ICMPv6 by protocol number ("icmp" is IPv4 only)
# A VM's external IPv6 is a /96; the access config needs the length next to the address, or
# GCP assigns an ephemeral range instead (pulumi/pulumi-gcp#2960).
VM_IPV6_PREFIX_LENGTH = "96"
KEEP_DESCRIPTION = pulumi.ResourceOptions(ignore_changes=["description"])


@dataclass(frozen=True)
class GcpNetworkArgs:
    provider: gcp.Provider  # the stack's GCP provider (components/providers.py)
    sites: dict[str, SitePlan]  # region -> its subnetwork plan
    nodes: Sequence[NodeSpec]
    ipv6: bool = False  # dual-stack subnetworks with external IPv6 (the mesh has `cidr6`)
    labels: Mapping[str, str] = field(default_factory=dict)  # mesh_labels: in each subnetwork's description
    # The user's network and subnetwork (`network`, read at preview): neither is created.
    existing: GcpExisting | None = None
    # Firewall rule names' prefix (default: the component's name). GCP names are unique per project
    # and at most 63 characters (cloud.google.com/compute/docs/naming-resources): a rule on the
    # user's network is named by a hash of its node, as the node name could make it too long.
    rule_prefix: str | None = None


class GcpNetwork(pulumi.ComponentResource):
    """The stack's VPC network, one subnetwork per region, image lookups and static addresses."""

    def __init__(self, name: str, args: GcpNetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(NETWORK_TYPE, name, None, opts)
        self._name = name
        self._rule_prefix = args.rule_prefix or name
        self.tags: dict[str, list[str]] = {}
        self.firewalls: list[gcp.compute.Firewall] = []
        self.provider = args.provider
        child = pulumi.ResourceOptions(parent=self, provider=self.provider)
        self.sites = args.sites
        self.node_names = {n.name for n in args.nodes}
        self.network_id: pulumi.Input[str]
        self.subnetwork_ids: dict[str, pulumi.Input[str]]
        if args.existing is not None:
            self.network_id = args.existing.network
            self.subnetwork_ids = {region: args.existing.subnetwork for region in args.sites}
            (self.router,) = {s.router for s in args.sites.values()}
            self._addresses(args)
            self.register_outputs({"networkId": self.network_id})
            return
        self.network = gcp.compute.Network(
            f"{name}-net",
            auto_create_subnetworks=False,
            mtu=UNDERLAY_MTU["gcp"],  # the planner's WireGuard MTU assumes this underlay
            routing_mode="REGIONAL",
            description="wgmesh underlay network",
            opts=child,
        )
        self.subnetworks = {
            region: gcp.compute.Subnetwork(
                f"{name}-{region}",
                region=region,
                network=self.network.id,
                ip_cidr_range=str(site.cidr),
                private_ip_google_access=True,
                stack_type=DUAL_STACK if args.ipv6 else None,
                ipv6_access_type="EXTERNAL" if args.ipv6 else None,
                # How preview finds it again (components/catalog.py existing_site_networks).
                # `description` is ForceNew (terraform-provider-google resource_compute_subnetwork.go:
                # "This field can be set only at resource creation time"), so a later change to
                # it, such as a stack rename, must never replace the subnetwork and its VMs.
                description=subnetwork_description(args.labels, site.key) if args.labels else None,
                opts=pulumi.ResourceOptions.merge(child, KEEP_DESCRIPTION),
            )
            for region, site in args.sites.items()
        }
        # GCP routes are network-wide: return routes through a node only when one node routes.
        routers = [s.router for s in args.sites.values() if s.router is not None]
        self.router = routers[0] if len(routers) == 1 else None
        self.network_id = self.network.id
        self.subnetwork_ids = {region: sub.id for region, sub in self.subnetworks.items()}
        self._addresses(args)
        self.register_outputs({"networkId": self.network.id})

    def _addresses(self, args: GcpNetworkArgs) -> None:
        """Image lookups and each node's static external addresses."""
        self.images = {key: self._lookup_image(*key) for key in image_keys(args.nodes, gcp_arch)}
        self.static_ips = {n.name: self._address(n) for n in args.nodes}
        self.static_ip6s: dict[str, pulumi.Output[str]] = {}
        if args.ipv6:
            self.static_ip6s = {n.name: self._address6(n) for n in args.nodes}

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

    def _address6(self, node: NodeSpec) -> pulumi.Output[str]:
        """A reserved external IPv6 for the node's VM: taken from its region's subnetwork."""
        address = gcp.compute.Address(
            f"{node.name}-ip6",
            region=node.region,
            address_type="EXTERNAL",
            ip_version="IPV6",
            ipv6_endpoint_type="VM",
            subnetwork=self.subnetwork_ids[node.region],
            network_tier=NETWORK_TIER,
            description=f"wgmesh node {node.name} (IPv6)",
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider),
        )
        return address.address

    def image(self, spec: NodeSpec) -> pulumi.Output[str]:
        return self.images[(spec.image, gcp_arch(spec.size))]

    def create_firewalls(
        self, plan: MeshPlan, layout: FirewallLayout, hosts: pulumi.Output[dict[str, IPNetworkT]]
    ) -> None:
        """The mesh's firewall rules (once the static IPs they admit are known), and each VM's tags."""
        cloud = gcp_firewalls(plan, layout)
        # Rules belong to one network: each network gets the rules its own nodes' tags select.
        self.tags = {node: list(tags) for node, tags in cloud.attached.items() if node in self.node_names}
        used = {t for tags in self.tags.values() for t in tags}
        self.firewalls = [self._firewall(fw, hosts) for fw in cloud.firewalls if fw.target_tag in used]

    def _firewall(
        self, fw: FirewallPlan, hosts: pulumi.Output[dict[str, IPNetworkT]]
    ) -> gcp.compute.Firewall:
        (rule,) = fw.rules  # one rule, one address family per GCP firewall (the layout splits them)
        assert fw.target_tag is not None
        ports = [str(rule.port)] if rule.port is not None else None
        # GCP names ICMPv6 by number and cannot filter by ICMP type: all ICMPv6 (packet too big among it).
        protocol = ICMPV6 if rule.protocol == "icmp" and rule.ipv6_sources else rule.protocol
        sources: pulumi.Input[Sequence[str]] = (
            hosts.apply(partial(resolved_sources, rule)) if rule.peers else list(rule.sources)
        )
        return gcp.compute.Firewall(
            f"{self._rule_prefix}-{fw.key}",
            network=self.network_id,
            direction="INGRESS",
            allows=[gcp.compute.FirewallAllowArgs(protocol=protocol, ports=ports)],
            source_ranges=sources,
            target_tags=[fw.target_tag],
            description=fw.description,
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider),
        )


class GcpNode(MeshNode):
    def __init__(
        self, name: str, args: NodeArgs, network: GcpNetwork, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(NODE_TYPE, name, args, opts)
        child = pulumi.ResourceOptions(parent=self, provider=network.provider)
        ipv6 = args.mesh.public_ipv6
        user_data: pulumi.Output[str] = pulumi.Output.secret(
            args.user_data.apply(partial(plain_user_data, cloud="gcp", node=name))
        )
        static_ip = args.static_ip.address
        nic: gcp.compute.InstanceNetworkInterfaceArgsDict = {
            "subnetwork": network.subnetwork_ids[args.spec.region],
            "access_configs": [{"nat_ip": static_ip, "network_tier": NETWORK_TIER}],
        }
        if ipv6:
            nic["stack_type"] = DUAL_STACK
            nic["ipv6_access_configs"] = [
                {
                    "network_tier": NETWORK_TIER,
                    "external_ipv6": network.static_ip6s[name],
                    "external_ipv6_prefix_length": VM_IPV6_PREFIX_LENGTH,
                }
            ]
        self.instance = gcp.compute.Instance(
            name,
            machine_type=args.spec.size,
            zone=args.spec.zone,
            boot_disk={
                "auto_delete": True,
                "initialize_params": {
                    "image": network.image(args.spec),
                    "size": BOOT_DISK_GB,
                    "type": gcp_boot_disk_type(args.spec.size),
                },
            },
            network_interfaces=[nic],
            metadata={"user-data": user_data, "block-project-ssh-keys": "true"},
            can_ip_forward=args.spec.routes,
            allow_stopping_for_update=True,
            shielded_instance_config={
                "enable_secure_boot": True,
                "enable_vtpm": True,
                "enable_integrity_monitoring": True,
            },
            tags=network.tags[name],  # updated in place (Instances.setTags)
            labels=with_boot_label(args, {}),  # the boot digest (components/stale.py)
            opts=vm_options(
                self,
                [
                    'metadata["user-data"]',
                    "bootDisk.initializeParams.image",
                    boot_ignore("labels"),
                    *pinned(args, zone="zone"),
                ],
                provider=network.provider,
                # Rules apply by tag, so nothing else orders them: the VM (and the commands after
                # it) wait for its firewalls' create or update (a new adminCidrs entry for CI's SSH).
                depends_on=network.firewalls,
            ),
        )
        # The server-assigned numeric id: new on every replacement, even under the same name
        # (the resource id is projects/<p>/zones/<z>/instances/<name>, which a replacement may reuse).
        self.vm_id = self.instance.instance_id
        self.booted = read_boot_digest(self.instance.labels)
        if ipv6:
            self.public_ip6 = network.static_ip6s[name]
        site = network.sites[args.spec.region]
        if network.router == name and site.router == name:
            for net in site.return_routes:
                gcp.compute.Route(
                    f"{name}-rt-{net_slug(net)}",
                    network=network.network_id,
                    dest_range=str(net),
                    next_hop_instance=self.instance.self_link,
                    priority=900,
                    description=f"mesh traffic back through {name}",
                    opts=child,
                )
        self._done()
