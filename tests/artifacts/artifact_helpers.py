"""Shared pieces of the artifact tests: the real tools they need, rendered stacks, file readers.

Every stack is rendered once per session through the real CLI (`python -m tools.render`, fresh
keys), then each rendered file is handed to the real consumer (cloud-init, wg, nft, sysctl).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh import manifest
from mesh.manifest import MANIFEST_FILE, MeshManifest
from mesh.plan import build_plan
from mesh.plan_types import MeshPlan
from mesh.stackfile import load_spec, stack_name

REPO = Path(__file__).resolve().parents[2]
# Every stack users get, plus the test-only stacks that reach the hub, IPv6, NAT and no-PSK paths.
STACK_FILES = sorted((REPO / "stacks").glob("Pulumi.*.yaml")) + sorted(
    (Path(__file__).parent / "stacks").glob("Pulumi.*.yaml")
)
UNDER_CI = os.environ.get("CI") == "true"


def need_tool(name: str) -> str:
    """Path of a system tool; outside CI a missing tool skips, under CI=true it fails."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # nft, sysctl
    path = shutil.which(name, path=search)
    if path is None:
        message = f"{name} is not installed (scripts/install-debs installs it)"
        if UNDER_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def need_root() -> None:
    """Network-namespace checks (`unshare --net`) need root; same skip/fail rule as tools."""
    if os.geteuid() != 0:
        message = "needs root for a throwaway network namespace (unshare --net)"
        if UNDER_CI:
            pytest.fail(message)
        pytest.skip(message)


def run(argv: list[str], *, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, timeout=120)


@dataclass
class Rendered:
    """One stack rendered to disk, with the plan built independently from the same stack file."""

    stack: str
    out: Path
    plan: MeshPlan
    manifest: MeshManifest

    def user_data_path(self, node: str) -> Path:
        return self.out / node / "user-data"

    def user_data(self, node: str) -> dict[str, Any]:
        doc = yaml.safe_load(self.user_data_path(node).read_text())
        assert isinstance(doc, dict)
        return doc

    def written_file(self, node: str, path: str) -> str:
        (entry,) = [f for f in self.user_data(node)["write_files"] if f["path"] == path]
        content = entry["content"]
        assert isinstance(content, str)
        return content

    def client_conf_path(self, client: str) -> Path:
        return self.out / "clients" / f"{client}.conf"

    def wg_conf(self, member: str) -> str:
        """A member's wg conf: extracted from a node's user data, or a client's file."""
        if member in {c.name for c in self.plan.clients}:
            return self.client_conf_path(member).read_text()
        return self.written_file(member, "/etc/wireguard/wg0.conf")

    def members(self) -> list[str]:
        return [n.name for n in self.plan.nodes] + [c.name for c in self.plan.clients]


def render_stack_with_cli(stack_file: Path, out: Path) -> Rendered:
    result = run([sys.executable, "-m", "tools.render", "--stack", str(stack_file), "--out", str(out)])
    assert result.returncode == 0, result.stderr
    doc = manifest.load(out / MANIFEST_FILE)
    return Rendered(stack_name(stack_file), out, build_plan(load_spec(stack_file)), doc)


def is_wg_key(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == 32
    except ValueError:
        return False
