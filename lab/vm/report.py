"""What the lab VMs report on their report port, parsed, and checked against the rendered mesh.

Each VM's image-baked reporter writes `WGLAB <node> <fact>` lines (see lab/vm/guest_report.py).
The guest only knows its own wg0.conf; the host knows the whole mesh (mesh.json), so the pass or
fail decision is made here: every lab peer pinged, every routed subnet reached, a handshake with
every peer's real public key, wg0 MTU as planned, cloud-init done, the user-data cloud-init
saw byte-identical to the rendered file, the metadata guard loaded (root reaches the lab's fake
metadata host, uid 65534 is refused), and every file holding the private key root-only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lab.core.manifest import LabNode
from lab.vm.guest_report import subnet_probe

LINE_RE = re.compile(r"WGLAB (\S+) (\S+)(?: (.*))?$")
UPTIME_RE = re.compile(r"uptime=([0-9.]+)")
# What the guest says when the guard works: loaded, root reaches the metadata host, nobody is refused.
GUARD_OK = {"table": "yes", "root": "ok", "nobody": "ConnectionRefusedError"}


@dataclass(frozen=True)
class KeyFile:
    """A guest file holding the node's private key: its mode, owner and path (never its content)."""

    mode: int
    owner: str  # uid:gid
    path: str

    @property
    def root_only(self) -> bool:
        return self.owner == "0:0" and self.mode & 0o077 == 0


def user_data_sha256(render_dir: Path, node: str) -> str:
    return hashlib.sha256((render_dir / node / "user-data").read_bytes()).hexdigest()


@dataclass
class NodeReport:
    """Everything one VM said, by fact."""

    node: str
    started: bool = False
    cloudinit: str | None = None
    cloudinit_uptime: float | None = None
    user_data_sha256: str | None = None
    mesh: str | None = None
    mesh_uptime: float | None = None
    pings: dict[str, bool] = field(default_factory=dict)  # peer overlay address -> answered
    subnets: dict[str, bool] = field(default_factory=dict)  # probe address in a routed subnet -> answered
    handshakes: dict[str, int | None] = field(default_factory=dict)  # peer public key -> age (s)
    mtu: int | None = None
    forward: str | None = None
    guard: dict[str, str] = field(default_factory=dict)  # table, root, nobody
    guard_unit: dict[str, str] = field(default_factory=dict)  # state, loaded_us, network_us
    key_files: list[KeyFile] = field(default_factory=list)
    key_files_expected: int | None = None
    ended: bool = False
    crash: str | None = None
    other: dict[str, str] = field(default_factory=dict)  # facts kept as text (BOOT: systemd-analyze)

    @property
    def finished(self) -> bool:
        return self.ended or self.crash is not None


def _uptime(rest: str) -> float | None:
    match = UPTIME_RE.search(rest)
    return float(match.group(1)) if match else None


def apply_fact(report: NodeReport, fact: str, rest: str) -> None:
    words = rest.split()
    if fact == "START":
        report.started = True
    elif fact == "CLOUDINIT" and words:
        report.cloudinit, report.cloudinit_uptime = words[0], _uptime(rest)
    elif fact == "USERDATA":
        report.user_data_sha256 = rest.removeprefix("sha256=").strip()
    elif fact == "MESH" and words:
        report.mesh, report.mesh_uptime = words[0], _uptime(rest)
    elif fact == "PING" and len(words) == 2:
        report.pings[words[0]] = words[1] == "ok"
    elif fact == "SUBNET" and len(words) == 3:
        report.subnets[words[1]] = words[2] == "ok"
    elif fact == "HANDSHAKE" and len(words) == 2:
        report.handshakes[words[0]] = None if words[1] == "never" else int(words[1])
    elif fact == "MTU" and words:
        report.mtu = int(words[0]) if words[0].isdigit() else None
    elif fact == "FORWARD" and words:
        report.forward = words[0]
    elif fact == "GUARD":
        report.guard = dict(w.split("=", 1) for w in words if "=" in w)
    elif fact == "GUARDUNIT":
        report.guard_unit = dict(w.split("=", 1) for w in words if "=" in w)
    elif fact == "KEYFILES" and words:
        report.key_files_expected = int(words[0]) if words[0].isdigit() else None
    elif fact == "KEYFILE" and len(words) >= 3:
        report.key_files.append(KeyFile(int(words[0], 8), words[1], " ".join(words[2:])))
    elif fact == "TICK":
        pass  # the pings after END: read by lab/vm/faults.py with the host's clock
    elif fact == "END":
        report.ended = True
    elif fact == "CRASH":
        report.crash = rest or "unknown"
    else:
        report.other[fact] = rest


def parse_reports(lines: Iterable[str]) -> dict[str, NodeReport]:
    """Fold report lines (any order, any noise around them) into one NodeReport per node."""
    reports: dict[str, NodeReport] = {}
    for raw in lines:
        match = LINE_RE.search(raw.replace("\r", "").rstrip("\n"))
        if match is None:
            continue
        node, fact, rest = match.group(1), match.group(2), match.group(3) or ""
        apply_fact(reports.setdefault(node, NodeReport(node)), fact, rest)
    return reports


def check(
    reports: Mapping[str, NodeReport],
    nodes: Iterable[LabNode],
    user_data_hashes: Mapping[str, str],
    max_handshake_age: int = 180,
) -> list[str]:
    """One line per problem; empty when every VM booted its user-data and reached the whole mesh."""
    nodes = list(nodes)
    problems: list[str] = []
    for node in nodes:
        r = reports.get(node.name)
        if r is None or not r.started:
            problems.append(f"{node.name}: no report (reporter did not start)")
            continue
        say = problems.append
        if r.crash:
            say(f"{node.name}: reporter crashed ({r.crash})")
        if not r.ended:
            say(f"{node.name}: report incomplete")
        if r.cloudinit != "done":
            say(f"{node.name}: cloud-init status {r.cloudinit}, expected done")
        if r.user_data_sha256 != user_data_hashes[node.name]:
            say(f"{node.name}: the user-data cloud-init saw differs from the rendered file")
        if r.mesh != "up":
            say(f"{node.name}: mesh {r.mesh or 'not reported'}")
        if r.mtu != node.mtu:
            say(f"{node.name}: wg0 MTU {r.mtu}, plan says {node.mtu}")
        problems += [f"{node.name}: {p}" for p in hardening_problems(r)]
        for peer in nodes:
            if peer.name == node.name:
                continue
            if r.pings.get(str(peer.address)) is not True:
                say(f"{node.name}: no ping reply from {peer.name} ({peer.address})")
            age = r.handshakes.get(peer.public_key)
            if age is None:
                say(f"{node.name}: no handshake with {peer.name}")
            elif age > max_handshake_age:
                say(f"{node.name}: handshake with {peer.name} is {age} s old")
            for net in peer.subnets:
                probe = str(subnet_probe(net))
                if r.subnets.get(probe) is not True:
                    say(f"{node.name}: no reply from {probe} in {net} behind {peer.name}")
    return problems


def guard_loaded_before_network(r: NodeReport) -> bool:
    """After a reboot: the unit (runcmd runs once per instance) loaded the guard before networkd started."""
    u = r.guard_unit
    loaded, network = u.get("loaded_us", ""), u.get("network_us", "")
    if u.get("state") != "active" or not (loaded.isdigit() and network.isdigit()):
        return False
    return 0 < int(loaded) <= int(network)


def hardening_problems(r: NodeReport) -> list[str]:
    """The metadata guard as the guest saw it, and the modes of the files holding its key."""
    problems = []
    if r.guard != GUARD_OK:
        shown = " ".join(f"{k}={v}" for k, v in r.guard.items()) or "not reported"
        problems.append(f"metadata guard: {shown}, expected table=yes root=ok nobody=ConnectionRefusedError")
    if r.key_files_expected is None or r.key_files_expected != len(r.key_files) or not r.key_files:
        problems.append("no list of the files holding the private key")
    elif not any(f.path == "/etc/wireguard/wg0.conf" for f in r.key_files):
        problems.append("the key search did not find wg0.conf")
    for f in r.key_files:
        if not f.root_only:
            problems.append(f"{f.path} holds the private key with mode {f.mode:04o} owner {f.owner}")
    return problems


def timings(reports: Mapping[str, NodeReport]) -> dict[str, float]:
    """Per node, guest uptime (s) when every peer had answered: first boot to mesh."""
    return {
        name: r.mesh_uptime for name, r in reports.items() if r.mesh == "up" and r.mesh_uptime is not None
    }


def summary(reports: Mapping[str, NodeReport], nodes: Iterable[LabNode]) -> list[str]:
    """A short human table: one line per node."""
    lines = []
    for node in nodes:
        r = reports.get(node.name, NodeReport(node.name))
        ok_pings = sum(r.pings.values())
        ok_subnets = sum(r.subnets.values())
        shakes = sum(1 for age in r.handshakes.values() if age is not None)
        lines.append(
            f"{node.name:<12} cloud-init {r.cloudinit or '-':<7} mesh {r.mesh or '-':<8}"
            f" at {r.mesh_uptime if r.mesh_uptime is not None else '-'} s uptime"
            f"  pings {ok_pings}/{len(r.pings)}  subnets {ok_subnets}/{len(r.subnets)}"
            f"  handshakes {shakes}/{len(r.handshakes)}  mtu {r.mtu}"
        )
    return lines
