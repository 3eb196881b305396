"""What every netns lab test file needs: the CI-aware prerequisite gate and its own namespaces."""

from __future__ import annotations

import os
import shutil

import pytest

from lab.core.proc import NETNS_DIR
from lab.netns import driver as netns


def require_netns_lab(*tools: str) -> None:
    """Skip with the reason outside CI; under CI=true a lab that cannot run fails the run instead."""
    reason = netns.unavailable_reason()
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
