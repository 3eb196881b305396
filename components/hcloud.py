"""Hetzner Cloud: the admins' SSH keys and the nodes' primary IPs per stack; per node a firewall
and a server that takes its primary IP at creation.

With `cidr6` or `endpoints: ipv6` each node also gets a static IPv6 primary IP (a /64; the
server answers on its ::1, which Hetzner's cloud-init network config sets up), kept like the
IPv4 one; that ::1 is what peers dial under `endpoints: ipv6`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import pulumi
import pulumi_hcloud as hcloud

from components.firewall import ROAMING_MARKER, IngressRule, ingress_rules
from components.images import hcloud_image
from components.node import MeshNode, NodeArgs, StaticIp, pinned, plain_user_data, vm_options
from mesh.spec import NodeSpec

PROJECT_TYPE = "wgmesh:hcloud:Project"
NODE_TYPE = "wgmesh:hcloud:Node"


@dataclass(frozen=True)
class HcloudProjectArgs:
    ssh_public_keys: Sequence[str]
    nodes: Sequence[NodeSpec]
    labels: dict[str, str]
    ipv6: bool = False  # a static IPv6 primary IP per node too (the mesh has `cidr6`)


class HcloudProject(pulumi.ComponentResource):
    """What the stack's Hetzner nodes share (SSH keys), and their primary IPs."""

    def __init__(
        self, name: str, args: HcloudProjectArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(PROJECT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.labels = args.labels
        # Hetzner refuses a second key with the same fingerprint in one project, so one per stack.
        self.ssh_key_ids = [
            hcloud.SshKey(f"{name}-admin-{i}", public_key=key, labels=args.labels, opts=child).id
            for i, key in enumerate(args.ssh_public_keys)
        ]
        self.static_ips = {n.name: self._primary_ip(n, "ipv4") for n in args.nodes}
        self.primary_ip6s: dict[str, hcloud.PrimaryIp] = {}
        self.static_ip6s: dict[str, pulumi.Output[str]] = {}
        if args.ipv6:
            for n in args.nodes:
                ip6 = self._primary_ip(n, "ipv6").resource
                assert isinstance(ip6, hcloud.PrimaryIp)
                self.primary_ip6s[n.name] = ip6
                self.static_ip6s[n.name] = ip6.ip_network.apply(server_ipv6)
        self.register_outputs({})

    def _primary_ip(self, node: NodeSpec, family: str) -> StaticIp:
        ip = hcloud.PrimaryIp(
            f"{node.name}-ip" if family == "ipv4" else f"{node.name}-ip6",
            type=family,
            assignee_type="server",
            location=node.region,
            auto_delete=False,  # outlives a server replacement; deleted with the stack
            labels={**self.labels, "wgmesh-node": node.name},
            opts=pulumi.ResourceOptions(parent=self),
        )
        return StaticIp(address=ip.ip_address, resource=ip)


class HcloudNode(MeshNode):
    def __init__(
        self, name: str, args: NodeArgs, project: HcloudProject, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(NODE_TYPE, name, args, opts)
        child = pulumi.ResourceOptions(parent=self)
        rules = ingress_rules(args.plan, args.mesh)
        labels = {**project.labels, "wgmesh-node": name}
        if any(r.roaming for r in rules):
            labels[ROAMING_MARKER] = "true"
        firewall = hcloud.Firewall(
            f"{name}-fw",
            rules=args.peer_cidrs.apply(partial(_rules, rules)),
            labels=labels,
            opts=child,
        )
        primary_ip = args.static_ip.resource
        assert isinstance(primary_ip, hcloud.PrimaryIp)
        user_data: pulumi.Output[str] = pulumi.Output.secret(
            args.user_data.apply(partial(plain_user_data, cloud="hcloud", node=name))
        )
        self.server = hcloud.Server(
            name,
            server_type=args.spec.size,
            image=hcloud_image(args.spec.image),
            location=args.spec.region,
            ssh_keys=project.ssh_key_ids,
            firewall_ids=[firewall.id.apply(int)],
            public_nets=[_public_net(primary_ip, project.primary_ip6s.get(name))],
            user_data=user_data,
            labels=labels,
            # user_data, image and ssh_keys all force a new server on Hetzner; a default size
            # is pinned so a later catalog pick does not resize the server.
            opts=vm_options(self, ["userData", "image", "sshKeys", *pinned(args, size="serverType")]),
        )
        if name in project.static_ip6s:
            self.public_ip6 = project.static_ip6s[name]
        self._done()


def _public_net(ip4: hcloud.PrimaryIp, ip6: hcloud.PrimaryIp | None) -> hcloud.ServerPublicNetArgsDict:
    if ip6 is None:
        return {"ipv4_enabled": True, "ipv4": ip4.id.apply(int), "ipv6_enabled": False}
    return {"ipv4_enabled": True, "ipv4": ip4.id.apply(int), "ipv6_enabled": True, "ipv6": ip6.id.apply(int)}


def server_ipv6(network: str) -> str:
    """The server's address in its IPv6 primary IP: ::1 of the /64 (PrimaryIp.ip_network).

    `ip_address` of an IPv6 primary IP is the network address itself, which nothing answers on.
    """
    return str(ipaddress.IPv6Network(network)[1])


def _rules(rules: Sequence[IngressRule], peers: list[str]) -> list[hcloud.FirewallRuleArgs]:
    return [_rule(r, peers) for r in rules]


def _rule(rule: IngressRule, peers: list[str]) -> hcloud.FirewallRuleArgs:
    return hcloud.FirewallRuleArgs(
        direction="in",
        protocol=rule.protocol,
        port=str(rule.port) if rule.port is not None else None,
        source_ips=list(peers) if rule.from_peers else list(rule.sources),
        description=rule.description,
    )
