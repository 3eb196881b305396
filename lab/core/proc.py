"""Run the fixed system tools the lab drives, inside namespaces it created.

Every failure becomes a LabError naming the step. Output is captured and only its tail is
quoted, because nothing the lab runs is given a secret on its command line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.core.errors import LabError

NETNS_DIR = Path("/run/netns")
# The environment of every command the lab runs, like the one cloud-init hands runcmd: nothing
# inherited (a caller's PYTHONPATH would make cloud-init import this repo's `cloudinit` package;
# LOG_LEVEL would make wireguard-go keep our pipes open).
NODE_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Place:
    """Where a command runs: a lab network namespace, plus the node's mount namespace if any."""

    label: str
    netns: str
    mount_ns: Path | None = None

    def argv(self, *cmd: str) -> list[str]:
        prefix = ["nsenter", f"--net={NETNS_DIR / self.netns}"]
        if self.mount_ns is not None:
            prefix.append(f"--mount={self.mount_ns}")
        return [*prefix, "--", *cmd]


def run(
    argv: Sequence[str],
    *,
    what: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    stdin_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; LabError on a non-zero exit (when `check`) or a timeout.

    `env` defaults to NODE_ENV, never the caller's environment.
    """
    label = what or _short(argv)
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(NODE_ENV if env is None else env),
            input=stdin_text,
            stdin=None if stdin_text is not None else subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"{label}: timed out after {timeout:g} s") from None
    except FileNotFoundError:
        raise LabError(f"{label}: {argv[0]} is not installed") from None
    if check and proc.returncode != 0:
        raise LabError(f"{label}: exit {proc.returncode}: {tail(proc.stderr or proc.stdout)}")
    return proc


def run_in(
    place: Place,
    *cmd: str,
    check: bool = True,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    stdin_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`run` inside a lab place."""
    return run(
        place.argv(*cmd),
        what=f"{place.label}: {_short(cmd)}",
        check=check,
        timeout=timeout,
        env=env,
        stdin_text=stdin_text,
    )


def python_argv(module: str, *args: str) -> list[str]:
    """This interpreter running one of our stdlib-only modules (inside a namespace)."""
    return ["env", f"PYTHONPATH={REPO_ROOT}", "PYTHONDONTWRITEBYTECODE=1", _python(), "-m", module, *args]


def _python() -> str:
    return sys.executable or "python3"


# A base64 WireGuard key (32 bytes): `wg` quotes a malformed config line, key included.
_KEY = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")


def redact_keys(text: str) -> str:
    return _KEY.sub("<key>", text)


def tail(text: str, lines: int = 4) -> str:
    """The last non-empty lines of tool output, keys redacted, without wireguard-go's banner."""
    banner = ("┌", "│", "└")
    kept = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(banner)]
    return redact_keys(" | ".join(kept[-lines:])) or "(no output)"


def _short(argv: Sequence[str]) -> str:
    return " ".join(argv[:6]) + (" ..." if len(argv) > 6 else "")


def is_root() -> bool:
    return os.geteuid() == 0
