"""Live updates: push each running node's new wg0.conf over SSH and apply it in place.

Opt-in (`wgmesh:mesh.liveUpdates`). Per cloud node, two `pulumi_command.remote.Command`s run
`cloudinit.remote_apply.remote_apply_command()` with the node's rendered wg0.conf on standard input:

- `<node>-peers` (`peers_only=True`): the peer and route diff only; the node keeps running
  its own key, address, MTU and port and the file is not installed;
- `<node>-sync`: the full apply (installs the file; restarts wg0 only if the node's own
  key, address, MTU or port changed), after the `-peers` of the node and of all its peers.

So a rotated key is known to every peer before its owner switches to it, whatever the
`keyEpoch` values and history (the promise: new public key pushed to peers first, then the node
switches, then handshakes are checked). The conf is a secret input, never logged
(pulumi-command does not log stdin, `additional_secret_outputs` keeps the output copy secret
too, the script redacts keys). A changed conf is an input change, so the engine updates both
commands in place and pulumi-command runs `update`; a node whose conf did not change runs
nothing. No `triggers`: pulumi-command's SDK marks them `replace_on_changes`, which would
turn every change into a replacement. VMs never change for membership: `ignore_changes`
keeps their user data.

A replaced VM boots with its *first* user data: the engine creates the replacement from the
inputs stored in state for every ignored property (processIgnoreChanges; Pulumi's
`ignoreChanges` docs: the program's value is used only when there is no previous value).
So every command line starts with a no-op naming the VM's id (`: wgmesh-vm=<id>; ...`): a new
VM is a changed input, and the engine updates the commands in place, which re-runs them on
the new VM.

`-peers` logs in as the image's own user (`image_user`: it exists from first boot), `-sync` and
`-health` as `login_user` (`sshUser` when set): the first apply creates `sshUser`, so setting
or renaming it on a running mesh works in one `up`, and `-sync` proves the new login works.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from cloudinit.remote_apply import needs_sudo, remote_apply_command
from mesh.plan_types import MeshPlan
from mesh.spec import NodeSpec, image_user, login_user

SYNC_TYPE = "wgmesh:sync:LiveSync"
# A new VM needs a minute or two before sshd answers: 24 dials of up to 10 s each.
DIAL_ERROR_LIMIT = 24
PER_DIAL_TIMEOUT = 10

VM_PREFIX = ": wgmesh-vm="


def vm_command(vm_id: str, command: str) -> str:
    """`: wgmesh-vm=<id>; <command>`: `:` does nothing; a new VM id is a changed input (re-run)."""
    return f"{VM_PREFIX}{shlex.quote(vm_id)}; {command}"


def on_vm(vm_id: pulumi.Output[str], command: pulumi.Input[str]) -> pulumi.Output[str]:
    """The command as an Output that changes whenever the node's VM is replaced."""
    return pulumi.Output.all(vm_id, command).apply(lambda v: vm_command(str(v[0]), str(v[1])))


@dataclass(frozen=True)
class SshAccess:
    """How Pulumi reaches one node: its static IP, login user, the admin key, a pinned host key."""

    host: pulumi.Output[str]
    user: str
    private_key: pulumi.Output[str]  # secret (`wgmesh:sshPrivateKey`)
    host_key: str | None = None  # None: pulumi-command accepts any host key (no pinning)

    @property
    def sudo(self) -> bool:
        return needs_sudo(self.user)

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
    """One live node: its access, its payload (secret), its live node peers and its VM.

    `access` logs in as `login_user` (`-sync`, `-health`), `bootstrap` as the image's user (`-peers`).
    """

    name: str
    access: SshAccess
    conf: pulumi.Output[str]
    peers: tuple[str, ...]
    vm: pulumi.Resource  # the node component: its VM and firewall exist before any sync
    vm_id: pulumi.Output[str]  # the VM's cloud id: a replaced VM re-runs every command
    bootstrap: SshAccess


def live_nodes(plan: MeshPlan) -> list[NodeSpec]:
    """The nodes live updates reach: every cloud node (lab nodes are driven by the lab), and the
    external ones with an `sshHost` (ext: the others get the printed re-apply command)."""
    return [n for n in plan.spec.nodes if n.cloud != "lab" and (n.cloud != "external" or n.ssh_host)]


def sync_targets(
    plan: MeshPlan,
    hosts: Mapping[str, pulumi.Output[str]],
    confs: Mapping[str, pulumi.Output[str]],
    vms: Mapping[str, pulumi.Resource],
    private_key: pulumi.Output[str],
    vm_ids: Mapping[str, pulumi.Output[str]],
) -> list[SyncTarget]:
    live = {n.name for n in live_nodes(plan)}
    targets = []
    for n in live_nodes(plan):
        access = SshAccess(hosts[n.name], login_user(plan.spec.mesh, n), private_key, n.ssh_host_key)
        bootstrap = SshAccess(hosts[n.name], image_user(n), private_key, n.ssh_host_key)
        peers = tuple(p.name for p in plan.node(n.name).iface.peers if p.kind == "node" and p.name in live)
        targets.append(
            SyncTarget(n.name, access, confs[n.name], peers, vms[n.name], vm_ids[n.name], bootstrap)
        )
    return targets


def sync_after(target: SyncTarget) -> list[str]:
    """Nodes whose `-peers` step must finish before `target` switches: itself and its peers.

    Independent of key epochs: every `-peers` step depends only on VMs, every `-sync` only on
    `-peers` steps, so the graph is acyclic whatever changed.
    """
    return [target.name, *target.peers]


def conf_digest(conf: str) -> str:
    """A SHA-256 of a conf (the keys inside are 256 random bits each; the hash reveals nothing)."""
    return hashlib.sha256(conf.encode()).hexdigest()


def digest_output(value: pulumi.Output[str]) -> pulumi.Output[str]:
    """A plain (non-secret) digest of a secret string, for a command that must re-run when it changes."""
    return pulumi.Output.unsecret(value.apply(conf_digest))


class LiveSync(pulumi.ComponentResource):
    """Per live node a `-peers` then a `-sync` apply command; `peers` and `commands` by node name."""

    peers: dict[str, remote.Command]
    commands: dict[str, remote.Command]

    def __init__(
        self, name: str, targets: Sequence[SyncTarget], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(SYNC_TYPE, name, None, opts)
        self.peers = {
            t.name: _apply(t, f"{t.name}-peers", peers_only=True, after=[t.vm], parent=self) for t in targets
        }
        self.commands = {
            t.name: _apply(
                t,
                f"{t.name}-sync",
                peers_only=False,
                after=[t.vm, *(self.peers[p] for p in sync_after(t))],
                parent=self,
            )
            for t in targets
        }
        self.register_outputs({})


def _apply(
    t: SyncTarget, name: str, *, peers_only: bool, after: Sequence[pulumi.Resource], parent: pulumi.Resource
) -> remote.Command:
    """One apply command; `additional_secret_outputs` keeps the conf secret in the output state too."""
    access = t.bootstrap if peers_only else t.access
    command = on_vm(t.vm_id, remote_apply_command(access.sudo, peers_only=peers_only))
    conf: pulumi.Output[str] = pulumi.Output.secret(t.conf)
    return remote.Command(
        name,
        connection=access.connection(),
        create=command,
        update=command,  # a changed conf (stdin) is an update in place, not a replacement
        stdin=conf,
        logging=remote.Logging.STDOUT_AND_STDERR,  # the summary line; stdin is never logged
        opts=pulumi.ResourceOptions(
            parent=parent, depends_on=list(after), additional_secret_outputs=["stdin"]
        ),
    )
