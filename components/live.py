"""Live updates as one step of the mesh: every live node learns its new peers, then switches
(its full apply, after its peers learned), then every live node's health is checked. Every
command names its node's VM id, so a replaced VM (which boots with its first user data) is
brought to the current config by the same commands in the same `up`."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from components.health import MeshHealth, mesh_digest
from components.node import MeshNode
from components.sync import LiveSync, sync_targets
from mesh.plan_types import MeshPlan

LIVE_TYPE = "wgmesh:live:LiveUpdates"


class LiveUpdates(pulumi.ComponentResource):
    """The peers and sync commands (`sync.peers`, `sync.commands`) and the health commands after them."""

    sync: LiveSync
    health: MeshHealth

    def __init__(
        self,
        name: str,
        plan: MeshPlan,
        nodes: Mapping[str, MeshNode],
        confs: Mapping[str, pulumi.Output[str]],
        private_key: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(LIVE_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # ext: an external node is reached at its `sshHost`, and has no VM to be replaced.
        hosts = {n: node.ssh_address or node.public_ip for n, node in nodes.items()}
        vm_ids = {
            n: node.vm_id if node.vm_id is not None else pulumi.Output.from_input(f"{node.cloud}-{n}")
            for n, node in nodes.items()
        }
        targets = sync_targets(plan, hosts, confs, nodes, private_key, vm_ids)
        self.sync = LiveSync(f"{name}-sync", targets, child)
        live_confs = {t.name: confs[t.name] for t in targets}
        self.health = MeshHealth(
            f"{name}-health",
            plan,
            targets,
            {n: node.public_key for n, node in nodes.items()},
            after=list(self.sync.commands.values()),
            trigger=mesh_digest(live_confs),
            opts=child,
        )
        self.register_outputs({"health": self.health.tables})
