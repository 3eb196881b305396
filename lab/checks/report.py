"""The health table `make lab` prints: one row per node pair (and IPv6 pair), then one line per check."""

from __future__ import annotations

from lab.core.results import HealthReport, PairResult


def _pair(p: PairResult) -> str:
    family = " (v6)" if p.family == 6 else ""
    via = f" via {p.via}" if p.via else ""
    return f"{p.src} -> {p.dst}{family}{via}"


def _handshake(p: PairResult) -> str:
    return "never" if p.handshake_age is None else f"{p.handshake_age:.1f} s ago"


def _ping(p: PairResult) -> str:
    if not p.ping.ok:
        return f"LOST {p.ping.received}/{p.ping.sent}"
    rtt = f" {p.ping.rtt_ms:.2f} ms" if p.ping.rtt_ms is not None else ""
    return f"ok {p.ping.received}/{p.ping.sent}{rtt}"


def _mtu(p: PairResult) -> str:
    return f"{p.mtu} {'DF ok' if p.df_ping.ok else 'DF LOST'}"


def format_report(report: HealthReport) -> str:
    rows = [("node pair", "handshake", "ping", "path MTU")]
    rows += [(_pair(p), _handshake(p), _ping(p), _mtu(p)) for p in report.pairs]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for c in report.checks:
        mark = "SKIP" if c.skipped else ("PASS" if c.ok else "FAIL")
        lines.append(f"{mark}  {c.name}: {c.detail}")
    lines.append("")
    lines.append("healthy" if report.ok else "NOT healthy: see FAIL lines above")
    return "\n".join(lines)
