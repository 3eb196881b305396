"""Traffic the checks send between lab namespaces: ping, wg handshakes, bounded TCP transfers.

Small, reusable probes; the checks (lab.checks, lab.negative, lab.mtu) decide what they mean.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from lab.core.errors import LabError
from lab.core.proc import NODE_ENV, Place, python_argv, run_in
from lab.netns.running import Address

WG = "wg0"
IPV4_ICMP_OVERHEAD = 28  # IPv4 header + ICMP header: ping -s payload for a packet of the MTU
TCP_IPV4_OVERHEAD = 40  # IPv4 + TCP headers: MSS for a path MTU
PROBE_PORT = 5201
_SENT_RECEIVED = re.compile(r"(\d+) packets transmitted, (\d+) received")
_RTT = re.compile(r"= [\d.]+/([\d.]+)/")
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Ping:
    sent: int
    received: int
    rtt_ms: float | None

    @property
    def ok(self) -> bool:
        return self.received > 0


def ping(
    place: Place,
    dst: Address | str,
    *,
    count: int = 3,
    size: int | None = None,
    df: bool = False,
    source: str | None = None,
    deadline: int = 10,
) -> Ping:
    """`ping` from a lab place; one reply is enough (the first may wait on a handshake).

    A deadline, not a per-reply timeout: a healthy pair returns as soon as `count` replies are
    in, while userspace WireGuard on a loaded 2-core CI machine can take a second per reply.
    Checks that expect silence pass a short deadline, since they always wait all of it.
    """
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-w", str(deadline)]
    if df:
        argv += ["-M", "do"]
    if size is not None:
        argv += ["-s", str(size)]
    if source is not None:
        argv += ["-I", source]
    proc = run_in(place, *argv, str(dst), check=False, timeout=deadline + 5)
    counts = _SENT_RECEIVED.search(proc.stdout)
    rtt = _RTT.search(proc.stdout)
    return Ping(
        sent=int(counts.group(1)) if counts else 0,
        received=int(counts.group(2)) if counts else 0,
        rtt_ms=float(rtt.group(1)) if rtt else None,
    )


def latest_handshakes(place: Place, iface: str = WG) -> dict[str, int]:
    """Peer public key -> unix time of the latest handshake (0: none). Never reads private keys."""
    return parse_latest_handshakes(run_in(place, "wg", "show", iface, "latest-handshakes").stdout)


def parse_latest_handshakes(text: str) -> dict[str, int]:
    """`wg show <if> latest-handshakes` output (from a namespace or over SSH) as a dict."""
    return {k: int(v) for k, v in _per_peer(text).items() if v.isdigit()}


def peer_endpoints(place: Place, iface: str = WG) -> dict[str, str]:
    """Peer public key -> Endpoint ("ip:port"; "(none)" for a peer that has sent nothing)."""
    return _per_peer(run_in(place, "wg", "show", iface, "endpoints").stdout)


def _per_peer(text: str) -> dict[str, str]:
    """`<public key>\t<value>` lines, as `wg show <if> <field>` prints them."""
    pairs = (line.partition("\t") for line in text.splitlines())
    return {key.strip(): value.strip() for key, _, value in pairs if value.strip()}


def parallel(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(fn, items))


@dataclass(frozen=True)
class Transfer:
    connected: bool
    sent: int
    received: int


def transfer(src: Place, dst: Place, address: Address, seconds: float, port: int = PROBE_PORT) -> Transfer:
    """A bounded TCP transfer src -> dst (lab.tcpprobe); `received` is what arrived."""
    timing = ["--port", str(port), "--seconds", str(seconds)]
    server = subprocess.Popen(
        dst.argv(*python_argv("lab.core.tcpprobe", "serve", "--bind", str(address), *timing)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=dict(NODE_ENV),
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise LabError(f"{dst.label}: TCP probe server did not start")
        sender = run_in(
            src,
            *python_argv("lab.core.tcpprobe", "send", "--to", str(address), *timing),
            timeout=seconds + 15,
        )
        out, _ = server.communicate(timeout=seconds + 10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=5)
    sent = json.loads(sender.stdout.strip().splitlines()[-1])
    received = json.loads(out.strip().splitlines()[-1])
    return Transfer(bool(sent.get("connected")), int(sent.get("sent", 0)), int(received.get("received", 0)))


def allowed_ips(place: Place) -> dict[str, list[str]]:
    """Peer public key -> AllowedIPs on the node's wg0."""
    out = run_in(place, "wg", "show", WG, "allowed-ips").stdout
    result: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, nets = line.partition("\t")
        result[key.strip()] = [n for n in nets.split() if n != "(none)"]
    return result


def ping_text(p: Ping) -> str:
    if not p.ok:
        return f"lost ({p.received}/{p.sent})"
    return f"ok {p.rtt_ms:.2f} ms" if p.rtt_ms is not None else "ok"
