"""`make help` (the default goal) names every target the Makefile declares, and nothing else.

A target missing from the list is a command a newcomer never finds; a listed name that is no
target is a command that fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAKEFILE = REPO / "Makefile"


def phony_targets(makefile_text: str) -> set[str]:
    """Every name on the Makefile's `.PHONY:` lines (continuation lines joined)."""
    joined = makefile_text.replace("\\\n", " ")
    names: set[str] = set()
    for line in joined.splitlines():
        if line.startswith(".PHONY:"):
            names.update(line.removeprefix(".PHONY:").split())
    return names


def help_targets(help_text: str) -> set[str]:
    """The target each `make help` line starts with (`make <target> ...`)."""
    return {m.group(1) for m in re.finditer(r"^make ([a-z][a-z0-9-]*)", help_text, re.M)}


def make_help() -> str:
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed: it is how every command of this project runs")
    result = subprocess.run([make, "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True)
    return result.stdout


def test_phony_targets_are_read_from_the_makefile() -> None:
    text = ".PHONY: a b \\\n  c\nall:\n\t@echo .PHONY: not-this\n.PHONY: d\n"
    assert phony_targets(text) == {"a", "b", "c", "d"}


def test_help_lines_are_read_by_their_first_target() -> None:
    text = "make lab        up (make lab-down)\nmake lab-down   down\n  make indented\nnot make x\n"
    assert help_targets(text) == {"lab", "lab-down"}


def test_make_help_lists_every_phony_target_and_only_those() -> None:
    declared = phony_targets(MAKEFILE.read_text(encoding="utf-8"))
    assert {"help", "lab", "test", "test-fast", "lint", "clean"} <= declared
    listed = help_targets(make_help())
    assert declared - listed == set(), f"make help does not list: {sorted(declared - listed)}"
    assert listed - declared == set(), f"make help lists non-targets: {sorted(listed - declared)}"


def test_help_is_the_default_goal() -> None:
    make = shutil.which("make")
    assert make is not None
    plain = subprocess.run([make, "-s"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert plain == make_help()
