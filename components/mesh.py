"""WireGuardMesh: keys, static IPs, rendered user data and nodes, in that order.

Every endpoint must be known before any VM so each node's first-boot config already lists
its peers: static IPs (IPv4, and IPv6 where the mesh asks for it) are separate resources
created first, user data is rendered inside one `Output.all(...).apply` per member with the
pure renderer, and the VMs come last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pulumi

from cloudinit.bundle import node_bundle
from cloudinit.installer import node_installer, reapply_command
from cloudinit.remote_apply import needs_sudo
from cloudinit.render import check_user_data_fits, client_config, node_user_data_from_conf, node_wg_conf
from components.aws import AwsNode, AwsRegion, AwsRegionArgs
from components.catalog import existing_site_networks
from components.config import StackConfigError
from components.external import ExternalNode, external_static_ip
from components.firewall import firewall_layout, firewall_problems, host_networks
from components.gcp import GcpNetwork, GcpNetworkArgs, GcpNode
from components.hcloud import HcloudNode, HcloudProject, HcloudProjectArgs
from components.keys import WireGuardKey, mesh_secret
from components.lab import LabNode, lab_static_ip
from components.live import LiveUpdates
from components.netplan import SitePlan, plan_site_networks
from components.node import MeshNode, NodeArgs, StaticIp, UserDataError
from components.providers import Providers, mesh_labels
from components.quota_check import check_quotas
from components.quota_plan import QuotaKey
from components.stale import digest_of, warn_stale
from mesh.errors import ConfigError, RenderError
from mesh.keys import NodeKeys
from mesh.placement import Placements
from mesh.plan_types import MeshPlan, NodePlan
from mesh.site_networks import site_groups
from mesh.spec import ClientSpec, NodeSpec, image_user

MESH_TYPE = "wgmesh:index:WireGuardMesh"


@dataclass(frozen=True)
class WireGuardMeshArgs:
    plan: MeshPlan  # with sizes and zones resolved (components/catalog.py place_nodes)
    providers: Providers  # the same the catalog asked
    placements: Placements  # what the catalog chose: the subnets' AZs, what to pin
    ssh_private_key: pulumi.Output[str] | None = None  # secret; set when liveUpdates is on
    quotas: dict[QuotaKey, int] = field(default_factory=dict)  # `wgmesh:quotas`: raised quotas
    pushed: dict[str, str] = field(default_factory=dict)  # `wgmesh:pushed`: what `make push` sent


@dataclass(frozen=True)
class _Resolved:
    """Every member's public key and every node's static public IPs, as one opaque value.

    Output.all deep-walks dicts it is handed; passing the N-entry dicts to each of the
    N renders made N² Outputs (most of a 200-node run). Pulumi does not walk this object.
    """

    public_keys: dict[str, str]
    endpoints: dict[str, str]
    endpoints6: dict[str, str]  # static public IPv6 per node that has one


class WireGuardMesh(pulumi.ComponentResource):
    """The whole mesh. Per node: cloud, public IP, overlay address, public key; per client: config."""

    nodes: dict[str, MeshNode]
    node_outputs: dict[str, pulumi.Output[dict[str, Any]]]
    client_configs: dict[str, pulumi.Output[str]]
    node_configs: dict[str, pulumi.Output[str]]  # secret: each node's wg0.conf, for manual day-2
    # Secret: what live updates and `make push` send each node on stdin (its wg0.conf today);
    # its digest is the VM's boot tag (components/stale.py).
    payloads: dict[str, pulumi.Output[str]]
    stale: pulumi.Output[list[str]] | None  # liveUpdates off: nodes whose running config is stale

    def __init__(
        self, name: str, args: WireGuardMeshArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        plan = args.plan
        spec = plan.spec
        try:
            check_user_data_fits(plan)  # before any resource, so `pulumi preview` says it too
        except RenderError as e:
            raise UserDataError(str(e)) from None
        problems = firewall_problems(plan)  # the clouds' firewall limits, before any resource too
        if problems:
            raise StackConfigError(problems)
        site_plans = _plan_sites(plan, args.providers)  # existing networks kept, or refused here
        # Before any resource but the providers; routes counted through the kept routers.
        check_quotas(plan, args.quotas, args.providers.aws, site_plans)
        super().__init__(MESH_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        epoch = spec.mesh.key_epoch

        members: list[NodeSpec | ClientSpec] = [*spec.nodes, *spec.clients]
        keys = {m.name: WireGuardKey(m.name, epoch, m.key_epoch, child) for m in members}
        psk_root: pulumi.Output[bytes | None] = (
            mesh_secret(name, epoch, self) if spec.mesh.preshared_keys else pulumi.Output.from_input(None)
        )

        labels = mesh_labels(name)
        static_ips, static_ip6s, sites = self._static_ips(name, plan, args, labels, site_plans)
        endpoints = pulumi.Output.all(**{n: ip.address for n, ip in static_ips.items()})
        endpoints6: pulumi.Output[dict[str, str]] = pulumi.Output.all(**static_ip6s)
        public_keys = pulumi.Output.all(**{m: k.public_key for m, k in keys.items()})
        # Peers' WireGuard packets come from the addresses they dial from: open the port to those.
        hosts = (endpoints6 if spec.mesh.endpoints == "ipv6" else endpoints).apply(host_networks)
        shared = pulumi.Output.all(public_keys, endpoints, endpoints6).apply(lambda v: _Resolved(*v))
        layout = firewall_layout(plan)
        for site in {id(s): s for s in sites.values()}.values():
            if isinstance(site, AwsRegion | GcpNetwork | HcloudProject):
                site.create_firewalls(plan, layout, hosts)

        def render(member: str, fn: Callable[..., str]) -> pulumi.Output[str]:
            def apply(values: list[Any]) -> str:
                private, resolved, root = values
                keys = NodeKeys(private, resolved.public_keys, root)
                try:
                    return fn(plan, member, keys, resolved.endpoints, resolved.endpoints6)
                except RenderError as e:
                    raise UserDataError(str(e)) from None

            inputs = pulumi.Output.all(keys[member].private_key, shared, psk_root)
            return pulumi.Output.secret(inputs.apply(apply))

        self.node_configs = {n.name: render(n.name, node_wg_conf) for n in spec.nodes}
        # What each apply installs: the node's whole host config (cloudinit/bundle.py), the same
        # files its user data writes at first boot.
        self.payloads = {
            n: pulumi.Output.secret(conf.apply(partial(node_bundle, plan, n)))
            for n, conf in self.node_configs.items()
        }
        digests = {name: digest_of(payload) for name, payload in self.payloads.items()}
        self.nodes = {}
        for n in spec.nodes:
            node_plan = plan.node(n.name)
            node_args = NodeArgs(
                spec=n,
                plan=node_plan,
                mesh=spec.mesh,
                user_data=self.node_configs[n.name].apply(partial(_user_data, plan, n.name)),
                static_ip=static_ips[n.name],
                public_key=keys[n.name].public_key,
                chosen=p.chosen if (p := args.placements.nodes.get(n.name)) else (),
                boot_digest=digests[n.name],
            )
            self.nodes[n.name] = _node(n, node_args, sites, child)

        no_ip6: pulumi.Output[str | None] = pulumi.Output.from_input(None)
        self.node_outputs = {
            n.name: pulumi.Output.all(node.public_ip, node.public_key, static_ip6s.get(n.name, no_ip6)).apply(
                partial(_node_summary, plan.node(n.name), spec.mesh.public_ipv6)
            )
            for n in spec.nodes
            if (node := self.nodes[n.name])
        }
        self.client_configs = {c.name: render(c.name, client_config) for c in spec.clients}
        # ext: a self-managed host's config in both forms (secret): its #cloud-config and installer.
        self.external_hosts: dict[str, pulumi.Output[dict[str, str]]] = {
            n.name: pulumi.Output.secret(
                pulumi.Output.all(self.nodes[n.name].user_data, self.node_configs[n.name]).apply(
                    partial(_external_forms, plan, n.name)
                )
            )
            for n in spec.nodes
            if n.cloud == "external"
        }
        # Day-2: push each conf to its running node, then check the tunnels (opt-in).
        # A replaced VM boots with its first payload: live updates re-run on it (its id is their
        # input); without them, every node left stale is named with the command that fixes it.
        self.live: LiveUpdates | None = None
        self.stale = None
        vms = {n: node for n, node in self.nodes.items() if node.vm_id is not None}
        live = spec.mesh.live_updates and args.ssh_private_key is not None
        if spec.mesh.live_updates and args.ssh_private_key is not None:
            self.live = LiveUpdates(name, plan, self.nodes, self.payloads, args.ssh_private_key, child)
        elif vms:
            self.stale = warn_stale(
                pulumi.get_stack(),
                {n: node.booted for n, node in vms.items() if node.booted is not None},
                digests,
                {n: node.vm_id for n, node in vms.items() if node.vm_id is not None},
                args.pushed,
            )
        for n in spec.nodes:  # ext: day-2 for a host live updates do not reach is a command to run
            if n.cloud == "external" and not (live and n.ssh_host):
                pulumi.log.info(
                    f"wgmesh: {n.name} is self-managed (cloud: external); after a change, "
                    f"{reapply_command(pulumi.get_stack(), n.name)}"
                )
        self.push_targets = {
            n: pulumi.Output.all(node.public_ip, node.vm_id, digests[n]).apply(
                partial(_push_target, node_spec)
            )
            for n, node in vms.items()
            if node.vm_id is not None and (node_spec := spec.node(n))
        }
        self.register_outputs(
            {
                "nodes": self.node_outputs,
                "clients": self.client_configs,
                "wgConfigs": self.node_configs,
                "stale": self.stale,
            }
        )

    def _static_ips(
        self,
        name: str,
        plan: MeshPlan,
        args: WireGuardMeshArgs,
        labels: dict[str, str],
        site_plans: dict[str, SitePlan],
    ) -> tuple[dict[str, StaticIp], dict[str, pulumi.Output[str]], dict[str, pulumi.ComponentResource]]:
        """Create the shared per-cloud sites and every node's static IPs, before any VM.

        Returns the IPv4 per node, the static IPv6 per node that has one (cloud nodes with
        `cidr6` or `endpoints: ipv6`, lab nodes with `publicIp6`), and each node's site.
        """
        spec = plan.spec
        child = pulumi.ResourceOptions(parent=self)
        by_cloud: dict[str, list[NodeSpec]] = {}
        for n in spec.nodes:
            by_cloud.setdefault(n.cloud, []).append(n)
        aws_regions = _group(by_cloud.get("aws", []), lambda n: n.region)
        gcp_regions = _group(by_cloud.get("gcp", []), lambda n: n.region)
        sites: dict[str, pulumi.ComponentResource] = {}
        static_ips: dict[str, StaticIp] = {}
        static_ip6s: dict[str, pulumi.Output[str]] = {}
        for region, nodes in aws_regions.items():
            key = f"aws-{region}"
            aws_args = AwsRegionArgs(
                region,
                site_plans[key],
                nodes,
                provider=args.providers.aws(region),
                availability_zone=args.placements.aws_zones[region],
                ipv6=spec.mesh.public_ipv6,
            )
            aws_site = AwsRegion(key, aws_args, child)
            sites.update({n.name: aws_site for n in nodes})
            static_ips.update(aws_site.static_ips)
            static_ip6s.update(aws_site.static_ip6s)
        if gcp_regions:
            gcp_args = GcpNetworkArgs(
                provider=args.providers.gcp(),
                sites={r: site_plans[f"gcp-{r}"] for r in gcp_regions},
                nodes=by_cloud["gcp"],
                ipv6=spec.mesh.public_ipv6,
                labels=labels,
            )
            gcp_site = GcpNetwork(f"{name}-gcp", gcp_args, child)
            sites.update({n.name: gcp_site for n in by_cloud["gcp"]})
            static_ips.update(gcp_site.static_ips)
            static_ip6s.update(gcp_site.static_ip6s)
        if by_cloud.get("hcloud"):
            hcloud_args = HcloudProjectArgs(by_cloud["hcloud"], labels, ipv6=spec.mesh.public_ipv6)
            hcloud_site = HcloudProject(f"{name}-hcloud", hcloud_args, child)
            sites.update({n.name: hcloud_site for n in by_cloud["hcloud"]})
            static_ips.update(hcloud_site.static_ips)
            static_ip6s.update(hcloud_site.static_ip6s)
        for n in by_cloud.get("external", []):  # ext: its IPv4 endpoint, if any; no resource
            static_ips[n.name] = external_static_ip(n)
            fixed = n.fixed_source
            if fixed is not None and fixed.version == 6:
                static_ip6s[n.name] = pulumi.Output.from_input(str(fixed))
        for n in by_cloud.get("lab", []):
            assert n.public_ip is not None  # spec validation requires it
            static_ips[n.name] = lab_static_ip(str(n.public_ip))
            if n.public_ip6 is not None:
                static_ip6s[n.name] = pulumi.Output.from_input(str(n.public_ip6))
        ordered = {n.name: static_ips[n.name] for n in spec.nodes}
        return ordered, {n.name: static_ip6s[n.name] for n in spec.nodes if n.name in static_ip6s}, sites


def _plan_sites(plan: MeshPlan, providers: Providers) -> dict[str, SitePlan]:
    """Each AWS/GCP site's network: the one the cloud already holds, kept (read at preview), or a
    new one; StackConfigError when a change would move an existing one unasked."""
    groups = site_groups(plan.spec.nodes)
    try:
        planned = plan_site_networks(plan, groups, existing_site_networks(providers, groups))
    except ConfigError as e:
        raise StackConfigError(e.problems) from None
    for note in planned.notes:
        pulumi.log.info(f"wgmesh sites: {note}")
    for warning in planned.warnings:
        pulumi.log.warn(warning)
    return planned.sites


def _node_summary(node: NodePlan, public_ipv6: bool, resolved: list[str | None]) -> dict[str, Any]:
    """The exported, non-secret view of a node.

    publicIp6 (the static one peers can dial) only when cloud nodes get one (`cidr6` or
    `endpoints: ipv6`); None on a lab node without `publicIp6`.
    """
    public_ip, public_key, public_ip6 = resolved
    a6 = node.iface.address6
    summary = {
        "cloud": node.cloud,
        "publicIp": public_ip,
        "address": str(node.iface.address.ip),
        "address6": str(a6.ip) if a6 is not None else None,
        "publicKey": public_key,
    }
    if public_ipv6:
        summary["publicIp6"] = public_ip6
    return summary


def _push_target(node: NodeSpec, values: list[Any]) -> dict[str, Any]:
    """Where and how `make push` reaches a node (no secret): tools/push.py reads the `pushTargets` output.

    As the image's own user, like `-peers`: it exists from first boot, `sshUser` may not yet.
    """
    host, vm_id, digest = values
    user = image_user(node)
    return {"host": host, "user": user, "sudo": needs_sudo(user), "vmId": vm_id, "digest": digest}


def _user_data(plan: MeshPlan, node: str, wg_conf: str) -> str:
    """The node's user data around its wg0.conf (rendered once, shared with the wgConfigs output)."""
    try:
        return node_user_data_from_conf(plan, node, wg_conf)
    except RenderError as e:
        raise UserDataError(str(e)) from None


def _external_forms(plan: MeshPlan, node: str, values: list[str]) -> dict[str, str]:
    """ext: `externalHosts[node]`: the user data as rendered for it, and the installer around its conf."""
    user_data, wg_conf = values
    return {"cloudConfig": user_data, "installer": node_installer(plan, node, wg_conf)}


def _group(nodes: Sequence[NodeSpec], key: Callable[[NodeSpec], str]) -> dict[str, list[NodeSpec]]:
    groups: dict[str, list[NodeSpec]] = {}
    for n in nodes:
        groups.setdefault(key(n), []).append(n)
    return groups


def _node(
    spec: NodeSpec, args: NodeArgs, sites: dict[str, pulumi.ComponentResource], opts: pulumi.ResourceOptions
) -> MeshNode:
    site = sites.get(spec.name)
    if spec.cloud == "aws":
        assert isinstance(site, AwsRegion)
        return AwsNode(spec.name, args, site, opts)
    if spec.cloud == "gcp":
        assert isinstance(site, GcpNetwork)
        return GcpNode(spec.name, args, site, opts)
    if spec.cloud == "hcloud":
        assert isinstance(site, HcloudProject)
        return HcloudNode(spec.name, args, site, opts)
    if spec.cloud == "external":
        return ExternalNode(spec.name, args, opts)
    return LabNode(spec.name, args, opts)
