#!/usr/bin/python3
"""Lab-only health reporter baked into the VM image (never into user-data).

The rendered user-data must boot unchanged, so it cannot carry a reporting step. Instead the
image runs this script from its own systemd unit after cloud-final (calling
`cloud-init status --wait` from runcmd would wait on itself). It learns the peers from the
node's own /etc/wireguard/wg0.conf, so the image stays generic, and writes one
`WGLAB <node> <fact>` line per fact to the second serial port, which the host reads.

It runs on every boot (the lab reboots a VM on purpose), and after END it keeps pinging its peers
once a second (`TICK` lines) so the host can count loss while it reboots or kills another VM.

Runs inside the guest with the Debian 12 python3 and the standard library only. Never prints
a key other than peers' public keys.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import socket
import stat
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPORT_PORT = Path("/dev/ttyS1")
WG_CONF = Path("/etc/wireguard/wg0.conf")
USER_DATA = Path("/var/lib/cloud/instance/user-data.txt")
CMDLINE = Path("/proc/cmdline")
MESH_WAIT_DEFAULT = 300.0  # seconds after cloud-init is done to wait for every peer
SUBNET_PROBE_OFFSET = 2  # the lab's subnet host sits at <network> + 2 (the node at + 1)
TICK_SECONDS = 1.0
TICK_WAIT = 2  # ping deadline per tick (s): a reply slower than this under TCG counts as lost
METADATA_URL = "http://169.254.169.254/latest/user-data"  # the lab's fake metadata host
NOBODY = ("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups")
GUARD_TABLE = ("inet", "wgmesh_metadata")
GUARD_UNIT = "wgmesh-metadata-guard.service"
NETWORK_UNIT = "systemd-networkd.service"
# Where a copy of the private key could land (cloud-init's instance data, logs, temp files).
KEY_SEARCH_ROOTS = ("/etc", "/var/lib/cloud", "/var/log", "/run", "/root", "/tmp", "/var/tmp")
KEY_SEARCH_MAX_BYTES = 4 << 20
# One GET, one word out: ok, or the error's class (ConnectionRefusedError when the guard rejects).
PROBE = """
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=5).read()
    print("ok")
except Exception as e:
    print(type(getattr(e, "reason", e)).__name__)
"""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class PeerTargets:
    """What one node should reach: peer overlay addresses and the networks routed behind peers."""

    overlay: tuple[Address, ...]
    subnets: tuple[Network, ...]


def parse_wg_conf(text: str) -> PeerTargets:
    """Peers with an Endpoint are nodes: their host routes are overlay addresses, the rest subnets.

    Peers without an Endpoint are roaming clients, which the lab does not run.
    """
    overlay: list[Address] = []
    subnets: list[Network] = []
    sections: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            current = {} if line.lower() == "[peer]" else None
            if current is not None:
                sections.append(current)
            continue
        if current is not None and "=" in line:
            key, value = line.split("=", 1)
            current[key.strip().lower()] = value.strip()
    for peer in sections:
        if "endpoint" not in peer:
            continue
        for item in peer.get("allowedips", "").split(","):
            if not item.strip():
                continue
            net = ipaddress.ip_network(item.strip(), strict=False)
            if net.num_addresses == 1:
                overlay.append(net.network_address)
            else:
                subnets.append(net)
    return PeerTargets(tuple(overlay), tuple(subnets))


def subnet_probe(net: Network) -> Address:
    """The address the lab gives the host behind a routed subnet."""
    return net.network_address + SUBNET_PROBE_OFFSET


def cmdline_value(key: str, cmdline: str) -> str | None:
    match = re.search(rf"(?:^|\s){re.escape(key)}=(\S+)", cmdline)
    return match.group(1) if match else None


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


class Reporter:
    """Writes `WGLAB <node> ...` lines, one write per line so lines never interleave."""

    def __init__(self, node: str, port: Path = REPORT_PORT) -> None:
        self.node = node
        self.port = port

    def emit(self, fact: str) -> None:
        line = f"WGLAB {self.node} {fact}\n"
        with self.port.open("w") as out:
            out.write(line)


def run(argv: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def cloud_init_status() -> str:
    """Block until cloud-init has finished, then return its one-word status (done, error, ...)."""
    out = run(["cloud-init", "status", "--wait"], timeout=3600).stdout
    match = re.search(r"status:\s*(\S+)", out)
    return match.group(1) if match else "unknown"


def pings_answered(addresses: Iterable[Address], count: int = 1, wait: int = 1) -> set[Address]:
    """Ping every address in parallel; return those that answered."""
    procs = {
        addr: subprocess.Popen(
            ["ping", "-n", "-q", "-c", str(count), "-W", str(wait), str(addr)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for addr in addresses
    }
    return {addr for addr, proc in procs.items() if proc.wait() == 0}


def wait_for(addresses: Sequence[Address], deadline: float) -> tuple[bool, float]:
    """Ping until every address has answered once; return (all answered, uptime at that moment)."""
    missing = set(addresses)
    while missing and time.monotonic() < deadline:
        missing -= pings_answered(missing)
        if missing:
            time.sleep(0.5)
    return not missing, uptime()


def handshakes() -> dict[str, int | None]:
    """Peer public key -> seconds since its latest handshake (None: never)."""
    ages: dict[str, int | None] = {}
    now = int(time.time())
    for line in run(["wg", "show", "wg0", "latest-handshakes"]).stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            stamp = int(parts[1])
            ages[parts[0]] = max(0, now - stamp) if stamp else None
    return ages


def boot_summary(top: int = 6) -> str:
    """systemd-analyze's total and the slowest units, on one line (where boot time goes under TCG)."""
    total = run(["systemd-analyze", "time"]).stdout.splitlines()[:1]
    blame = [" ".join(line.split()) for line in run(["systemd-analyze", "blame"]).stdout.splitlines()[:top]]
    return " | ".join(total + blame) or "unavailable"


def metadata_probe(as_nobody: bool) -> str:
    """Fetch the metadata URL as root or as uid 65534: `ok` or the error's class name."""
    argv = [*(NOBODY if as_nobody else ()), "python3", "-c", PROBE, METADATA_URL]
    return run(argv, timeout=20).stdout.strip() or "no-output"


def guard_fact() -> str:
    """Is the metadata guard's table loaded, and who reaches the metadata host (root should, nobody not)."""
    table = run(["nft", "list", "table", *GUARD_TABLE]).returncode == 0
    return f"table={'yes' if table else 'no'} root={metadata_probe(False)} nobody={metadata_probe(True)}"


def unit_properties(unit: str, *names: str) -> dict[str, str]:
    out = run(["systemctl", "show", unit, *(f"--property={n}" for n in names)]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def guard_unit_fact() -> str:
    """The guard unit's state and when it finished, against when the network daemon started (µs)."""
    guard = unit_properties(GUARD_UNIT, "ActiveState", "ActiveEnterTimestampMonotonic")
    network = unit_properties(NETWORK_UNIT, "InactiveExitTimestampMonotonic")
    return (
        f"state={guard.get('ActiveState', 'unknown')}"
        f" loaded_us={guard.get('ActiveEnterTimestampMonotonic', '0')}"
        f" network_us={network.get('InactiveExitTimestampMonotonic', '0')}"
    )


def private_key(conf: str) -> str | None:
    match = re.search(r"^\s*PrivateKey\s*=\s*(\S+)", conf, re.MULTILINE | re.IGNORECASE)
    return match.group(1) if match else None


def files_holding(secret: bytes, roots: Iterable[str] = KEY_SEARCH_ROOTS) -> list[Path]:
    """Regular files under `roots` whose bytes contain `secret` (only their paths leave the guest)."""
    found: list[Path] = []
    for root in roots:
        for directory, _, names in os.walk(root):
            for name in names:
                path = Path(directory, name)
                try:
                    st = path.lstat()
                    if not stat.S_ISREG(st.st_mode) or st.st_size > KEY_SEARCH_MAX_BYTES:
                        continue
                    if secret in path.read_bytes():
                        found.append(path)
                except OSError:
                    continue
    return sorted(found)


def key_file_facts(conf: str | None, roots: Iterable[str] = KEY_SEARCH_ROOTS) -> list[str]:
    """`KEYFILE <mode> <uid>:<gid> <path>` for every file holding this node's private key."""
    key = private_key(conf or "")
    if key is None:
        return ["KEYFILES none"]
    paths = files_holding(key.encode(), roots)
    facts = [f"KEYFILES {len(paths)}"]
    for path in paths:
        st = path.stat()
        facts.append(f"KEYFILE {stat.S_IMODE(st.st_mode):04o} {st.st_uid}:{st.st_gid} {path}")
    return facts


def tick_forever(report: Reporter, addresses: Sequence[Address]) -> None:
    """Ping every peer once a second, forever: `TICK <n> <addr>=ok|lost ...` (one line per round)."""
    n = 0
    while True:
        start = time.monotonic()
        answered = pings_answered(addresses, count=1, wait=TICK_WAIT)
        states = " ".join(f"{a}={'ok' if a in answered else 'lost'}" for a in addresses)
        report.emit(f"TICK {n} {states}")
        n += 1
        time.sleep(max(0.0, TICK_SECONDS - (time.monotonic() - start)))


def read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def main() -> int:
    cmdline = CMDLINE.read_text()
    node = cmdline_value("wglab.node", cmdline) or socket.gethostname()
    mesh_wait = float(cmdline_value("wglab.wait", cmdline) or MESH_WAIT_DEFAULT)
    report = Reporter(node)
    report.emit(f"START uptime={uptime():.1f}")

    status = cloud_init_status()
    report.emit(f"CLOUDINIT {status} uptime={uptime():.1f}")
    try:
        digest = hashlib.sha256(USER_DATA.read_bytes()).hexdigest()
    except OSError:
        digest = "missing"
    report.emit(f"USERDATA sha256={digest}")

    conf = read_text(WG_CONF)
    targets = parse_wg_conf(conf) if conf is not None else PeerTargets((), ())
    report.emit(f"PEERS {len(targets.overlay)} SUBNETS {len(targets.subnets)} CONF {conf is not None}")

    ok, at = wait_for(targets.overlay, time.monotonic() + mesh_wait)
    report.emit(f"MESH {'up' if ok and targets.overlay else 'timeout'} uptime={at:.1f}")
    answered = pings_answered(targets.overlay, count=3, wait=2)
    for addr in targets.overlay:
        report.emit(f"PING {addr} {'ok' if addr in answered else 'fail'}")

    probes = [subnet_probe(net) for net in targets.subnets]
    _, _ = wait_for(probes, time.monotonic() + 30)
    reached = pings_answered(probes, count=3, wait=2)
    for net, probe in zip(targets.subnets, probes, strict=True):
        report.emit(f"SUBNET {net} {probe} {'ok' if probe in reached else 'fail'}")

    for key, age in sorted(handshakes().items()):
        report.emit(f"HANDSHAKE {key} {'never' if age is None else age}")
    mtu = read_text(Path("/sys/class/net/wg0/mtu"))
    report.emit(f"MTU {mtu.strip() if mtu else 'none'}")
    forward = read_text(Path("/proc/sys/net/ipv4/ip_forward"))
    report.emit(f"FORWARD {forward.strip() if forward else 'none'}")
    report.emit(f"GUARD {guard_fact()}")
    report.emit(f"GUARDUNIT {guard_unit_fact()}")
    for fact in key_file_facts(conf):
        report.emit(fact)
    report.emit(f"BOOT {boot_summary()}")
    report.emit(f"END uptime={uptime():.1f}")
    if targets.overlay:
        tick_forever(report, targets.overlay)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except Exception as exc:  # the host must hear about a crash instead of waiting for END
        Reporter(cmdline_value("wglab.node", CMDLINE.read_text()) or socket.gethostname()).emit(
            f"CRASH {type(exc).__name__}"
        )
        raise
