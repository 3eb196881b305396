"""What the netns lab created, on disk, so `down` removes exactly that and nothing else.

Every namespace is recorded *before* it is created (inode filled in right after), so an
interrupted bring-up still knows what it owns; a namespace of the same name that is not
in the state file belongs to someone else and is never touched.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NS_PREFIX = "wgm-"
BRIDGE = "br0"
DEFAULT_ROOT = Path("/tmp/wgmesh-lab/netns")


@dataclass(frozen=True)
class Layout:
    """Names and paths of one netns lab: files under `root` (0700), namespaces named `prefix`*.

    Tests and benchmarks use their own root and prefix, so they never meet a `make lab`.
    """

    root: Path = DEFAULT_ROOT
    prefix: str = NS_PREFIX

    @property
    def internet_ns(self) -> str:
        return f"{self.prefix}inet"

    def node_ns(self, node: str) -> str:
        return f"{self.prefix}node-{node}"

    def lan_ns(self, node: str) -> str:
        """The namespace standing for the network routed behind `node` (its `subnets`)."""
        return f"{self.prefix}lan-{node}"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def mount_ns_dir(self) -> Path:
        """Private bind mount holding one mount-namespace file per node."""
        return self.root / "mnt"

    @property
    def shim_dir(self) -> Path:
        return self.root / "shims"

    @property
    def render_dir(self) -> Path:
        return self.root / "render"

    def mount_ns(self, node: str) -> Path:
        return self.mount_ns_dir / node

    def node_dir(self, node: str) -> Path:
        return self.root / "nodes" / node


@dataclass
class NamespaceRecord:
    name: str
    inode: int | None  # None between "about to create" and "created"


@dataclass
class ProcessRecord:
    pid: int
    start: int  # /proc/<pid>/stat starttime: a reused PID is not ours
    what: str


@dataclass
class LabState:
    stack: str | None = None
    render_dir: str = ""
    owns_render_dir: bool = False
    nodes: list[str] = field(default_factory=list)
    namespaces: list[NamespaceRecord] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def owns(self, namespace: str) -> bool:
        return any(r.name == namespace for r in self.namespaces)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LabState:
        raw: dict[str, Any] = json.loads(text)
        return cls(
            stack=raw.get("stack"),
            render_dir=str(raw.get("render_dir", "")),
            owns_render_dir=bool(raw.get("owns_render_dir", False)),
            nodes=[str(n) for n in raw.get("nodes", [])],
            namespaces=[NamespaceRecord(**r) for r in raw.get("namespaces", [])],
            mounts=[str(m) for m in raw.get("mounts", [])],
            processes=[ProcessRecord(**r) for r in raw.get("processes", [])],
            timings={str(k): float(v) for k, v in raw.get("timings", {}).items()},
        )

    def save(self, layout: Layout) -> None:
        """Atomic replace, 0600 (the file names no secret, but it is root's business only)."""
        layout.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = layout.state_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.to_json())
        tmp.replace(layout.state_file)


def load_state(layout: Layout) -> LabState | None:
    try:
        return LabState.from_json(layout.state_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def foreign_namespaces(wanted: list[str], existing: set[str], state: LabState | None) -> list[str]:
    """Names the lab would create that already exist and that the lab did not create."""
    return [n for n in wanted if n in existing and (state is None or not state.owns(n))]
