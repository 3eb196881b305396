"""The MTU scenario: why the planner subtracts 80 from the smallest underlay MTU.

On an underlay of 1460 (GCP's default) whose path drops IP fragments (the lab internet
does), the planned wg0 MTU of 1380 carries full-size packets; wg-quick's usual 1420 makes
every full packet 1480 bytes on the wire, the sender fragments it, and the fragments are
dropped: a don't-fragment ping at 1420 is lost and TCP moves next to nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from lab.manifest import LabNode
from lab.probes import IPV4_ICMP_OVERHEAD, WG, Ping, Transfer, ping, transfer
from lab.proc import run_in
from lab.running import NetnsLab
from lab.topology import NOFRAG_TABLE

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
    """Packets counted by the internet bridge's fragment-drop rule so far."""
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
