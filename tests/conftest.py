"""Hypothesis profiles: bounded and deadline-free under CI (shared runners stall), roomier locally.

`HYPOTHESIS_PROFILE=thorough` runs many more examples when hunting a bug by hand.
"""

from __future__ import annotations

import os
from collections.abc import Callable

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
