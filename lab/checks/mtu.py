"""The MTU scenario: why the planner subtracts 80 from the smallest underlay MTU.

On an underlay of 1460 (GCP's default) whose path drops IP fragments (the lab internet
does), the planned wg0 MTU of 1380 carries full-size packets; wg-quick's usual 1420 makes
every full packet 1480 bytes on the wire, the sender fragments it, and the fragments are
dropped: a don't-fragment ping at 1420 is lost and TCP moves next to nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from lab.core.manifest import LabNode
from lab.core.probes import IPV4_ICMP_OVERHEAD, WG, Ping, Transfer, ping, transfer
from lab.core.proc import run_in
from lab.netns.running import NetnsLab
from lab.netns.topology import NOFRAG_RULESET, NOFRAG_TABLE

WRONG_MTU = 1420  # what wg-quick and most guides use: right for 1500, wrong for 1460


@dataclass(frozen=True)
class MtuTrial:
    wg_mtu: int
    df_ping: Ping  # one packet of exactly wg_mtu bytes, don't-fragment, a -> b
    tcp: Transfer  # bounded TCP transfer a -> b over wg0
    fragments_dropped: int  # by the lab internet during this trial


@dataclass(frozen=True)
class MtuScenario:
    src: str
    dst: str
    underlay_mtu: int
    planned: MtuTrial
    wrong: MtuTrial


def fragments_dropped(lab: NetnsLab) -> int:
    """Packets counted by the internet bridge's fragment rule so far (dropped, or forwarded
    inside `fragments_allowed`)."""
    out = run_in(lab.internet, "nft", "-j", "list", "table", "bridge", NOFRAG_TABLE).stdout
    total = 0
    for item in json.loads(out).get("nftables", []):
        for expr in item.get("rule", {}).get("expr", []):
            if "counter" in expr:
                total += int(expr["counter"]["packets"])
    return total


def set_wg_mtu(lab: NetnsLab, node: LabNode, mtu: int) -> None:
    run_in(lab.node(node.name), "ip", "link", "set", WG, "mtu", str(mtu))


def trial(lab: NetnsLab, a: LabNode, b: LabNode, mtu: int, seconds: float) -> MtuTrial:
    for n in (a, b):
        set_wg_mtu(lab, n, mtu)
    before = fragments_dropped(lab)
    df = ping(lab.node(a.name), b.address, count=2, size=mtu - IPV4_ICMP_OVERHEAD, df=True)
    tcp = transfer(lab.node(a.name), lab.node(b.name), b.address, seconds)
    return MtuTrial(mtu, df, tcp, fragments_dropped(lab) - before)


def mtu_scenario(lab: NetnsLab, *, wrong_mtu: int = WRONG_MTU, seconds: float = 2.0) -> MtuScenario:
    """The planned MTU, then `wrong_mtu`, on the first two nodes; wg0 is back to plan afterwards."""
    a, b = lab.nodes[0], lab.nodes[1]
    try:
        planned = trial(lab, a, b, a.mtu, seconds)
        wrong = trial(lab, a, b, wrong_mtu, seconds)
    finally:
        for n in (a, b):
            set_wg_mtu(lab, n, n.mtu)
    return MtuScenario(a.name, b.name, min(a.underlay_mtu, b.underlay_mtu), planned, wrong)


def format_scenario(s: MtuScenario) -> str:
    lines = [f"MTU scenario {s.src} -> {s.dst}, underlay {s.underlay_mtu}, the lab internet drops fragments:"]
    for label, t in (("planned", s.planned), ("wrong", s.wrong)):
        df = "passes" if t.df_ping.ok else "lost"
        lines.append(
            f"  {label:8} wg0 MTU {t.wg_mtu}: DF ping {t.wg_mtu} {df}, TCP moved {t.tcp.received} bytes, "
            f"{t.fragments_dropped} fragments dropped"
        )
    return "\n".join(lines)


@contextmanager
def fragments_allowed(lab: NetnsLab) -> Iterator[None]:
    """The lab internet forwards IP fragments until the block ends (still counting them).

    Its fragment rule counts and accepts instead of dropping; afterwards the table is loaded
    again exactly as the lab built it.
    """
    chain = ("bridge", NOFRAG_TABLE, "forward")
    rule = ("ip", "frag-off", "&", "0x3fff", "!=", "0", "counter", "accept")
    try:
        run_in(lab.internet, "nft", "flush", "chain", *chain)
        run_in(lab.internet, "nft", "add", "rule", *chain, *rule)
        yield
    finally:
        run_in(lab.internet, "nft", "delete", "table", "bridge", NOFRAG_TABLE)
        run_in(lab.internet, "nft", "-f", "-", stdin_text=NOFRAG_RULESET)


@dataclass(frozen=True)
class ThroughputComparison:
    """TCP throughput over wg0 with the planned MTU and with 1420, fragments dropped and allowed."""

    src: str
    dst: str
    underlay_mtu: int
    seconds: float
    dropped: tuple[MtuTrial, MtuTrial]  # (planned, wrong) while the internet drops fragments
    allowed: tuple[MtuTrial, MtuTrial]  # (planned, wrong) while it forwards them (counted the same)

    def ratios(self) -> dict[str, float | None]:
        """planned / wrong throughput per path; None when the wrong MTU moved nothing at all."""
        return {
            "fragments dropped": _ratio(*self.dropped),
            "fragments allowed": _ratio(*self.allowed),
        }


def _ratio(planned: MtuTrial, wrong: MtuTrial) -> float | None:
    return planned.tcp.received / wrong.tcp.received if wrong.tcp.received else None


def throughput_comparison(
    lab: NetnsLab, *, wrong_mtu: int = WRONG_MTU, seconds: float = 3.0
) -> ThroughputComparison:
    """Both MTUs on both kinds of path, in one run on the first two nodes; wg0 back to plan after."""
    a, b = lab.nodes[0], lab.nodes[1]
    try:
        dropped = (trial(lab, a, b, a.mtu, seconds), trial(lab, a, b, wrong_mtu, seconds))
        with fragments_allowed(lab):
            allowed = (trial(lab, a, b, a.mtu, seconds), trial(lab, a, b, wrong_mtu, seconds))
    finally:
        for n in (a, b):
            set_wg_mtu(lab, n, n.mtu)
    underlay = min(a.underlay_mtu, b.underlay_mtu)
    return ThroughputComparison(a.name, b.name, underlay, seconds, dropped, allowed)


def format_throughput(c: ThroughputComparison) -> str:
    lines = [f"MTU throughput {c.src} -> {c.dst}, underlay {c.underlay_mtu}, {c.seconds:g} s TCP per trial:"]
    paths = (("fragments dropped", "dropped", c.dropped), ("fragments allowed", "forwarded", c.allowed))
    for label, fate, (planned, wrong) in paths:
        ratio = _ratio(planned, wrong)
        shown = f"{ratio:.2f}x" if ratio is not None else f"inf ({wrong.wg_mtu} moved 0 bytes)"
        lines.append(
            f"  {label:18} planned {planned.wg_mtu}: {_mbit(planned, c.seconds):7.1f} Mbit/s   "
            f"{wrong.wg_mtu}: {_mbit(wrong, c.seconds):7.1f} Mbit/s   planned/{wrong.wg_mtu} {shown}"
            f"   ({wrong.fragments_dropped} fragments {fate})"
        )
    return "\n".join(lines)


def _mbit(t: MtuTrial, seconds: float) -> float:
    return t.tcp.received * 8 / seconds / 1e6
