"""Hetzner Cloud: the admins' SSH keys, the nodes' primary IPs and the mesh's shared firewalls
per stack; per node a server that takes its primary IP and its firewalls at creation.

Firewalls are per class, not per server (Hetzner allows 50 per project), and are referenced by
`firewall_ids` on the server rather than applied by a label selector: the Cloud API applies a
server's `firewalls` at creation time, while a label selector's firewall is applied by an
action after the server exists, leaving a server that boots unfiltered for that moment.

With `cidr6` or `endpoints: ipv6` each node also gets a static IPv6 primary IP (a /64; the
server answers on its ::1, which Hetzner's cloud-init network config sets up), kept like the
IPv4 one; that ::1 is what peers dial under `endpoints: ipv6`.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pulumi
import pulumi_hcloud as hcloud
import pulumi_random as random
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from components.existing import HcloudExisting
from components.firewall import (
    ROAMING_MARKER,
    FirewallLayout,
    FirewallPlan,
    IngressRule,
    IPNetworkT,
    hcloud_firewalls,
    resolved_sources,
)
from components.images import hcloud_image
from components.netplan import net_slug
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
from mesh.plan_types import MeshPlan
from mesh.spec import NodeSpec

PROJECT_TYPE = "wgmesh:hcloud:Project"
NODE_TYPE = "wgmesh:hcloud:Node"


@dataclass(frozen=True)
class HcloudProjectArgs:
    nodes: Sequence[NodeSpec]
    labels: dict[str, str]
    ipv6: bool = False  # a static IPv6 primary IP per node too (the mesh has `cidr6`)
    # Nodes in a Cloud Network the user owns (`network`, read at preview), and what each routes
    # back through itself (mesh and routed networks): the network is never created or changed.
    existing: Mapping[str, HcloudExisting] = field(default_factory=dict)
    return_routes: Mapping[str, tuple[ipaddress.IPv4Network, ...]] = field(default_factory=dict)


class HcloudProject(pulumi.ComponentResource):
    """What the stack's Hetzner nodes share (one SSH key, firewalls), and their primary IPs."""

    def __init__(
        self, name: str, args: HcloudProjectArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(PROJECT_TYPE, name, None, opts)
        self._name = name
        self.firewall_ids: dict[str, list[pulumi.Output[int]]] = {}
        self.roaming: set[str] = set()
        self.labels = args.labels
        self.existing = args.existing
        self.return_routes = args.return_routes
        self.ssh_key_ids = [self._stack_ssh_key(args.labels).id]
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

    def _stack_ssh_key(self, labels: dict[str, str]) -> hcloud.SshKey:
        """One Hetzner SSH key for the stack's lifetime, whose private half nobody holds.

        Why not the admins' keys: the Cloud API injects `ssh_keys` "at creation time" only
        (https://docs.hetzner.cloud/reference/cloud#servers-create-a-server; hcloud-python's
        `servers.create` docstring), so a replaced server would reuse the stored key IDs
        (`sshKeys` is ignored) after they may have been deleted; and keys named by list index
        collide on a reorder, since a fingerprint is unique per project ("SSH key with the same
        fingerprint already exists (uniqueness_error)", hetznercloud/terraform-provider-hcloud#12;
        "The fingerprint is unique", hetznercloud/hcloud-python#34). With this key present Hetzner
        sets no root password and e-mails none (the API returns `root_password` only when no SSH
        key was given). The admins' `sshPublicKeys` reach nodes through user data and live updates.
        A random ed25519 key never matches a key already in the project.
        """
        seed = random.RandomBytes(
            f"{self._name}-ssh-seed", length=32, opts=pulumi.ResourceOptions(parent=self)
        )
        public = pulumi.Output.unsecret(seed.base64.apply(ed25519_public_openssh))
        return hcloud.SshKey(
            f"{self._name}-ssh", public_key=public, labels=labels, opts=pulumi.ResourceOptions(parent=self)
        )

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

    def create_firewalls(
        self, plan: MeshPlan, layout: FirewallLayout, hosts: pulumi.Output[dict[str, IPNetworkT]]
    ) -> None:
        """The mesh's shared firewalls (once the static IPs they admit are known)."""
        cloud = hcloud_firewalls(plan, layout)
        ids = {fw.key: self._firewall(fw, hosts).id.apply(int) for fw in cloud.firewalls}
        self.firewall_ids = {node: [ids[k] for k in keys] for node, keys in cloud.attached.items()}
        self.roaming = {m for fw in cloud.firewalls if fw.roaming for m in fw.members}

    def _firewall(self, fw: FirewallPlan, hosts: pulumi.Output[dict[str, IPNetworkT]]) -> hcloud.Firewall:
        labels = {**self.labels, **({ROAMING_MARKER: "true"} if fw.roaming else {})}
        return hcloud.Firewall(
            f"{self._name}-{fw.key}",
            rules=hosts.apply(partial(_rules, fw.rules)),
            labels=labels,
            opts=pulumi.ResourceOptions(parent=self),
        )


class HcloudNode(MeshNode):
    def __init__(
        self, name: str, args: NodeArgs, project: HcloudProject, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(NODE_TYPE, name, args, opts)
        labels = {**project.labels, "wgmesh-node": name}
        if name in project.roaming:
            labels[ROAMING_MARKER] = "true"
        primary_ip = args.static_ip.resource
        assert isinstance(primary_ip, hcloud.PrimaryIp)
        existing = project.existing.get(name)
        user_data: pulumi.Output[str] = pulumi.Output.secret(
            args.user_data.apply(partial(plain_user_data, cloud="hcloud", node=name))
        )
        self.server = hcloud.Server(
            name,
            server_type=args.spec.size,
            image=hcloud_image(args.spec.image),
            location=args.spec.region,
            ssh_keys=project.ssh_key_ids,
            firewall_ids=project.firewall_ids[name],  # applied at creation, updated in place
            public_nets=[_public_net(primary_ip, project.primary_ip6s.get(name))],
            # Attached at creation, so first boot's cloud-init already configures the private
            # interface (pulumi-hcloud Server `networks`: "Network the server should be attached
            # to on creation"); Hetzner picks the private IP from the network's subnet in the zone.
            networks=[{"network_id": existing.network_id}] if existing is not None else None,
            user_data=user_data,
            labels=with_boot_label(args, labels),  # + the boot digest (components/stale.py)
            # user_data, image and ssh_keys all force a new server on Hetzner; a default size
            # is pinned so a later catalog pick does not resize the server.
            opts=vm_options(
                self,
                ["userData", "image", "sshKeys", boot_ignore("labels"), *pinned(args, size="serverType")],
            ),
        )
        self.vm_id = self.server.id  # a new server id on every replacement
        self.booted = read_boot_digest(self.server.labels)
        if name in project.static_ip6s:
            self.public_ip6 = project.static_ip6s[name]
        if existing is not None:
            private_ip = self.server.networks.apply(_private_ip)
            for net in project.return_routes.get(name, ()):
                # The network's hosts reach the mesh through this server's private IP (Cloud API
                # networks add_route: the gateway must not be the network's first IP; the server's
                # address never is, that one is Hetzner's router).
                hcloud.NetworkRoute(
                    f"{name}-route-{net_slug(net)}",
                    network_id=existing.network_id,
                    destination=str(net),
                    gateway=private_ip,
                    opts=pulumi.ResourceOptions(parent=self),
                )
        self._done()


def _private_ip(networks: Sequence[Any] | None) -> str:
    """The server's private IP in its (one) attached network, as the provider reports it."""
    (attached,) = networks or [None]
    ip = attached.get("ip") if isinstance(attached, dict) else getattr(attached, "ip", None)
    if not ip:
        raise ValueError("the server reports no private IP in its network")
    return str(ip)


def ed25519_public_openssh(seed_b64: str) -> str:
    """`ssh-ed25519 AAAA... wgmesh` of the ed25519 key with this 32-byte seed (public: not secret)."""
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed_b64))
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return f"{public} wgmesh"


def _public_net(ip4: hcloud.PrimaryIp, ip6: hcloud.PrimaryIp | None) -> hcloud.ServerPublicNetArgsDict:
    if ip6 is None:
        return {"ipv4_enabled": True, "ipv4": ip4.id.apply(int), "ipv6_enabled": False}
    return {"ipv4_enabled": True, "ipv4": ip4.id.apply(int), "ipv6_enabled": True, "ipv6": ip6.id.apply(int)}


def server_ipv6(network: str) -> str:
    """The server's address in its IPv6 primary IP: ::1 of the /64 (PrimaryIp.ip_network).

    `ip_address` of an IPv6 primary IP is the network address itself, which nothing answers on.
    """
    return str(ipaddress.IPv6Network(network)[1])


def _rules(rules: Sequence[IngressRule], hosts: dict[str, IPNetworkT]) -> list[hcloud.FirewallRuleArgs]:
    return [
        hcloud.FirewallRuleArgs(
            direction="in",
            protocol=r.protocol,
            port=str(r.port) if r.port is not None else None,
            source_ips=resolved_sources(r, hosts),
            description=r.description,
        )
        for r in rules
    ]
