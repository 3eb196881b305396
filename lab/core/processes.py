"""Processes the lab started: found by PID and start time, stopped the same way for both drivers.

A PID alone is not an identity (PIDs are reused); a `ProcessRecord` is ours only while
/proc/<pid>/stat still shows the start time recorded with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from lab.core.errors import LabError
from lab.core.state import ProcessRecord


def process_start(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live process, None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def alive(record: ProcessRecord) -> bool:
    return process_start(record.pid) == record.start


def process_record(pid: int, what: str) -> ProcessRecord:
    """The record of a process just started (LabError if it is already gone)."""
    start = process_start(pid)
    if start is None:
        raise LabError(f"{what} (PID {pid}) exited right after it started")
    return ProcessRecord(pid, start, what)


def processes_in(netns_inodes: set[int]) -> list[ProcessRecord]:
    """Every process whose network namespace is one of `netns_inodes`."""
    found: list[ProcessRecord] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            inode = os.stat(entry / "ns" / "net").st_ino
            if inode not in netns_inodes:
                continue
            comm = (entry / "comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        start = process_start(int(entry.name))
        if start is not None:
            found.append(ProcessRecord(int(entry.name), start, comm))
    return found


def stop_processes(records: Iterable[ProcessRecord], grace: float = 2.0) -> list[ProcessRecord]:
    """SIGTERM, wait up to `grace`, then SIGKILL; returns what would not die (only ours are signalled)."""
    targets = {r.pid: r for r in records if alive(r)}
    for r in targets.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(r.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(r) for r in targets.values()):
        time.sleep(0.05)
    for r in targets.values():
        if alive(r):
            with contextlib.suppress(ProcessLookupError):
                os.kill(r.pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(r) for r in targets.values()):
        time.sleep(0.05)
    return [r for r in targets.values() if alive(r)]
