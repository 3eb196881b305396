"""Hypothesis profiles: bounded and deadline-free under CI (shared runners stall), roomier locally.

`HYPOTHESIS_PROFILE=thorough` runs many more examples when hunting a bug by hand.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings

settings.register_profile("ci", deadline=None, max_examples=60, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=60)
settings.register_profile("thorough", deadline=None, max_examples=2000)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI", "").lower() == "true" else "dev")
)


# ----------------------------------------------------------------------------- figures
# Measured figures tests want in the CI log (loss counts, rejoin times, sizes): pytest hides a
# passing test's output, so they are collected here and printed in one section at the end.
# Figures are never asserted on time; the tests assert behaviour.
_FIGURES: list[tuple[str, str]] = []

Figure = Callable[[str], None]


@pytest.fixture(scope="session")
def figure() -> Figure:
    def record(text: str) -> None:
        _FIGURES.append((os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0], text))

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("wgmesh figures (measured in this run)")
    for where, text in _FIGURES:
        terminalreporter.write_line(f"{text}  [{where.split('::')[0]}]")


# ----------------------------------------------------------------------------- markers
# A test that needs root and namespaces carries `netns`, `lab` or `vm` (pyproject.toml), so
# `pytest -m "not netns and not lab and not vm"` runs the pure tests only. Checked here: an
# unmarked test that starts `unshare`, `nsenter` or `ip netns` fails, naming the markers.
NAMESPACE_MARKERS = ("netns", "lab", "vm")
NAMESPACE_TOOLS = {"unshare", "nsenter"}


def creates_namespace(args: object) -> bool:
    """Whether a subprocess argv (or shell command string) starts a namespace tool (sudo or not)."""
    if isinstance(args, str | bytes | os.PathLike):
        words = os.fsdecode(args).split()
    elif isinstance(args, list | tuple):
        words = [os.fsdecode(a) for a in args if isinstance(a, str | bytes | os.PathLike)]
    else:
        return False
    words = [os.path.basename(w) for w in words if not w.startswith("-")]
    while words and words[0] in {"sudo", "env"}:
        words = words[1:]
    return bool(words) and (words[0] in NAMESPACE_TOOLS or words[:2] == ["ip", "netns"])


@pytest.fixture(autouse=True)
def _namespaces_only_in_marked_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if any(request.node.get_closest_marker(m) for m in NAMESPACE_MARKERS):
        return
    original = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        if creates_namespace(args):
            raise AssertionError(
                f"{request.node.nodeid} starts {args!r:.80}: mark it {' or '.join(NAMESPACE_MARKERS)}"
            )
        original(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
