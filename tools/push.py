"""`make push STACK=dev NODE=aws-fra`: bring running nodes to the stack's current config over SSH.

For stacks with `wgmesh:mesh.liveUpdates` off, where `pulumi up` warns that a node runs a stale
config (a changed mesh, or a VM replaced with its first user data). It does by hand what the
live-update commands do:

1. reads the stack's `pushTargets` output (per cloud node: host, image user, VM id, payload
   digest) and the secret `nodePayloads` output, through the Pulumi CLI;
2. runs, over `ssh <user>@<host>`, the same apply script Pulumi's commands run
   (`cloudinit.remote_apply.remote_apply_command`), the payload on its standard input: first the
   peers-only apply on every chosen node, then the full apply on each (so a rotated key is
   known to the peers before its owner switches);
3. records each push in the stack config, `wgmesh:pushed["<node>"] = "<vm id>:<digest>"`, so the
   next preview stops warning about that node (for that VM only: a replaced VM is stale again).

No secret is ever on a command line or printed: the payload travels on stdin only, and the
script prints one summary line without keys. The image's own user is used (like `-peers`): it
exists from first boot, while `sshUser` may not yet.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudinit.remote_apply import remote_apply_command
from components.stale import boot_digest, pushed_record

REPO = Path(__file__).resolve().parent.parent
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10")


class PushError(Exception):
    """A one-line reason the push stopped (never holds the payload)."""


@dataclass(frozen=True)
class Target:
    node: str
    host: str
    user: str
    sudo: bool
    vm_id: str


def _exe(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise PushError(f"{name} is not on PATH")
    return found


def stack_output(pulumi: str, stack: str, name: str, *, secret: bool) -> Any:
    """One stack output as JSON (`--show-secrets` only for the payloads; read from stdout, never argv)."""
    argv = [pulumi, "stack", "output", name, "--json", "--stack", stack]
    if secret:
        argv.insert(4, "--show-secrets")
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise PushError(f"pulumi stack output {name} --stack {stack} failed: {last}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise PushError(f"pulumi stack output {name} --stack {stack}: not JSON") from None


def targets_of(raw: Any, nodes: Sequence[str]) -> list[Target]:
    if not isinstance(raw, dict) or not raw:
        raise PushError(
            "the stack has no pushTargets output (no cloud nodes, or not deployed with this version)"
        )
    chosen = list(nodes) or sorted(raw)
    unknown = [n for n in chosen if n not in raw]
    if unknown:
        raise PushError(f"no cloud node {', '.join(unknown)} in the stack (nodes: {', '.join(sorted(raw))})")
    return [
        Target(n, str(raw[n]["host"]), str(raw[n]["user"]), bool(raw[n]["sudo"]), str(raw[n]["vmId"]))
        for n in chosen
    ]


def apply(ssh: str, target: Target, payload: str, *, peers_only: bool) -> str:
    """Run the apply script on the node with the payload on stdin; its summary line."""
    command = remote_apply_command(target.sudo, peers_only=peers_only)
    argv = [ssh, *SSH_OPTIONS, f"{target.user}@{target.host}", command]
    proc = subprocess.run(argv, input=payload, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise PushError(f"{target.node}: apply failed over ssh (exit {proc.returncode}): {last}")
    lines = proc.stdout.strip().splitlines()
    return lines[-1] if lines else "(no summary)"


def record(pulumi: str, stack: str, target: Target, payload: str) -> None:
    """`wgmesh:pushed["<node>"]`: this VM now runs this payload (the preview's stale check reads it)."""
    value = pushed_record(target.vm_id, boot_digest(payload))
    argv = [pulumi, "config", "set", "--path", f'wgmesh:pushed["{target.node}"]', value, "--stack", stack]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise PushError(f"{target.node}: pushed, but recording it in wgmesh:pushed failed: {last}")


def push(stack: str, nodes: Sequence[str], pulumi: str = "pulumi", ssh: str = "ssh") -> list[str]:
    """Peers-only apply on every chosen node, then the full apply on each; one line per step."""
    pulumi_exe, ssh_exe = _exe(pulumi), _exe(ssh)
    targets = targets_of(stack_output(pulumi_exe, stack, "pushTargets", secret=False), nodes)
    payloads = stack_output(pulumi_exe, stack, "nodePayloads", secret=True)
    if not isinstance(payloads, dict) or not all(isinstance(payloads.get(t.node), str) for t in targets):
        raise PushError("the nodePayloads output has no payload for every chosen node")
    lines = []
    for peers_only in (True, False):
        for t in targets:
            summary = apply(ssh_exe, t, payloads[t.node], peers_only=peers_only)
            lines.append(f"{t.node}: {summary}")
    for t in targets:
        record(pulumi_exe, stack, t, payloads[t.node])
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    summary = (__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m tools.push", description=summary)
    parser.add_argument("--stack", required=True, help="the Pulumi stack")
    parser.add_argument("--node", action="append", default=[], help="a cloud node (repeat; default: all)")
    args = parser.parse_args(argv)
    nodes = [n for arg in args.node for n in arg.split(",") if n]
    try:
        for line in push(args.stack, nodes):
            print(line)
    except PushError as e:
        print(f"push: {e}", file=sys.stderr)
        return 1
    print(f"recorded in wgmesh:pushed (stacks/Pulumi.{args.stack.rsplit('/', 1)[-1]}.yaml): commit it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
