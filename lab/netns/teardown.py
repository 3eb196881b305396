"""Remove what the netns lab created, and only that: processes by PID, mounts, namespaces, files.

Processes are found by the network namespace they live in (every process the lab starts
inside a node, wireguard-go included, lives in one of its namespaces) plus the PIDs recorded
in the state file, each checked against its start time so a reused PID is never signalled.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
from collections.abc import Callable, Iterator

from lab.core.errors import LabError
from lab.core.mounts import unmount_under
from lab.core.network import owned_namespaces, remove_network
from lab.core.processes import alive, processes_in, stop_processes
from lab.core.state import load_state
from lab.netns.layout import Layout

Log = Callable[[str], None]


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
        state = load_state(layout.state_file)
        problems: list[str] = []
        owned: dict[str, int] = {}
        if state is not None:
            owned, _ = owned_namespaces(state)
            recorded = [r for r in state.processes if alive(r)]
            stuck = stop_processes([*processes_in(set(owned.values())), *recorded])
            problems += [f"process {r.pid} ({r.what}) would not stop" for r in stuck]
        left = unmount_under(layout.root)
        if state is not None:
            problems += remove_network(state)
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
