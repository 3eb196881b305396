"""What the VM lab tests share: the repository root and the CI-aware gate for booting VMs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI") == "true"
VM_TOOLS = (
    "qemu-system-x86_64", "qemu-img", "mmdebstrap", "cloud-localds", "mkfs.ext4", "ip", "unshare",
    "ssh", "ssh-keygen",
)  # fmt: skip


def vm_host_problem() -> str | None:
    if os.geteuid() != 0:
        return "VM lab needs root (network namespaces, taps)"
    missing = [t for t in VM_TOOLS if shutil.which(t) is None]
    if missing:
        return f"VM lab needs {', '.join(missing)} (scripts/install-debs)"
    return None


def require_vm_host() -> None:
    problem = vm_host_problem()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true: {problem}")
    pytest.skip(problem)
