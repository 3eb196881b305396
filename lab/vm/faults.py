"""Faults in the VM lab: reboot one VM and time its rejoin; kill one VM and count the others' loss.

Both read what the guests say on their report ports (lab/vm/guest_report.py) with the host's
clock: each line is stamped when the host first sees it (polled every POLL seconds). After its
first report every guest pings each peer once a second (`TICK` lines), which is how the host
sees the peers' side of the mesh without logging in.

- Reboot: Ctrl-Alt-Del through QMP, a clean guest-side reboot by systemd (QEMU is told to
  reset rather than exit on reboot); `system_reset` only if the guest has not reset within
  REBOOT_GRACE. Boot completion is the reporter's START line (its unit runs after cloud-final).
  Rejoined = the rebooted guest has pinged every peer (MESH up, which needs a handshake with
  each), reported a handshake with every peer, and every peer's TICK reached it again.
- Kill: SIGKILL to one QEMU by PID; every TICK between the surviving guests in the window is
  counted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.core.errors import LabError
from lab.core.manifest import LabNode
from lab.core.processes import alive
from lab.vm.driver import Lab
from lab.vm.report import LINE_RE, NodeReport, apply_fact

POLL = 0.25
REBOOT_GRACE = 60.0  # seconds for the guest's clean shutdown before a hard reset
REJOIN_TIMEOUT = 300.0  # seconds from the reset until the rebooted guest has rejoined


@dataclass(frozen=True)
class Line:
    at: float  # host time.monotonic() when first seen
    node: str
    fact: str
    rest: str


class ReportTail:
    """New complete `WGLAB` lines of one report file, from where it ended when the tail started."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.partial = b""

    def poll(self) -> list[Line]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        chunks = (self.partial + data).split(b"\n")
        self.partial = chunks.pop()
        now = time.monotonic()
        lines = []
        for raw in chunks:
            match = LINE_RE.search(raw.decode(errors="replace").replace("\r", ""))
            if match:
                lines.append(Line(now, match.group(1), match.group(2), match.group(3) or ""))
        return lines


class Tails:
    """Tails of several guests' report files; `lines` keeps everything seen, in arrival order."""

    def __init__(self, lab: Lab, nodes: Iterable[LabNode]) -> None:
        self.tails = [ReportTail(lab.paths(n.name).report) for n in nodes]
        self.lines: list[Line] = []

    def poll(self) -> list[Line]:
        new = [line for tail in self.tails for line in tail.poll()]
        self.lines += new
        return new


def tick_states(line: Line) -> dict[str, bool]:
    """`TICK <n> 10.77.0.2=ok 10.77.0.3=lost` -> {address: answered}."""
    words = line.rest.split()[1:]
    return {w.split("=", 1)[0]: w.endswith("=ok") for w in words if "=" in w}


# ----------------------------------------------------------------------------- QMP


class Qmp:
    """A minimal QMP client: commands and the events that arrive meanwhile (one JSON per line)."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self._read()  # greeting
        self.execute("qmp_capabilities")

    def _read(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message; TimeoutError when none arrives within `timeout` (default: the socket's)."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("QMP closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def execute(self, command: str, **arguments: Any) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            message = self._read()
            if "event" in message:
                self.events.append(message)
            elif "error" in message:
                raise LabError(f"QMP {command}: {message['error'].get('desc', message['error'])}")
            elif "return" in message:
                return message["return"]

    def wait_event(self, name: str, timeout: float) -> dict[str, Any] | None:
        end = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event["event"] == name:
                    self.events.remove(event)
                    return event
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                message = self._read(timeout=min(left, 5.0))
            except TimeoutError:
                continue
            if "event" in message:
                self.events.append(message)

    def close(self) -> None:
        self.sock.close()


CTRL_ALT_DELETE = [{"type": "qcode", "data": key} for key in ("ctrl", "alt", "delete")]


# ----------------------------------------------------------------------------- reboot


@dataclass
class RebootResult:
    node: str
    clean: bool  # the guest rebooted itself on Ctrl-Alt-Del (False: hard reset)
    reset_to_boot: float | None = None  # s from the reset until boot completed (reporter START)
    rejoin: float | None = None  # s from boot completion until rejoined (None: never)
    own_mesh: float | None = None  # s from boot completion: the guest pinged every peer
    peer_pings: dict[str, float] = field(default_factory=dict)  # peer -> s until its TICK reached us
    report: NodeReport | None = None  # the rebooted guest's second report
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        how = "Ctrl-Alt-Del (clean)" if self.clean else "hard reset"
        peers = ", ".join(f"{p} {s:+.1f} s" for p, s in sorted(self.peer_pings.items())) or "none"
        return (
            f"reboot {self.node} by {how}: boot completed {_fmt(self.reset_to_boot)} after the reset; "
            f"rejoined {_fmt(self.rejoin)} after boot completion (own pings to every peer "
            f"{_fmt(self.own_mesh)}, peers' pings back: {peers})"
        )


def _fmt(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


def reboot(lab: Lab, node: LabNode, timeout: float = REJOIN_TIMEOUT) -> RebootResult:
    """Reboot `node` from inside (Ctrl-Alt-Del) and time its rejoin against its peers' TICKs."""
    peers = [n for n in lab.nodes if n.name != node.name]
    tails = Tails(lab, lab.nodes)
    qmp = Qmp(lab.paths(node.name).qmp)
    try:
        qmp.execute("set-action", reboot="reset")  # the lab runs QEMU with -no-reboot
        qmp.execute("send-key", keys=CTRL_ALT_DELETE)
        event = qmp.wait_event("RESET", REBOOT_GRACE)
        clean = event is not None
        if not clean:
            qmp.execute("system_reset")
            qmp.wait_event("RESET", 10)
        reset_at = time.monotonic()
    finally:
        qmp.close()
    tails.poll()  # lines written before the reset belong to the old boot
    result = RebootResult(node.name, clean)
    boot_at: float | None = None
    mesh_at: float | None = None
    peer_at: dict[str, float] = {}
    report = NodeReport(node.name)
    target = str(node.address)
    deadline = reset_at + timeout
    while time.monotonic() < deadline:
        for line in tails.poll():
            if line.node == node.name:
                if line.fact == "START":
                    boot_at, report = line.at, NodeReport(node.name)
                if boot_at is not None:
                    apply_fact(report, line.fact, line.rest)
                    if line.fact == "MESH" and line.rest.startswith("up") and mesh_at is None:
                        mesh_at = line.at
            elif line.fact == "TICK" and line.node not in peer_at and tick_states(line).get(target):
                peer_at[line.node] = line.at
        if boot_at is not None and report.ended and len(peer_at) == len(peers):
            break
        time.sleep(POLL)
    result.report = report
    if boot_at is None:
        result.problems.append(f"{node.name} never reported boot completion after the reset")
        return result
    result.reset_to_boot = round(boot_at - reset_at, 1)
    result.peer_pings = {p: round(t - boot_at, 1) for p, t in peer_at.items()}
    if mesh_at is not None:
        result.own_mesh = round(mesh_at - boot_at, 1)
    missing = [p.name for p in peers if p.name not in peer_at]
    if missing:
        result.problems.append(f"no ping from {', '.join(missing)} reached {node.name} after the reboot")
    if mesh_at is None:
        result.problems.append(f"{node.name} did not reach every peer after the reboot (MESH {report.mesh})")
    for p in peers:
        if report.handshakes.get(p.public_key) is None:
            result.problems.append(f"{node.name}: no handshake with {p.name} after the reboot")
    if not result.problems and mesh_at is not None:
        result.rejoin = round(max(mesh_at, *peer_at.values()) - boot_at, 1)
    return result


# ----------------------------------------------------------------------------- kill


@dataclass
class KillResult:
    node: str
    pid: int
    gone: bool
    sent: dict[str, int] = field(default_factory=dict)  # "a -> b" -> TICK pings in the window
    lost: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        pairs = ", ".join(f"{k}: {self.lost[k]} lost of {self.sent[k]}" for k in sorted(self.sent))
        return f"kill {self.node} (QEMU {self.pid}, gone: {self.gone}): survivors' pings {pairs}"


def kill(lab: Lab, node: LabNode, before: float = 5.0, after: float = 20.0) -> KillResult:
    """SIGKILL `node`'s QEMU; count the survivors' TICK pings to each other from `before` s
    before the kill until `after` s after it."""
    survivors = [n for n in lab.nodes if n.name != node.name]
    tails = Tails(lab, survivors)
    start = time.monotonic()
    while time.monotonic() - start < before:
        tails.poll()
        time.sleep(POLL)
    qemu = lab.qemu(node.name)
    if alive(qemu):
        os.kill(qemu.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    while time.monotonic() - killed_at < 5 and alive(qemu):
        time.sleep(0.1)
    result = KillResult(node.name, qemu.pid, not alive(qemu))
    while time.monotonic() - killed_at < after:
        tails.poll()
        time.sleep(POLL)
    tails.poll()
    address = {n.name: str(n.address) for n in survivors}
    for src in survivors:
        for dst in survivors:
            if src is dst:
                continue
            key = f"{src.name} -> {dst.name}"
            states = [
                tick_states(line).get(address[dst.name])
                for line in tails.lines
                if line.node == src.name and line.fact == "TICK"
            ]
            result.sent[key] = sum(s is not None for s in states)
            result.lost[key] = sum(s is False for s in states)
    return result
