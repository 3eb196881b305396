"""A readable text form of a program run: the resource tree with non-secret inputs, and the exports.

Committed per stack under tests/program/snapshots/, so a pull request that changes what
`pulumi up` would do shows the change as a text diff, the way `pulumi preview --diff` would.
Secrets print as [secret]; mock ids and IPs are hashes of names, so the text is stable.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml
from wgmesh_mocks import Captured, ProgramRun, Resolved, is_secret

SNAPSHOT_DIR = Path(__file__).resolve().parent / "snapshots"
UPDATE_ENV = "WGMESH_UPDATE_SNAPSHOTS"
SECRET = "[secret]"


def redact(value: Any) -> Any:
    """Secrets replaced, integral floats (how mocks deliver numbers) shown as ints."""
    if is_secret(value):
        return SECRET
    if isinstance(value, Resolved):
        return SECRET if value.secret else redact(value.value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def render(run: ProgramRun) -> str:
    urns = {r.urn for r in run.resources}
    children: dict[str, list[Captured]] = defaultdict(list)
    for r in run.resources:
        children[r.parent if r.parent in urns else ""].append(r)
    providers = {r.urn: r.name for r in run.resources if r.type.startswith("pulumi:providers:")}
    lines = [
        f"# wgmesh program snapshot for stack '{run.stack}' (mocked `pulumi up`).",
        f"# Regenerate after an intended change: {UPDATE_ENV}=1 .venv/bin/pytest tests/program",
        "",
    ]

    def emit(r: Captured, depth: int) -> None:
        pad = "  " * depth
        notes = []
        provider_urn = r.provider.rsplit("::", 1)[0] if r.provider else ""
        if provider_urn in providers:
            notes.append(f"provider={providers[provider_urn]}")
        if r.ignore_changes:
            notes.append("ignoreChanges=" + ",".join(r.ignore_changes))
        if r.delete_before_replace:
            notes.append("deleteBeforeReplace")
        suffix = f"  [{'; '.join(notes)}]" if notes else ""
        lines.append(f"{pad}{r.type} {r.name}{suffix}")
        if r.inputs:
            body = yaml.safe_dump(redact(r.inputs), sort_keys=True, default_flow_style=False, width=100)
            lines.extend(f"{pad}    {line}" for line in body.splitlines())
        for child in sorted(children[r.urn], key=lambda c: (c.type, c.name)):
            emit(child, depth + 1)

    for root in sorted(children[""], key=lambda c: (c.type, c.name)):
        emit(root, 0)
    lines += ["", "stack outputs:"]
    body = yaml.safe_dump(redact(run.outputs), sort_keys=True, default_flow_style=False, width=100)
    lines.extend(f"    {line}" for line in body.splitlines())
    return "\n".join(lines) + "\n"


def path_for(stack: str) -> Path:
    return SNAPSHOT_DIR / f"{stack}.txt"
