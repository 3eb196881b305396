"""What a lab created, on disk, so `down` removes exactly that and nothing else (both drivers).

Everything is recorded *before* it is created (a namespace's inode filled in right after), so
an interrupted bring-up still knows what it owns. A namespace of the same name that is not in
the state file, or whose inode differs, belongs to someone else and is never touched; a
process is ours only while its PID *and* start time match the record.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tools.secretfiles import private_dir, write_private

STATE_FILE = "state.json"


@dataclass
class NamespaceRecord:
    name: str
    inode: int | None  # None between "about to create" and "created"


@dataclass
class LinkRecord:
    """A link the lab added inside one of its namespaces (removed before the namespace)."""

    namespace: str
    name: str


@dataclass
class ProcessRecord:
    pid: int
    start: int  # /proc/<pid>/stat starttime: a reused PID is not ours
    what: str


@dataclass
class LabState:
    """One lab's record, saved at `path` (which is not itself part of the file).

    `files` are paths the lab created outside its state directory (removed by `down`);
    `nodes` and `timings` are for the reader (`check`, benchmarks).
    """

    path: Path
    driver: str = "netns"
    stack: str | None = None
    render_dir: str = ""
    owns_render_dir: bool = False
    nodes: list[str] = field(default_factory=list)
    namespaces: list[NamespaceRecord] = field(default_factory=list)
    links: list[LinkRecord] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def owns(self, namespace: str) -> bool:
        return any(r.name == namespace for r in self.namespaces)

    def to_json(self) -> str:
        doc = asdict(self)
        del doc["path"]
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, path: Path) -> LabState:
        raw: dict[str, Any] = json.loads(text)
        return cls(
            path=path,
            driver=str(raw.get("driver", "netns")),
            stack=raw.get("stack"),
            render_dir=str(raw.get("render_dir", "")),
            owns_render_dir=bool(raw.get("owns_render_dir", False)),
            nodes=[str(n) for n in raw.get("nodes", [])],
            namespaces=[NamespaceRecord(**r) for r in raw.get("namespaces", [])],
            links=[LinkRecord(**r) for r in raw.get("links", [])],
            mounts=[str(m) for m in raw.get("mounts", [])],
            processes=[ProcessRecord(**r) for r in raw.get("processes", [])],
            files=[str(f) for f in raw.get("files", [])],
            timings={str(k): float(v) for k, v in raw.get("timings", {}).items()},
        )

    def save(self) -> None:
        """Atomic replace, 0600, never through a symlink (the file names no secret, but it is
        root's business only); the directory is created 0700 if missing."""
        if not self.path.parent.exists():
            private_dir(self.path.parent)
        tmp = self.path.with_suffix(".tmp")
        write_private(tmp, self.to_json())
        os.replace(tmp, self.path)


def load_state(path: Path) -> LabState | None:
    """The state saved at `path`, or None when no lab recorded one there."""
    try:
        return LabState.from_json(path.read_text(encoding="utf-8"), path)
    except FileNotFoundError:
        return None


def foreign_namespaces(wanted: list[str], existing: set[str], state: LabState | None) -> list[str]:
    """Names the lab would create that already exist and that the lab did not create."""
    return [n for n in wanted if n in existing and (state is None or not state.owns(n))]
