"""Tests by marker: `netns`, `lab` and `vm` are defined, and an unmarked test cannot start a namespace.

tests/conftest.py fails an unmarked test that starts `unshare`, `nsenter` or `ip netns`, so
`pytest -m "not netns and not lab and not vm"` (make test-fast) never needs root.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_the_three_markers_are_defined() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    names = [m.split(":", 1)[0] for m in config["markers"]]
    assert {"netns", "lab", "vm"} <= set(names)
    assert "--strict-markers" in config["addopts"]  # a misspelt marker is an error, not a new marker


@pytest.mark.parametrize(
    "argv",
    [
        ["unshare", "--net", "true"],
        ["/usr/bin/unshare", "--mount", "--net", "--", "sh", "-c", "true"],
        ["sudo", "-n", "--", "nsenter", "--net=/run/netns/x", "true"],
        ["ip", "netns", "add", "wgm-never"],
        "unshare --net true",
    ],
)
def test_an_unmarked_test_may_not_start_a_namespace(argv: list[str] | str) -> None:
    with pytest.raises(AssertionError, match="mark it netns or lab or vm"):
        subprocess.run(argv, shell=isinstance(argv, str), check=False)


def test_other_commands_run_as_ever() -> None:
    proc = subprocess.run(["sh", "-c", "echo ip netns"], capture_output=True, text=True, check=True)
    assert proc.stdout == "ip netns\n"
