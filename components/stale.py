"""Which running nodes hold a stale config when live updates are off, and the command that fixes it.

A VM boots once with its user data and ignores later changes to it (components/node.py); a
replaced VM even boots with its *first* user data, which the engine keeps in state for ignored
inputs (processIgnoreChanges; https://www.pulumi.com/docs/iac/concepts/options/ignorechanges/ :
"the value from the program is used only if there is no previous value"). So each VM carries
a boot digest (`wgmesh-boot`: the first 32 hex digits of the SHA-256 of the payload it booted
with) as an AWS tag / GCP label / Hetzner label, ignored like the user data, so the stored value
survives updates and replacements. The program reads it back from the VM's outputs and compares
it with the digest of the payload it renders now; `make push` records what it pushed to which
VM in `wgmesh:pushed` (`<node>: <vm id>:<digest>`), which counts only for that same VM.

32 hex digits fit every cloud's label rules (mesh/contracts.py: GCP label values [a-z0-9_-]
up to 63, Hetzner up to 63 alphanumerics, AWS tag values up to 256). The digest reveals
nothing: the payload holds 256-bit keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import partial
from typing import Any

import pulumi
from pulumi.output import Unknown

BOOT_TAG = "wgmesh-boot"
BOOT_DIGEST_HEX = 32


def boot_digest(payload: str) -> str:
    """The digest a VM is tagged with, and what `make push` records: 128 bits of SHA-256."""
    return hashlib.sha256(payload.encode()).hexdigest()[:BOOT_DIGEST_HEX]


def digest_of(payload: pulumi.Output[str]) -> pulumi.Output[str]:
    """A plain (non-secret) boot digest of a secret payload."""
    return pulumi.Output.unsecret(payload.apply(boot_digest))


def pushed_record(vm_id: str, digest: str) -> str:
    return f"{vm_id}:{digest}"


def known_or_none(value: pulumi.Output[str]) -> pulumi.Output[str | None]:
    """The value, or None while it is unknown (preview of a VM about to be created or replaced)."""
    return value.apply(lambda v: None if isinstance(v, Unknown) else v, run_with_unknowns=True)


def push_command(stack: str, node: str) -> str:
    return f"make push STACK={stack} NODE={node}"


def stale_message(stack: str, node: str) -> str:
    """One warning line: the node, why, and the one command that fixes it (never a secret)."""
    return (
        f"wgmesh: node {node} will run a stale config (its VM booted with an older payload and "
        f"wgmesh:mesh.liveUpdates is off): after `pulumi up`, run `{push_command(stack, node)}`"
    )


def is_stale(booted: str | None, current: str, vm_id: str | None, pushed: str | None) -> bool:
    """Stale unless the VM booted with the current payload or `make push` sent it to this VM.

    `booted` None: the VM has no boot digest (created before wgmesh tagged VMs; the tag is set
    on the next `up`): nothing known, no warning. `vm_id` None: a VM created or replaced by
    this update, whose record cannot be a push to it.
    """
    if booted is None or booted == current:
        return False
    return vm_id is None or pushed != pushed_record(vm_id, current)


def warn_stale(
    stack: str,
    booted: Mapping[str, pulumi.Output[str | None]],
    current: Mapping[str, pulumi.Output[str]],
    vm_ids: Mapping[str, pulumi.Output[str]],
    pushed: Mapping[str, str],
) -> pulumi.Output[list[str]]:
    """Log one warning per stale node (preview and up); the stale node names, sorted."""

    def check(node: str, values: list[Any]) -> str | None:
        b, c, vm = values
        if is_stale(b, c, vm, pushed.get(node)):
            pulumi.log.warn(stale_message(stack, node))
            return node
        return None

    per_node = [
        pulumi.Output.all(booted[n], current[n], known_or_none(vm_ids[n])).apply(partial(check, n))
        for n in sorted(booted)
    ]
    return pulumi.Output.all(*per_node).apply(lambda names: sorted(n for n in names if n))
