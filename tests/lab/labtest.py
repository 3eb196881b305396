"""What every netns lab test file needs: the CI-aware prerequisite gate, its own namespaces,
and the checks that a test's lab was not there before and is entirely gone afterwards."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

from lab.core.mounts import mounts_under
from lab.core.proc import NETNS_DIR
from lab.core.processes import alive
from lab.core.state import ProcessRecord, load_state
from lab.netns import driver
from lab.netns.layout import Layout
from tools.render import render_to


def require_netns_lab(*tools: str) -> None:
    """Skip with the reason outside CI; under CI=true a lab that cannot run fails the run instead."""
    reason = driver.unavailable_reason()
    missing = [t for t in tools if shutil.which(t) is None]
    if reason is None and missing:
        reason = f"missing tools for this lab test: {' '.join(missing)} (scripts/install-debs)"
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the netns lab cannot run: {reason}")
    pytest.skip(reason)


def namespaces_with_prefix(prefix: str) -> list[str]:
    """The network namespaces a test layout owns (it asserts none are left afterwards)."""
    return sorted(p.name for p in NETNS_DIR.glob(f"{prefix}*")) if NETNS_DIR.is_dir() else []


def render_stack(stack: str | Path, out: Path, keys: Path | None = None) -> Path:
    """`make render` of a stack (name or file) into `out`, with fresh keys or those in `keys`."""
    render_to(stack, out, keys)
    return out


def require_clean(layout: Layout) -> None:
    """Fail when an earlier run left this layout's lab behind (a state file or namespaces)."""
    left = namespaces_with_prefix(layout.prefix)
    if load_state(layout.state_file) is not None or left:
        pytest.fail(f"a previous test run left a lab behind: {left} {layout.root}")


def assert_all_removed(layout: Layout, started: Iterable[ProcessRecord]) -> None:
    """Nothing of the lab is left: its namespaces, mounts and directory, the processes it started."""
    assert namespaces_with_prefix(layout.prefix) == []
    assert mounts_under(layout.root) == []
    assert not layout.root.exists()
    assert [p for p in started if alive(p)] == []
