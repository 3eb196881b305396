"""Roaming clients in the netns lab: each behind its own NAT box, plus an "internet" host.

Per client `c` of the rendered mesh:
- `wgm-nat-c`: a home router. Its uplink sits on the lab internet with its own public IP
  (198.51.100.101, .102, ...); it source-NATs the client LAN to that IP, UDP and TCP into an
  explicit port range, so a test can move the mapping (`change_nat_ports`) like a real NAT
  that reboots or times out an entry.
- `wgm-cli-c`: the laptop, 192.168.<100+i>.2 with a default route via the NAT box, and a
  private mount namespace (own /run for wireguard-go's control socket, /etc and /var
  overlaid) in which `wg-quick up <render>/clients/c.conf` runs on the conf exactly as rendered.
And once per lab with clients, `wgm-www`: an "internet host" (198.51.100.250) on the bridge,
for full-tunnel clients to reach through a gateway node.

Every node gets an on-link route to each NAT box (the clients' public addresses); gateway
nodes get a default route out of their underlay, as a cloud VM has. Everything is created in
namespaces recorded in the lab state, so teardown removes it like the nodes.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.core.errors import LabError
from lab.core.manifest import LabClient, LabMesh
from lab.core.network import add_namespace, existing_namespaces, ip
from lab.core.proc import NODE_ENV, Place, run, run_in, tail
from lab.core.state import LabState
from lab.netns import topology
from lab.netns.layout import BRIDGE, Layout
from lab.netns.running import NetnsLab

Log = Callable[[str], None]
PortRange = tuple[int, int]

NAT_TABLE = "wgmesh_lab_nat"
# The first mapping every NAT box uses, and the one `change_nat_ports` moves to (and back).
PORT_RANGES: tuple[PortRange, PortRange] = ((20000, 20999), (40000, 40999))
FIRST_NAT_IP = ipaddress.IPv4Address("198.51.100.101")
INTERNET_HOST = ipaddress.IPv4Address("198.51.100.250")
INTERNET_PREFIX = 24
INTERNET_TCP_PORT = 8080  # the checks' bounded TCP transfer
INTERNET_HTTP_PORT = 80
_SNAT = re.compile(r"snat (?:ip )?to [\d.]+:(\d+)-(\d+)")
_DNS_LINE = re.compile(r"^\s*DNS\s*=", re.MULTILINE)
_IFNAME = re.compile(r"^[a-zA-Z0-9_=+.-]{1,15}$")


@dataclass(frozen=True)
class NatSite:
    """Anything behind one of the lab's NAT boxes: a roaming client, or a node behind NAT
    (lab.netns.homes). The box's uplink is `nat_ip` on the lab internet, its LAN `lan`."""

    index: int
    nat_ip: ipaddress.IPv4Address
    lan: ipaddress.IPv4Network
    nat: Place

    @property
    def router(self) -> ipaddress.IPv4Address:
        return self.lan.network_address + 1

    @property
    def lan_address(self) -> ipaddress.IPv4Address:
        """The address behind the box on its LAN (what the box NATs)."""
        return self.lan.network_address + 2


@dataclass(frozen=True)
class ClientSite(NatSite):
    """Where one client lives in the lab: its NAT box and its laptop namespace."""

    client: LabClient
    laptop: Place

    @property
    def name(self) -> str:
        return self.client.name

    @property
    def interface(self) -> str:
        """wg-quick names the interface after the conf file: clients/<name>.conf -> <name>."""
        return self.client.name


def nat_ns(layout: Layout, client: str) -> str:
    return f"{layout.prefix}nat-{client}"


def client_ns(layout: Layout, client: str) -> str:
    return f"{layout.prefix}cli-{client}"


def internet_host_ns(layout: Layout) -> str:
    return f"{layout.prefix}www"


def client_mount_ns(layout: Layout, client: str) -> Path:
    return layout.mount_ns_dir / "clients" / client


def internet_host(layout: Layout) -> Place:
    return Place("internet host", internet_host_ns(layout))


def sites(layout: Layout, mesh: LabMesh) -> list[ClientSite]:
    """Every client's place in the lab, in mesh.json order (which fixes its addresses)."""
    out: list[ClientSite] = []
    for i, c in enumerate(mesh.clients):
        out.append(
            ClientSite(
                client=c,
                index=i,
                nat_ip=FIRST_NAT_IP + i,
                lan=ipaddress.IPv4Network(f"192.168.{100 + i}.0/24"),
                nat=Place(f"NAT of {c.name}", nat_ns(layout, c.name)),
                laptop=Place(c.name, client_ns(layout, c.name), client_mount_ns(layout, c.name)),
            )
        )
    return out


def site(lab: NetnsLab, name: str) -> ClientSite:
    for s in sites(lab.layout, lab.mesh):
        if s.name == name:
            return s
    raise KeyError(name)


def wanted_namespaces(layout: Layout, mesh: LabMesh) -> list[str]:
    if not mesh.clients:
        return []
    names = [internet_host_ns(layout)]
    for c in mesh.clients:
        names += [nat_ns(layout, c.name), client_ns(layout, c.name)]
    return names


def check_fits(layout: Layout, mesh: LabMesh) -> None:
    """Refuse a mesh whose addresses or names collide with the lab's client wiring."""
    taken = {n.public_ip: n.name for n in mesh.nodes}
    for s in sites(layout, mesh):
        for addr in (s.nat_ip, INTERNET_HOST):
            if addr in taken:
                raise LabError(
                    f"{taken[addr]}'s publicIp {addr} is an address the lab gives a client's NAT box"
                )
        if s.nat_ip >= INTERNET_HOST:
            raise LabError(f"too many clients for the lab internet ({len(mesh.clients)})")
        if not _IFNAME.match(s.interface):
            raise LabError(
                f"client {s.name}: wg-quick cannot name an interface after it (15 characters at most)"
            )
        if not s.client.conf_file.is_file():
            raise LabError(f"client {s.name}: {s.client.conf_file} not found")
        if _DNS_LINE.search(s.client.conf_file.read_text(encoding="utf-8")):
            raise LabError(f"client {s.name}: the lab does not run resolvconf; drop `dns` from lab stacks")


# ----------------------------------------------------------------------------- wiring


def nat_ruleset(s: NatSite, ports: PortRange) -> str:
    """The NAT box's table: the client LAN out of eth0 as nat_ip, UDP/TCP into `ports`."""
    lo, hi = ports
    return f"""
table ip {NAT_TABLE} {{}}
delete table ip {NAT_TABLE}
table ip {NAT_TABLE} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "eth0" ip saddr {s.lan} meta l4proto {{ tcp, udp }} snat ip to {s.nat_ip}:{lo}-{hi}
        oifname "eth0" ip saddr {s.lan} snat ip to {s.nat_ip}
    }}
}}
"""


def uplink(state: LabState, layout: Layout, ns: str, port: str, address: str) -> None:
    """A veth from `ns` (eth0, `address`) to the lab internet bridge (`port`)."""
    inet = layout.internet_ns
    add_namespace(state, ns)
    ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", inet)
    ip(ns, "link", "set", "eth0", "addrgenmode", "none")
    ip(inet, "link", "set", port, "addrgenmode", "none")
    ip(inet, "link", "set", port, "master", BRIDGE, "up")
    ip(ns, "addr", "add", address, "dev", "eth0")
    topology.ipv4_only(ns, "eth0")
    ip(ns, "link", "set", "eth0", "up")


def _attach_internet_host(state: LabState, layout: Layout) -> None:
    """The internet host answers ping, and HTTP on port 80 (an empty page) for people poking at
    the lab; its server lives in its namespace, so teardown stops it with everything else."""
    uplink(state, layout, internet_host_ns(layout), "www0", f"{INTERNET_HOST}/{INTERNET_PREFIX}")
    docs = layout.root / "www"
    docs.mkdir(mode=0o700, exist_ok=True)
    server = [sys.executable or "python3", "-m", "http.server", str(INTERNET_HTTP_PORT)]
    server += ["--bind", str(INTERNET_HOST), "--directory", str(docs)]
    # sh starts it in the background and exits; the server keeps none of our pipes.
    run_in(internet_host(layout), "sh", "-c", f"{shlex.join(server)} </dev/null >/dev/null 2>&1 &")


def attach_behind_nat(
    state: LabState, layout: Layout, s: NatSite, port: str, inside: str, mtu: int | None = None
) -> None:
    """A NAT box (uplink `port` on the lab internet as s.nat_ip) and, on its LAN, the new
    namespace `inside` (eth0, the LAN's second address, default route via the box)."""
    nat = s.nat.netns
    router, address = s.router, s.lan_address
    uplink(state, layout, nat, port, f"{s.nat_ip}/{INTERNET_PREFIX}")
    add_namespace(state, inside)
    ip(nat, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", inside)
    ip(nat, "link", "set", "lan0", "addrgenmode", "none")
    ip(inside, "link", "set", "eth0", "addrgenmode", "none")
    if mtu is not None:
        ip(nat, "link", "set", "lan0", "mtu", str(mtu))
        ip(inside, "link", "set", "eth0", "mtu", str(mtu))
    topology.ipv4_only(nat, "lan0")
    topology.ipv4_only(inside, "eth0")
    ip(nat, "addr", "add", f"{router}/{s.lan.prefixlen}", "dev", "lan0")
    ip(nat, "link", "set", "lan0", "up")
    ip(inside, "addr", "add", f"{address}/{s.lan.prefixlen}", "dev", "eth0")
    ip(inside, "link", "set", "eth0", "up")
    ip(inside, "route", "add", "default", "via", str(router))
    run_in(s.nat, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")  # this namespace's, not the host's
    run_in(s.nat, "nft", "-f", "-", stdin_text=nat_ruleset(s, PORT_RANGES[0]))


def _attach_site(state: LabState, layout: Layout, s: ClientSite) -> None:
    attach_behind_nat(state, layout, s, f"c{s.index}", s.laptop.netns)


def _make_client_fs(state: LabState, layout: Layout, s: ClientSite) -> None:
    """The laptop's own /run (wireguard-go's socket), /etc and /var, bound on <lab>/mnt/clients/<c>."""
    assert s.laptop.mount_ns is not None
    s.laptop.mount_ns.parent.mkdir(mode=0o700, exist_ok=True)
    s.laptop.mount_ns.touch(mode=0o600)
    state.mounts.append(str(s.laptop.mount_ns))
    state.save()
    run(
        topology.private_mounts_argv(s.laptop.netns, s.laptop.mount_ns, ["etc", "var"]),
        what=f"{s.name}: private mount namespace",
        env=topology.private_mounts_env(layout, "16m"),
    )


def _route_nodes_to_sites(lab: NetnsLab, all_sites: list[ClientSite]) -> None:
    """Nodes reach the NAT boxes on-link; gateways also reach the rest of the lab internet."""
    for node in lab.nodes:
        if node.behind_nat:  # behind its own NAT box (lab.netns.homes): its default route is there
            continue
        ns = lab.layout.node_ns(node.name)
        for s in all_sites:
            ip(ns, "route", "add", f"{s.nat_ip}/32", "dev", "eth0", "scope", "link")
        if node.gateway:
            ip(ns, "route", "add", "default", "dev", "eth0", "scope", "link")


def attach_clients(lab: NetnsLab, state: LabState, say: Log) -> None:
    """Wire every client of the mesh behind its NAT box and bring its tunnel up (nodes are up)."""
    layout, mesh = lab.layout, lab.mesh
    if not mesh.clients:
        return
    if shutil.which("conntrack", path=NODE_ENV["PATH"]) is None:
        raise LabError("conntrack is not installed (Debian package conntrack, scripts/install-debs)")
    check_fits(layout, mesh)
    existing = existing_namespaces()
    foreign = [n for n in wanted_namespaces(layout, mesh) if n in existing and not state.owns(n)]
    if foreign:
        raise LabError(f"network namespace(s) {', '.join(foreign)} exist and were not created by this lab")
    all_sites = sites(layout, mesh)
    say(f"{len(all_sites)} client(s) behind NAT boxes, and the internet host {INTERNET_HOST}")
    _attach_internet_host(state, layout)
    for s in all_sites:
        _attach_site(state, layout, s)
        _make_client_fs(state, layout, s)
    _route_nodes_to_sites(lab, all_sites)
    for s in all_sites:
        say(f"{s.name}: wg-quick up {s.client.conf_file}")
        run_in(s.laptop, "wg-quick", "up", str(s.client.conf_file), timeout=60)


# ----------------------------------------------------------------------------- the NAT mapping


def nat_ports(s: NatSite) -> PortRange:
    """The source-port range the NAT box maps its LAN's UDP/TCP into right now."""
    out = run_in(s.nat, "nft", "list", "table", "ip", NAT_TABLE).stdout
    m = _SNAT.search(out)
    if m is None:
        raise LabError(f"{s.nat.label}: no port-range snat rule in table {NAT_TABLE}")
    return int(m.group(1)), int(m.group(2))


def change_nat_ports(s: NatSite) -> PortRange:
    """Move the mapping to the other port range and forget every UDP flow, as a NAT reboot would.

    Returns the new range. The client is not told: its next packet (a keepalive) leaves from
    a new public port, and the nodes must follow it there.
    """
    new = PORT_RANGES[1] if nat_ports(s) == PORT_RANGES[0] else PORT_RANGES[0]
    run_in(s.nat, "nft", "-f", "-", stdin_text=nat_ruleset(s, new))
    forgot = run_in(s.nat, "conntrack", "-D", "-p", "udp", check=False)
    if forgot.returncode not in (0, 1):  # 1: no entry matched, nothing to forget
        raise LabError(f"{s.nat.label}: conntrack -D failed: {tail(forgot.stderr)}")
    return new


_UDP = re.compile(r"^IP (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+): UDP, length \d+$")


def split_nat_wireguard(
    nodes: set[tuple[str, str]], nat_ips: set[str], lines: Sequence[str]
) -> tuple[int, list[str]]:
    """(How many tcpdump lines are WireGuard between a NAT box's mapped port and a node's
    (address, listen port), every other line): what the node underlay check must not count."""

    def mapped(address: str, port: str) -> bool:
        return address in nat_ips and any(lo <= int(port) <= hi for lo, hi in PORT_RANGES)

    wireguard = 0
    kept: list[str] = []
    for line in lines:
        m = _UDP.match(line.strip())
        if m and (
            (mapped(m.group(1), m.group(2)) and (m.group(3), m.group(4)) in nodes)
            or ((m.group(1), m.group(2)) in nodes and mapped(m.group(3), m.group(4)))
        ):
            wireguard += 1
            continue
        kept.append(line)
    return wireguard, kept
