"""Names and paths of one netns lab, so tests and benchmarks never meet a `make lab`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.core.state import STATE_FILE

NS_PREFIX = "wgm-"
BRIDGE = "br0"
DEFAULT_ROOT = Path("/tmp/wgmesh-lab/netns")


@dataclass(frozen=True)
class Layout:
    """Files under `root` (0700), namespaces named `prefix`*.

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
        return self.root / STATE_FILE

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
