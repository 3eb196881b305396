"""`cloud: lab` nodes: keys and rendered user data (secret outputs), no cloud resources.

The lab boots the same user data in network namespaces or QEMU VMs on one machine; its
underlay address is the node's fixed `publicIp`.
"""

from __future__ import annotations

import pulumi

from components.node import MeshNode, NodeArgs, StaticIp

NODE_TYPE = "wgmesh:lab:Node"


def lab_static_ip(public_ip: str) -> StaticIp:
    return StaticIp(address=pulumi.Output.from_input(public_ip), resource=None)


class LabNode(MeshNode):
    def __init__(self, name: str, args: NodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(NODE_TYPE, name, args, opts)
        self._done()
