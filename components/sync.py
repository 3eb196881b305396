"""Live updates: push each running node's new wg0.conf over SSH and apply it in place.

Opt-in (`wgmesh:mesh.liveUpdates`). Per cloud node, one `pulumi_command.remote.Command` runs
`cloudinit.sync.apply_command()` (a peer diff that never touches unchanged peers, plus the
route diff; a restart only when the node's own interface changed) with the node's rendered
wg0.conf on its standard input. The conf is a secret input, never logged (pulumi-command does
not log stdin; the script prints a summary line and redacts keys); a digest of it is the
trigger, so a node whose conf did not change runs nothing. VMs never change for membership:
`ignore_changes` keeps their user data.

Key rotation order: a node syncs only after its peers with a lower `keyEpoch`, so bumping
one node's epoch pushes its new public key to every peer first, then switches the node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from cloudinit.sync import apply_command
from mesh.plan_types import MeshPlan
from mesh.spec import NodeSpec, login_user

SYNC_TYPE = "wgmesh:sync:LiveSync"
# A new VM needs a minute or two before sshd answers: 24 dials of up to 10 s each.
DIAL_ERROR_LIMIT = 24
PER_DIAL_TIMEOUT = 10
# On a node still in its first boot, let cloud-init finish (it installs wg and starts wg0)
# before the apply runs; a node that has booted returns at once. Never fails the step.
WAIT_FOR_FIRST_BOOT = (
    "if command -v cloud-init >/dev/null 2>&1; then cloud-init status --wait </dev/null >/dev/null 2>&1; fi"
)


@dataclass(frozen=True)
class SshAccess:
    """How Pulumi reaches one node: its static IP, login user, the admin key, a pinned host key."""

    host: pulumi.Output[str]
    user: str
    private_key: pulumi.Output[str]  # secret (`wgmesh:sshPrivateKey`)
    host_key: str | None = None  # None: pulumi-command accepts any host key (no pinning)

    @property
    def sudo(self) -> bool:
        """Non-root logins (ubuntu, admin) run the scripts through `sudo -n`."""
        return self.user != "root"

    def connection(self) -> remote.ConnectionArgs:
        return remote.ConnectionArgs(
            host=self.host,
            user=self.user,
            private_key=pulumi.Output.secret(self.private_key),
            host_key=self.host_key,
            dial_error_limit=DIAL_ERROR_LIMIT,
            per_dial_timeout=PER_DIAL_TIMEOUT,
        )


@dataclass(frozen=True)
class SyncTarget:
    """One live node: its access, its rendered conf (secret), key epoch, node peers and VM."""

    name: str
    access: SshAccess
    conf: pulumi.Output[str]
    key_epoch: int
    peers: tuple[str, ...]
    vm: pulumi.Resource  # the node component: its VM and firewall exist before any sync


def live_nodes(plan: MeshPlan) -> list[NodeSpec]:
    """The nodes live updates reach: every cloud node (lab nodes are driven by the lab)."""
    return [n for n in plan.spec.nodes if n.cloud != "lab"]


def sync_targets(
    plan: MeshPlan,
    hosts: Mapping[str, pulumi.Output[str]],
    confs: Mapping[str, pulumi.Output[str]],
    vms: Mapping[str, pulumi.Resource],
    private_key: pulumi.Output[str],
) -> list[SyncTarget]:
    live = {n.name for n in live_nodes(plan)}
    targets = []
    for n in live_nodes(plan):
        access = SshAccess(hosts[n.name], login_user(plan.spec.mesh, n), private_key, n.ssh_host_key)
        peers = tuple(p.name for p in plan.node(n.name).iface.peers if p.kind == "node" and p.name in live)
        targets.append(SyncTarget(n.name, access, confs[n.name], n.key_epoch, peers, vms[n.name]))
    return targets


def sync_after(target: SyncTarget, epochs: Mapping[str, int]) -> list[str]:
    """Peers whose sync must finish first: those with a lower keyEpoch (the order is acyclic)."""
    return [p for p in target.peers if epochs[p] < target.key_epoch]


def conf_digest(conf: str) -> str:
    """The trigger: a SHA-256 of the conf (the key inside is 256 random bits; the hash reveals nothing)."""
    return hashlib.sha256(conf.encode()).hexdigest()


def digest_output(value: pulumi.Output[str]) -> pulumi.Output[str]:
    """A plain (non-secret) digest of a secret string, so `preview --diff` shows which node changes."""
    return pulumi.Output.unsecret(value.apply(conf_digest))


class LiveSync(pulumi.ComponentResource):
    """One apply command per live node, ordered for key rotation; `commands` by node name."""

    commands: dict[str, remote.Command]

    def __init__(
        self, name: str, targets: Sequence[SyncTarget], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(SYNC_TYPE, name, None, opts)
        epochs = {t.name: t.key_epoch for t in targets}
        self.commands = {}
        # Lower epochs first, so every dependency already exists when a command is declared.
        for t in sorted(targets, key=lambda t: (t.key_epoch, t.name)):
            command = f"{WAIT_FOR_FIRST_BOOT}; {apply_command(sudo=t.access.sudo)}"
            after = [self.commands[p] for p in sync_after(t, epochs)]
            conf: pulumi.Output[str] = pulumi.Output.secret(t.conf)
            self.commands[t.name] = remote.Command(
                f"{t.name}-sync",
                connection=t.access.connection(),
                create=command,
                update=command,  # an update, not a replacement, when the conf changes
                stdin=conf,
                triggers=[digest_output(t.conf)],
                logging=remote.Logging.STDOUT_AND_STDERR,  # the summary line; stdin is never logged
                opts=pulumi.ResourceOptions(parent=self, depends_on=[t.vm, *after]),
            )
        self.register_outputs({})
