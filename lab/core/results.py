"""Check results as data: what tests assert on and what the health table prints."""

from __future__ import annotations

from dataclasses import dataclass

from lab.core.probes import Ping


@dataclass(frozen=True)
class PairResult:
    """One direction of one node pair, over IPv4 or (with cidr6) IPv6."""

    src: str
    dst: str
    address: str  # dst's overlay address
    handshake_age: float | None  # seconds since src's latest handshake with dst (or `via`); None: never
    ping: Ping
    mtu: int  # planned wg0 MTU of src
    df_ping: Ping  # one packet of exactly `mtu` bytes, don't-fragment
    via: str | None = None  # the hub src reaches dst through (hub and spoke); None: direct peers
    family: int = 4

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

    def pair(self, src: str, dst: str, family: int = 4) -> PairResult:
        for p in self.pairs:
            if (p.src, p.dst, p.family) == (src, dst, family):
                return p
        raise KeyError((src, dst, family))
