"""ext (issue 15): `cloud: external` nodes, self-managed hosts: keys and rendered config, no cloud resource.

The stack generates and keeps their keys like any node's; their config leaves as secret stack
outputs in two forms (`externalHosts`: the `#cloud-config` and the one-command installer,
cloudinit/installer.py). Peers dial them at their `endpoint` (none: behind NAT, they dial).
"""

from __future__ import annotations

import pulumi

from components.node import MeshNode, NodeArgs, StaticIp
from mesh.spec import NodeSpec

NODE_TYPE = "wgmesh:external:Node"


def external_static_ip(node: NodeSpec) -> StaticIp:
    """Its IPv4 endpoint when it has one (peers' firewalls admit it); "" for a DNS name or NAT."""
    fixed = node.fixed_source
    address = str(fixed) if fixed is not None and fixed.version == 4 else ""
    return StaticIp(address=pulumi.Output.from_input(address), resource=None)


class ExternalNode(MeshNode):
    """A host the operator runs: `public_ip` is its endpoint host (None behind NAT), `ssh_address`
    its `sshHost` (None: live updates do not reach it; the re-apply command is printed)."""

    def __init__(self, name: str, args: NodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(NODE_TYPE, name, args, opts)
        endpoint = args.spec.endpoint
        self.public_ip = pulumi.Output.from_input(endpoint.host if endpoint else None)  # type: ignore[arg-type]
        self.ssh_address = pulumi.Output.from_input(args.spec.ssh_host) if args.spec.ssh_host else None
        self._done()
