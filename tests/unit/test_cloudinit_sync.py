"""The live-update apply script as an artifact: valid bash, shellcheck-clean, no secret in it.

Its behaviour on a real wg0 (sync in place, route diff, restart only when needed, rollback)
is proven in the netns lab (tests/lab/test_day2.py).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess

import pytest

from cloudinit.sync import SCRIPT_NAME, apply_command, apply_script, parse_summary

KEY_RE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")


def test_script_is_valid_bash() -> None:
    proc = subprocess.run(["bash", "-n"], input=apply_script(), text=True, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_script_is_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck is not installed (scripts/install-debs)")
        pytest.skip("shellcheck is not installed")
    proc = subprocess.run(
        ["shellcheck", "-s", "bash", "-"], input=apply_script(), text=True, capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("sudo", [True, False])
def test_command_runs_the_script_with_bash_and_takes_the_conf_on_stdin(sudo: bool) -> None:
    argv = shlex.split(apply_command(sudo=sudo))
    prefix = ["sudo", "-n", "--"] if sudo else []
    assert argv == [*prefix, "bash", "-c", apply_script(), SCRIPT_NAME]


def test_command_holds_no_key_and_names_only_wg0() -> None:
    command = apply_command()
    assert not KEY_RE.search(command)
    assert "/etc/wireguard" in command and "IF=wg0" in command
    assert "set -x" not in command  # a trace would print the compared private keys


def test_interface_name_is_quoted() -> None:
    assert "IF=wg1\n" in apply_script("wg1")
    assert "IF='a b'\n" in apply_script("a b")


def test_parse_summary_reads_the_last_summary_line() -> None:
    out = "[#] wg-quick noise\nwgmesh-apply: wg0 action=sync peers=3 routes_added=1 seconds=0.10\n"
    assert parse_summary(out) == {
        "interface": "wg0",
        "action": "sync",
        "peers": "3",
        "routes_added": "1",
        "seconds": "0.10",
    }
    with pytest.raises(ValueError):
        parse_summary("nothing here")
