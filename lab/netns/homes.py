"""Nodes behind NAT in the netns lab: a `cloud: external` host with no endpoint (a machine at
home, behind the ISP's router), placed like a roaming client (lab.netns.clients' NAT box).

Per such node `h`:
- `wgm-hnat-h`: its home router. The uplink sits on the lab internet with its own public IP
  (198.51.100.201, .202, ...) and source-NATs the home LAN to it, UDP/TCP into a port range
  (the same ruleset and `change_nat_ports` as a client's NAT box). Its UDP conntrack timeouts
  are short (HOME_NAT_UDP_TIMEOUT, this namespace's own keys): a stingy ISP router that
  forgets an idle mapping within seconds, so only the node's keepalive can hold it open.
- `wgm-node-h`: the node itself, eth0 192.168.<200+i>.2 on the router's LAN with a default
  route via it, its own mount namespace like any node; the network it routes (`subnets`) sits
  behind it as usual (lab.netns.topology.attach_lan), on the interface named `lanInterface`.

Nodes on the lab internet get an on-link route to each home router's public IP: that is where
the node's packets come from, and where a reply to them must go.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lab.core.errors import LabError
from lab.core.manifest import LabMesh, LabNode
from lab.core.network import ip
from lab.core.proc import Place, run_in
from lab.core.state import LabState
from lab.netns import clients
from lab.netns.layout import Layout
from lab.netns.running import NetnsLab

FIRST_HOME_NAT_IP = ipaddress.IPv4Address("198.51.100.201")
HOME_NAT_UDP_TIMEOUT = 5  # seconds an idle UDP mapping lives in a home router (Linux: 30 and 120)
_CONNTRACK_KEYS = ("nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream")
_UDP = re.compile(r"^IP (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+): UDP, length \d+$")


@dataclass(frozen=True)
class HomeSite(clients.NatSite):
    """Where one node behind NAT lives: its home router and the node's own namespace."""

    node: LabNode

    @property
    def name(self) -> str:
        return self.node.name


def nat_ns(layout: Layout, node: str) -> str:
    return f"{layout.prefix}hnat-{node}"


def sites(layout: Layout, mesh: LabMesh) -> list[HomeSite]:
    """Every node behind NAT, in mesh.json order (which fixes its addresses)."""
    behind = [n for n in mesh.nodes if n.behind_nat]
    return [
        HomeSite(
            node=n,
            index=i,
            nat_ip=FIRST_HOME_NAT_IP + i,
            lan=ipaddress.IPv4Network(f"192.168.{200 + i}.0/24"),
            nat=Place(f"home router of {n.name}", nat_ns(layout, n.name)),
        )
        for i, n in enumerate(behind)
    ]


def site(lab: NetnsLab, name: str) -> HomeSite:
    for s in sites(lab.layout, lab.mesh):
        if s.name == name:
            return s
    raise KeyError(name)


def wanted_namespaces(layout: Layout, mesh: LabMesh) -> list[str]:
    """The home routers (the nodes' own namespaces are lab.netns.topology's)."""
    return [nat_ns(layout, s.name) for s in sites(layout, mesh)]


def check_fits(layout: Layout, mesh: LabMesh) -> None:
    """Refuse a mesh whose addresses collide with the lab's home wiring."""
    taken = {n.public_ip: n.name for n in mesh.nodes if not n.behind_nat}
    homes = sites(layout, mesh)
    if len(homes) > int(clients.INTERNET_HOST) - int(FIRST_HOME_NAT_IP):
        raise LabError(f"too many nodes behind NAT for the lab internet ({len(homes)})")
    for s in homes:
        if s.nat_ip in taken:
            owner = taken[s.nat_ip]
            raise LabError(f"{owner}'s publicIp {s.nat_ip} is an address the lab gives a home router")
        for n in mesh.nodes:
            clash = [net for net in n.subnets if net.version == 4 and net.overlaps(s.lan)]
            if clash:
                raise LabError(f"{n.name}'s subnet {clash[0]} overlaps the lab's LAN of {s.name} ({s.lan})")


def conntrack_sysctls(timeout: int) -> str:
    """The shell line setting a home router's UDP conntrack timeouts (its namespace's own keys)."""
    return "; ".join(f"echo {timeout} > /proc/sys/net/netfilter/{k}" for k in _CONNTRACK_KEYS)


def attach_home(state: LabState, layout: Layout, s: HomeSite) -> None:
    """The home router on the lab internet and the node's namespace on its LAN."""
    clients.attach_behind_nat(
        state, layout, s, f"h{s.index}", layout.node_ns(s.name), mtu=s.node.underlay_mtu
    )
    run_in(s.nat, "sh", "-c", conntrack_sysctls(HOME_NAT_UDP_TIMEOUT))


def route_nodes_to_homes(lab: NetnsLab, homes: Sequence[HomeSite]) -> None:
    """Nodes on the lab internet reach each home router on-link."""
    for node in lab.nodes:
        if node.behind_nat:
            continue
        ns = lab.layout.node_ns(node.name)
        for s in homes:
            ip(ns, "route", "add", f"{s.nat_ip}/32", "dev", "eth0", "scope", "link")


def home_wireguard(lab: NetnsLab, lines: Sequence[str]) -> tuple[int, list[str]]:
    """(WireGuard packets between a home router's mapped port and a node's listen port, every
    other line) among lab-internet tcpdump lines: a node behind NAT speaks from its router."""
    nodes = {(str(n.public_ip), str(n.listen_port)) for n in lab.nodes if not n.behind_nat}
    nat_ips = {str(s.nat_ip) for s in sites(lab.layout, lab.mesh)}
    return clients.split_nat_wireguard(nodes, nat_ips, lines)


def mapping_entries(s: HomeSite, peer: LabNode) -> list[str]:
    """The home router's conntrack entries for the node's UDP to `peer`'s listen port."""
    out = run_in(
        s.nat,
        "conntrack", "-L", "-p", "udp", "--orig-src", str(s.lan_address),
        "--orig-dst", str(peer.public_ip), "--dport", str(peer.listen_port),
        check=False,
    )  # fmt: skip
    if out.returncode not in (0, 1):
        raise LabError(f"{s.nat.label}: conntrack -L failed: {out.stderr.strip()[:200]}")
    return [ln for ln in out.stdout.splitlines() if ln.startswith("udp")]
