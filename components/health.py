"""After the syncs, every live node proves its tunnels: the health command per node.

Runs `cloudinit.healthcheck.health_command()` on each live node once every sync command has
finished. The command line starts with a no-op naming a digest of every node's conf, so any
change anywhere in the mesh is an input change that re-checks every node in place (not
`triggers`: pulumi-command's SDK makes those replace the resource); a failing check fails
`pulumi up` with the script's table. The tables
(stdout) are exported as the stack's mesh health, not as secrets: pulumi-command marks every
output secret when an input is (the SSH key), but a table holds only peer names, overlay
addresses, handshake ages and ping verdicts (healthcheck.py prints no key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import pulumi
from pulumi_command import remote

from cloudinit.healthcheck import expected_peers, health_command
from components.sync import SyncTarget, digest_output, on_vm
from mesh.plan_types import MeshPlan

HEALTH_TYPE = "wgmesh:health:MeshHealth"


def mesh_digest(confs: Mapping[str, pulumi.Output[str]]) -> pulumi.Output[str]:
    """One digest over every node's conf (name-ordered): changes whenever any node's conf does."""
    names = sorted(confs)
    joined = pulumi.Output.all(*[confs[n] for n in names]).apply(
        lambda values: "\0".join(f"{n}\0{v}" for n, v in zip(names, values, strict=True))
    )
    return digest_output(joined)


class MeshHealth(pulumi.ComponentResource):
    """A health command per live node, after `after` (the sync commands); `tables` by node name."""

    commands: dict[str, remote.Command]
    tables: dict[str, pulumi.Output[str]]

    def __init__(
        self,
        name: str,
        plan: MeshPlan,
        targets: Sequence[SyncTarget],
        public_keys: Mapping[str, pulumi.Output[str]],
        after: Sequence[pulumi.Resource],
        trigger: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(HEALTH_TYPE, name, None, opts)
        keys = pulumi.Output.all(**public_keys)
        self.commands = {}
        for t in targets:
            mtu = plan.node(t.name).iface.mtu
            check = pulumi.Output.all(keys, trigger).apply(
                partial(_command, plan, t.name, mtu, t.access.sudo)
            )
            command = on_vm(t.vm_id, check)  # a replaced VM is checked again
            self.commands[t.name] = remote.Command(
                f"{t.name}-health",
                connection=t.access.connection(),
                create=command,
                update=command,
                logging=remote.Logging.STDOUT_AND_STDERR,
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(after)),
            )
        self.tables = {n: pulumi.Output.unsecret(c.stdout) for n, c in self.commands.items()}
        self.register_outputs({"tables": self.tables})


MESH_DIGEST_PREFIX = ": wgmesh-mesh-sha256="


def _command(plan: MeshPlan, node: str, mtu: int, sudo: bool, values: list[Any]) -> str:
    """`: wgmesh-mesh-sha256=<digest>; <health command>` (`:` does nothing; the digest is public)."""
    keys, digest = values
    check = health_command(node, expected_peers(plan, node, keys), mtu, sudo=sudo)
    return f"{MESH_DIGEST_PREFIX}{digest}; {check}"
