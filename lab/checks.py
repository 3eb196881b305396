"""Health checks of a running netns lab, as data: tests assert on them, `make lab` prints them.

Positive: every node pair pings over wg0 (with a handshake and a full-size don't-fragment
ping at the planned MTU), hosts behind routed subnets reach the nodes and each other, the
underlay carries nothing but WireGuard UDP, and a SYN-ACK crossing a forwarding node has its
MSS clamped. Negative: a node holding a wrong key for a peer cannot reach it, and a packet
from an address outside the sender's AllowedIPs is dropped by the receiver.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from lab.capture import Capture, mss_values
from lab.manifest import LabNode
from lab.proc import NODE_ENV, LabError, Place, python_argv, run_in
from lab.running import Address, NetnsLab
from lab.state import BRIDGE
from mesh.keys import private_key, public_key

WG = "wg0"
IPV4_ICMP_OVERHEAD = 28  # IPv4 header + ICMP header: ping -s payload for a packet of the MTU
TCP_IPV4_OVERHEAD = 40  # IPv4 + TCP headers: MSS for a path MTU
PROBE_PORT = 5201
_SENT_RECEIVED = re.compile(r"(\d+) packets transmitted, (\d+) received")
_RTT = re.compile(r"= [\d.]+/([\d.]+)/")
_UDP = re.compile(r"^IP (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+): UDP, length \d+$")
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


@dataclass(frozen=True)
class PairResult:
    """One direction of one node pair."""

    src: str
    dst: str
    address: str  # dst's overlay address
    handshake_age: float | None  # seconds since src's latest handshake with dst; None: never
    ping: Ping
    mtu: int  # planned wg0 MTU of src
    df_ping: Ping  # one packet of exactly `mtu` bytes, don't-fragment

    @property
    def ok(self) -> bool:
        return self.handshake_age is not None and self.ping.ok and self.df_ping.ok


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    skipped: bool = False


@dataclass(frozen=True)
class HealthReport:
    pairs: tuple[PairResult, ...]
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.pairs) and all(c.ok for c in self.checks)

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def pair(self, src: str, dst: str) -> PairResult:
        for p in self.pairs:
            if (p.src, p.dst) == (src, dst):
                return p
        raise KeyError((src, dst))


# ----------------------------------------------------------------------------- primitives


def ping(
    place: Place,
    dst: Address | str,
    *,
    count: int = 3,
    size: int | None = None,
    df: bool = False,
    source: str | None = None,
) -> Ping:
    """`ping` from a lab place; one reply is enough (the first may wait on a handshake)."""
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1"]
    if df:
        argv += ["-M", "do"]
    if size is not None:
        argv += ["-s", str(size)]
    if source is not None:
        argv += ["-I", source]
    proc = run_in(place, *argv, str(dst), check=False, timeout=count + 5)
    counts = _SENT_RECEIVED.search(proc.stdout)
    rtt = _RTT.search(proc.stdout)
    return Ping(
        sent=int(counts.group(1)) if counts else 0,
        received=int(counts.group(2)) if counts else 0,
        rtt_ms=float(rtt.group(1)) if rtt else None,
    )


def latest_handshakes(place: Place) -> dict[str, int]:
    """Peer public key -> unix time of the latest handshake (0: none). Never reads private keys."""
    out = run_in(place, "wg", "show", WG, "latest-handshakes").stdout
    result: dict[str, int] = {}
    for line in out.splitlines():
        key, _, ts = line.partition("\t")
        if ts.strip().isdigit():
            result[key.strip()] = int(ts)
    return result


def parallel(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(fn, items))


# ----------------------------------------------------------------------------- positive checks


def check_pairs(lab: NetnsLab) -> tuple[PairResult, ...]:
    """Every ordered node pair: ping, full-size DF ping at the planned MTU, handshake age."""
    pairs = [(a, b) for a in lab.nodes for b in lab.nodes if a.name != b.name]

    def probe(pair: tuple[LabNode, LabNode]) -> tuple[Ping, Ping]:
        a, b = pair
        where = lab.node(a.name)
        first = ping(where, b.address)
        full = ping(where, b.address, count=2, size=a.mtu - IPV4_ICMP_OVERHEAD, df=True)
        return first, full

    results = parallel(probe, pairs)
    now = time.time()
    handshakes = {n.name: latest_handshakes(lab.node(n.name)) for n in lab.nodes}
    out: list[PairResult] = []
    for (a, b), (first, full) in zip(pairs, results, strict=True):
        ts = handshakes[a.name].get(b.public_key, 0)
        out.append(
            PairResult(
                src=a.name,
                dst=b.name,
                address=str(b.address),
                handshake_age=round(max(0.0, now - ts), 1) if ts else None,
                ping=first,
                mtu=a.mtu,
                df_ping=full,
            )
        )
    return tuple(out)


def check_subnets(lab: NetnsLab) -> tuple[CheckResult, ...]:
    """Routed subnets across the mesh: nodes -> lan hosts, lan hosts -> nodes, lan -> lan."""
    probes: list[tuple[str, Place, Address]] = []
    hosts = lab.lan_hosts()
    for host in hosts:
        for n in lab.nodes:
            if n.name != host.router:
                probes.append(
                    (f"{n.name} -> {host.address} (behind {host.router})", lab.node(n.name), host.address)
                )
                probes.append((f"{host.address} (behind {host.router}) -> {n.name}", host.place, n.address))
        for other in hosts:
            if other.router != host.router and other.address.version == host.address.version:
                label = f"{host.address} (behind {host.router}) -> {other.address} (behind {other.router})"
                probes.append((label, host.place, other.address))

    def probe(p: tuple[str, Place, Address]) -> CheckResult:
        label, where, dst = p
        result = ping(where, dst)
        return CheckResult(f"subnet {label}", result.ok, _ping_text(result))

    return tuple(parallel(probe, probes))


def classify_underlay(lines: Sequence[str], endpoints: dict[str, int]) -> tuple[int, list[str]]:
    """(WireGuard packets, everything else) among tcpdump lines from the lab internet.

    A WireGuard packet is UDP between two node public IPs, from the sender's listen port to
    the receiver's.
    """
    wireguard = 0
    other: list[str] = []
    for line in lines:
        m = _UDP.match(line.strip())
        if (
            m
            and endpoints.get(m.group(1)) == int(m.group(2))
            and endpoints.get(m.group(3)) == int(m.group(4))
        ):
            wireguard += 1
        elif line.strip():
            other.append(line.strip())
    return wireguard, other


def check_underlay(lab: NetnsLab, lines: Sequence[str]) -> CheckResult:
    endpoints = {str(n.public_ip): n.listen_port for n in lab.nodes}
    wireguard, other = classify_underlay(lines, endpoints)
    ok = wireguard > 0 and not other
    detail = f"{wireguard} WireGuard UDP packets, {len(other)} other"
    if other:
        detail += ": " + "; ".join(other[:3])
    return CheckResult("underlay carries only WireGuard UDP", ok, detail)


@dataclass(frozen=True)
class Transfer:
    connected: bool
    sent: int
    received: int


def transfer(src: Place, dst: Place, address: Address, seconds: float, port: int = PROBE_PORT) -> Transfer:
    """A bounded TCP transfer src -> dst (lab.tcpprobe); `received` is what arrived."""
    timing = ["--port", str(port), "--seconds", str(seconds)]
    server = subprocess.Popen(
        dst.argv(*python_argv("lab.tcpprobe", "serve", "--bind", str(address), *timing)),
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
            src, *python_argv("lab.tcpprobe", "send", "--to", str(address), *timing), timeout=seconds + 15
        )
        out, _ = server.communicate(timeout=seconds + 10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=5)
    sent = json.loads(sender.stdout.strip().splitlines()[-1])
    received = json.loads(out.strip().splitlines()[-1])
    return Transfer(bool(sent.get("connected")), int(sent.get("sent", 0)), int(received.get("received", 0)))


def check_mss_clamp(lab: NetnsLab) -> CheckResult:
    """The SYN-ACK of a host behind a forwarding node reaches another node with a clamped MSS.

    The lan host advertises the MSS of its 1500-byte link; the router must rewrite it to what
    fits its wg0 route, or the far end would send segments the tunnel cannot carry.
    """
    name = "MSS clamped across a forwarding node"
    lan = next((h for h in lab.lan_hosts() if h.address.version == 4), None)
    if lan is None or len(lab.nodes) < 2:
        return CheckResult(name, True, "no IPv4 routed subnet in this stack", skipped=True)
    router = lab.mesh.node(lan.router)
    client = next(n for n in lab.nodes if n.name != lan.router)
    limit = min(router.mtu, client.mtu) - TCP_IPV4_OVERHEAD
    bpf = f"tcp and src host {lan.address} and tcp[tcpflags] & tcp-syn != 0"
    with Capture(lab.node(client.name), WG, bpf) as cap:
        moved = transfer(lab.node(client.name), lan.place, lan.address, seconds=0.5)
    seen = mss_values(cap.lines)
    ok = bool(seen) and max(seen) <= limit and moved.received > 0
    detail = (
        f"{client.name} <- {lan.address} via {router.name}: SYN-ACK mss {seen or 'not seen'} "
        f"(limit {limit}; {moved.received} bytes moved)"
    )
    return CheckResult(name, ok, detail)


# ----------------------------------------------------------------------------- negative checks


def _two_nodes(lab: NetnsLab) -> tuple[LabNode, LabNode] | None:
    return (lab.nodes[0], lab.nodes[1]) if len(lab.nodes) >= 2 else None


def restore_from_config(place: Place) -> None:
    """Put wg0 back to what /etc/wireguard/wg0.conf says (as an operator would)."""
    run_in(place, "bash", "-c", f"wg syncconf {WG} <(wg-quick strip {WG})")


def random_public_key() -> str:
    """A valid public key nobody in the lab holds the private half of."""
    return public_key(private_key(os.urandom(32)))


def check_wrong_peer_key(lab: NetnsLab) -> CheckResult:
    """Node A with a wrong public key for B (same endpoint and AllowedIPs) cannot reach B."""
    name = "negative: wrong peer key cannot reach the peer"
    pair = _two_nodes(lab)
    if pair is None:
        return CheckResult(name, True, "needs two nodes", skipped=True)
    a, b = pair
    where = lab.node(a.name)
    allowed = _allowed_ips(where).get(b.public_key)
    if not allowed:
        return CheckResult(name, False, f"{a.name} has no peer entry for {b.name}")
    try:
        run_in(where, "wg", "set", WG, "peer", b.public_key, "remove")
        endpoint = f"{b.public_ip}:{b.listen_port}"
        fake = random_public_key()
        run_in(where, "wg", "set", WG, "peer", fake, "endpoint", endpoint, "allowed-ips", ",".join(allowed))
        broken = ping(where, b.address, count=3)
    finally:
        restore_from_config(where)
    restored = ping(where, b.address, count=5)
    ok = not broken.ok and restored.ok
    detail = f"{a.name} -> {b.name} with a wrong key: {_ping_text(broken)}; restored: {_ping_text(restored)}"
    return CheckResult(name, ok, detail)


def check_outside_allowed_ips(lab: NetnsLab) -> CheckResult:
    """B sends from an address outside its AllowedIPs at A: A's wg0 never delivers it."""
    name = "negative: source outside AllowedIPs is dropped"
    pair = _two_nodes(lab)
    if pair is None:
        return CheckResult(name, True, "needs two nodes", skipped=True)
    a, b = pair
    spoofed = str(lab.free_overlay_address())
    sender = lab.node(b.name)
    run_in(sender, "ip", "addr", "add", f"{spoofed}/32", "dev", WG)
    try:
        with Capture(lab.node(a.name), WG, "icmp") as cap:
            outside = ping(sender, a.address, count=3, source=spoofed)
            inside = ping(sender, a.address, count=2)
    finally:
        run_in(sender, "ip", "addr", "del", f"{spoofed}/32", "dev", WG, check=False)
    from_spoofed = sum(1 for line in cap.lines if line.startswith(f"IP {spoofed} >"))
    from_real = sum(
        1 for line in cap.lines if line.startswith(f"IP {b.address} > {a.address}: ICMP echo request")
    )
    ok = not outside.ok and from_spoofed == 0 and inside.ok and from_real > 0
    detail = (
        f"{b.name} -> {a.name} from {spoofed}: {_ping_text(outside)}, {from_spoofed} delivered on "
        f"{a.name}'s wg0; from {b.address}: {_ping_text(inside)}, {from_real} delivered"
    )
    return CheckResult(name, ok, detail)


def _allowed_ips(place: Place) -> dict[str, list[str]]:
    out = run_in(place, "wg", "show", WG, "allowed-ips").stdout
    result: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, nets = line.partition("\t")
        result[key.strip()] = [n for n in nets.split() if n != "(none)"]
    return result


# ----------------------------------------------------------------------------- everything


def run_all(lab: NetnsLab, *, negative: bool = True) -> HealthReport:
    """Every check; the underlay is captured for the whole positive phase."""
    with Capture(lab.internet, BRIDGE, "not arp") as underlay:
        pairs = check_pairs(lab)
        subnets = check_subnets(lab)
        mss = check_mss_clamp(lab)
    checks = [*subnets, check_underlay(lab, underlay.lines), mss]
    if negative:
        checks += [check_wrong_peer_key(lab), check_outside_allowed_ips(lab)]
    return HealthReport(pairs, tuple(checks))


def all_handshaken(lab: NetnsLab) -> bool:
    for n in lab.nodes:
        seen = latest_handshakes(lab.node(n.name))
        if any(seen.get(p.public_key, 0) == 0 for p in lab.nodes if p.name != n.name):
            return False
    return True


def wait_for_handshakes(lab: NetnsLab, timeout: float) -> float | None:
    """Seconds until every node has a handshake with every other (keepalives start them)."""
    start = time.monotonic()
    while True:
        if all_handshaken(lab):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(0.1)


def _ping_text(p: Ping) -> str:
    if not p.ok:
        return f"lost ({p.received}/{p.sent})"
    return f"ok {p.rtt_ms:.2f} ms" if p.rtt_ms is not None else "ok"
