"""Which source address a host behind a node sees: proof, with packets, that masquerade is on or off.

A host in a routed subnet (a namespace on the subnet bridge, lab/vm/network.py) runs tcpdump on its
own interface while a mesh node pings it over SSH. Without masquerade the echo requests arrive
from the pinging node's overlay address; with `masquerade: true` on the routing node they
arrive from that node's own LAN address (network + 1), as in the netns lab's jumpbox check
(lab/pattern_checks.py). tcpdump is a child the capture stops by PID; nothing is left running.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.checks.patterns import echo_sources
from lab.core.capture import Capture
from lab.core.manifest import LabNode
from lab.core.proc import Place
from lab.vm.live import Result, Ssh

PINGS = 3


@dataclass(frozen=True)
class Seen:
    ping: Result  # the node's `ping` of the host, over SSH
    sources: frozenset[str]  # source addresses of the echo requests the host received

    @property
    def answered(self) -> bool:
        return self.ping.returncode == 0


def sources_seen(ssh: Ssh, src: LabNode, host_ns: str, target: str) -> Seen:
    """`src` pings `target` (the host in namespace `host_ns`); what arrived there."""
    with Capture(Place(host_ns, host_ns), "eth0", f"icmp and dst host {target}") as cap:
        ping = ssh.run(str(src.public_ip), f"ping -n -q -c {PINGS} -W 2 {target}", timeout=60.0)
    return Seen(ping, frozenset(echo_sources(cap.lines)))
