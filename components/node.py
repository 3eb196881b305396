"""The small interface every per-cloud node component shares.

A node gets its name, its plan entry, its rendered user data (a secret Output), its static
IP (created earlier, so every endpoint was known before any VM) and its public key; it
exposes its cloud, public IP, public IPv6 (None unless the mesh has `cidr6` and the cloud
gives one), public key and user data. Callers never need to know which
cloud a node is on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi

from cloudinit.render import EncodedUserData, encode_for_cloud
from components.stale import BOOT_TAG
from mesh.errors import RenderError
from mesh.plan_types import NodePlan
from mesh.spec import MeshSettings, NodeSpec


class UserDataError(pulumi.RunError):
    """User data that cannot be rendered or sent (e.g. over the cloud's size limit).

    A RunError so `pulumi up` prints the one-line reason (node, size, limit), not a traceback;
    the message never holds the user data itself. Deliberately not a ValueError (as RenderError
    is): the SDK rewraps ValueErrors raised while it resolves inputs into its own ValueError.
    """


def fit_user_data(text: str, cloud: str, node: str) -> EncodedUserData:
    """The user data as the cloud takes it, or UserDataError when it cannot fit."""
    try:
        return encode_for_cloud(text, cloud, node)
    except RenderError as e:
        raise UserDataError(str(e)) from None


def plain_user_data(text: str, cloud: str, node: str) -> str:
    """For clouds that take plain text only (GCP, Hetzner): the text, checked against the limit."""
    encoded = fit_user_data(text, cloud, node)
    if encoded.text is None:
        raise UserDataError(f"{node}: user data needs compression, which {cloud} does not take")
    return encoded.text


@dataclass(frozen=True)
class StaticIp:
    """A node's public IPv4, allocated before the VM: the cloud's resource and its address."""

    address: pulumi.Output[str]
    resource: pulumi.CustomResource | None  # None for lab nodes (fixed publicIp)


@dataclass(frozen=True)
class NodeArgs:
    spec: NodeSpec
    plan: NodePlan
    mesh: MeshSettings
    user_data: pulumi.Output[str]  # secret: holds the node's private key and PSKs
    static_ip: StaticIp
    public_key: pulumi.Output[str]
    chosen: tuple[str, ...] = ()  # "size" / "zone" the catalog picked (mesh/placement.py): pinned
    # The `wgmesh-boot` tag/label a new VM gets (components/stale.py): ignored later, like user data.
    boot_digest: pulumi.Output[str] | None = None


class MeshNode(pulumi.ComponentResource):
    """Base of `wgmesh:<cloud>:Node`: the outputs every node exposes."""

    cloud: str
    public_ip: pulumi.Output[str]
    public_ip6: pulumi.Output[str | None]  # set by the cloud's node when it has a public IPv6
    public_key: pulumi.Output[str]
    user_data: pulumi.Output[str]
    # Cloud nodes set both: the VM's cloud id (new on every replacement) and the boot digest
    # stored on it (its tag/label as read back: the payload it first booted with).
    vm_id: pulumi.Output[str] | None = None
    booted: pulumi.Output[str | None] | None = None
    # ext: where live updates log in when not `public_ip` (an external node's `sshHost`).
    ssh_address: pulumi.Output[str] | None = None

    def __init__(self, type_: str, name: str, args: NodeArgs, opts: pulumi.ResourceOptions | None) -> None:
        super().__init__(type_, name, None, opts)
        self.cloud = args.spec.cloud
        self.public_ip = args.static_ip.address
        self.public_ip6 = pulumi.Output.from_input(None)
        self.public_key = args.public_key
        self.user_data = pulumi.Output.secret(args.user_data)

    def _done(self) -> None:
        """Register outputs last, after every child exists."""
        self.register_outputs(
            {
                "cloud": self.cloud,
                "publicIp": self.public_ip,
                "publicIp6": self.public_ip6,
                "publicKey": self.public_key,
                "userData": self.user_data,
            }
        )


def pinned(args: NodeArgs, **inputs: str) -> list[str]:
    """The VM inputs to ignore_changes because the catalog chose their value (e.g. size="serverType").

    A default picked from what the cloud offers today must not move the VM when the offer changes;
    the engine keeps the stored value on updates and on a replacement (pulumi/pulumi#2657).
    """
    return [inputs[key] for key in args.chosen if key in inputs]


def with_boot_label(args: NodeArgs, labels: Mapping[str, str]) -> pulumi.Output[dict[str, str]]:
    """The VM's tags/labels plus `wgmesh-boot: <digest>` (which the VM then ignores: `BOOT_IGNORE`)."""
    digest = args.boot_digest if args.boot_digest is not None else pulumi.Output.from_input(None)
    return digest.apply(lambda d: {**labels, **({BOOT_TAG: d} if d else {})})


def boot_ignore(prop: str) -> str:
    """The ignore_changes path of the boot digest in the VM's `prop` (`tags`, `labels`)."""
    return f'{prop}["{BOOT_TAG}"]'


def read_boot_digest(labels: pulumi.Output[Mapping[str, str] | None]) -> pulumi.Output[str | None]:
    """The stored `wgmesh-boot` value of a VM's tags/labels output (None on a VM without it)."""
    return labels.apply(lambda found: (found or {}).get(BOOT_TAG))


def vm_options(parent: pulumi.Resource, ignore: list[str], **extra: object) -> pulumi.ResourceOptions:
    """Options every VM gets: user data (and image) changes ignored, replaced delete-first.

    Cloud-init runs once, so a user data change would only replace or restart the VM without
    reconfiguring it; membership changes reach live nodes another way. A VM holding a static
    IP must release it before its replacement can take it.
    """
    opts = pulumi.ResourceOptions(parent=parent, ignore_changes=ignore, delete_before_replace=True)
    if extra:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(**extra))  # type: ignore[arg-type]
    return opts
