"""Remove what the netns lab created, and only that: processes by PID, mounts, namespaces, files.

Processes are found by the network namespace they live in (every process the lab starts
inside a node, wireguard-go included, lives in one of its namespaces) plus the PIDs recorded
in the state file, each checked against its start time so a reused PID is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from lab.core.proc import NETNS_DIR, LabError, run
from lab.core.state import LabState, Layout, ProcessRecord, load_state
from lab.netns.topology import namespace_inode

Log = Callable[[str], None]


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
    """SIGTERM, wait up to `grace`, then SIGKILL; returns what would not die."""
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


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest (latest) first."""
    prefix = str(root)
    points: list[str] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return list(reversed(points))


def _unescape(field: str) -> str:
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def owned_namespaces(state: LabState) -> tuple[dict[str, int], list[str]]:
    """({name: inode} of the state's namespaces that still exist and are the ones we made,
    [names that exist but were replaced by someone else])."""
    owned: dict[str, int] = {}
    replaced: list[str] = []
    for record in state.namespaces:
        inode = namespace_inode(record.name)
        if inode is None:
            continue
        if record.inode is None or record.inode == inode:
            owned[record.name] = inode
        else:
            replaced.append(record.name)
    return owned, replaced


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while cleaning up, so a second Ctrl-C cannot leave debris."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def tear_down(layout: Layout, log: Log = lambda _: None) -> None:
    """Everything the state file lists, then the lab directory; LabError if something stays."""
    with shielded():
        state = load_state(layout)
        problems: list[str] = []
        owned: dict[str, int] = {}
        if state is not None:
            owned, replaced = owned_namespaces(state)
            for name in replaced:
                problems.append(f"namespace {name} was replaced by someone else: left alone")
            recorded = [r for r in state.processes if alive(r)]
            stuck = stop_processes([*processes_in(set(owned.values())), *recorded])
            problems += [f"process {r.pid} ({r.what}) would not stop" for r in stuck]
        for point in mounts_under(layout.root):
            if run(["umount", point], check=False).returncode != 0:
                run(["umount", "--lazy", point], check=False)
        for name in owned:
            run(["ip", "netns", "delete", name], check=False)
            if (NETNS_DIR / name).exists():
                problems.append(f"namespace {name} could not be deleted")
        left = mounts_under(layout.root)
        problems += [f"still mounted: {p}" for p in left]
        if not left and layout.root.exists():
            shutil.rmtree(layout.root)
            with contextlib.suppress(OSError):
                layout.root.parent.rmdir()  # /tmp/wgmesh-lab, if nothing else lives there
        if state is not None and not state.owns_render_dir:
            log(f"kept the render dir you gave: {state.render_dir}")
        if problems:
            raise LabError("tear-down incomplete: " + "; ".join(problems))
        log(f"removed {len(owned)} namespaces and {layout.root}")
