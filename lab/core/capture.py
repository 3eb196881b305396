"""tcpdump inside a lab namespace, as a context manager that hands back the packet lines.

Used to prove what crosses a wire: only WireGuard UDP on the underlay, the MSS a SYN-ACK
carries after a forwarding node, and which source addresses a node's wg0 delivers.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from types import TracebackType

from lab.core.errors import LabError
from lab.core.proc import NODE_ENV, Place

_MSS = re.compile(r"\bmss (\d+)")


class Capture:
    """`with Capture(place, "wg0", "icmp") as cap: ...` then `cap.lines` (tcpdump -nn -t)."""

    def __init__(self, place: Place, iface: str, bpf: str, *, start_timeout: float = 5.0) -> None:
        self.place, self.iface, self.bpf = place, iface, bpf
        self.start_timeout = start_timeout
        self.lines: list[str] = []
        self._stderr: list[str] = []
        self._listening = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._readers: list[threading.Thread] = []

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def __enter__(self) -> Capture:
        argv = self.place.argv("tcpdump", "-nn", "-t", "-l", "--immediate-mode", "-i", self.iface, self.bpf)
        self._proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=dict(NODE_ENV),
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._readers:
            t.start()
        if not self._listening.wait(self.start_timeout):
            self._kill()
            raise LabError(
                f"{self.place.label}: tcpdump on {self.iface} did not start: {' '.join(self._stderr)}"
            )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> list[str]:
        """Let in-flight packets land, then stop tcpdump with SIGINT (it flushes) and collect."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._join()
            return self.lines
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._kill()
        self._join()
        return self.lines

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.strip())
            if "listening on" in line:
                self._listening.set()

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)

    def _join(self) -> None:
        for t in self._readers:
            t.join(timeout=5)


def mss_values(lines: list[str]) -> list[int]:
    """MSS options seen in tcpdump lines."""
    return [int(m.group(1)) for line in lines if (m := _MSS.search(line))]
