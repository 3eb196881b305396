"""The netns lab's machines and wires.

- `wgm-inet`: the "internet", a bridge joining every node's underlay link. It drops IP
  fragments (many real paths do), so a wrong MTU shows up as a black hole, not as slowness.
- `wgm-node-<n>`: one per node, `eth0` holding the node's lab public IP (/32, with an on-link
  route to each other node; with `publicIp6` also its /128 and on-link routes to the other
  nodes' IPv6), and a private mount namespace (own /run, /sys, and the files
  cloud-init wrote overlaid on /etc, stand-ins over systemctl/sysctl/apt).
- `wgm-lan-<n>`: the network routed behind a node with `subnets`; the node holds the first
  host of each subnet, the lan namespace the second and routes through the node (no route
  at all behind a masquerading node: a jumpbox's network knows nothing of the mesh).

The internet carries IPv6 only between nodes that have a `publicIp6` (`endpoints: ipv6`): the
bridge has no address and does no multicast snooping, IPv6 stays off on every other uplink,
and those nodes' eth0 get no link-local address, no router solicitations and no duplicate
address detection, so the bridge sees only what the nodes send on purpose plus the neighbour
discovery and MLD reports the kernel must send for their addresses (lab.checks.health counts those
as link control).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from lab.core.errors import LabError
from lab.core.manifest import IPNetwork, LabMesh, LabNode
from lab.core.network import add_namespace, ip
from lab.core.proc import NETNS_DIR, NODE_ENV, Place, python_argv, run
from lab.core.state import LabState
from lab.netns.layout import BRIDGE, Layout
from lab.netns.nodeshim import HOST_NETNS_ENV
from lab.netns.script_files import PRIVATE_MOUNTS, script_text

NOFRAG_TABLE = "wgmesh_lab"
# Bridge-level filter in the internet namespace: IPv4 fragments (MF set or an offset) are dropped.
NOFRAG_RULESET = f"""
table bridge {NOFRAG_TABLE} {{
    chain forward {{
        type filter hook forward priority 0; policy accept;
        ip frag-off & 0x3fff != 0 counter drop comment "the lab internet drops IP fragments"
    }}
}}
"""
# Host binaries a node sees replaced by lab.netns.nodeshim (resolved, must be regular files).
SHIMMED = {"systemctl": "/usr/bin/systemctl", "sysctl": "/usr/sbin/sysctl", "apt-get": "/usr/bin/apt-get"}
SHIMMED_OPTIONAL = {"apt": "/usr/bin/apt"}
# Directories that are not overlaid from the written files (kernel or per-node filesystems).
NOT_OVERLAID = frozenset({"proc", "sys", "dev", "run"})
# Always overlaid (tmpfs upper), so whatever a node writes there never reaches the host.
ALWAYS_OVERLAID = ("etc", "root", "var")


def subnet_hosts(
    net: IPNetwork,
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """(the node's address, the lan host's address) in a routed subnet: its first two hosts."""
    hosts: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = list(itertools.islice(net.hosts(), 2))
    if len(hosts) < 2:
        raise LabError(f"subnet {net} is too small for a router and a host")
    return hosts[0], hosts[1]


def place_node(layout: Layout, node: str) -> Place:
    return Place(node, layout.node_ns(node), layout.mount_ns(node))


def place_lan(layout: Layout, node: str) -> Place:
    return Place(f"behind {node}", layout.lan_ns(node))


def place_internet(layout: Layout) -> Place:
    return Place("internet", layout.internet_ns)


def wanted_namespaces(layout: Layout, mesh: LabMesh) -> list[str]:
    names = [layout.internet_ns]
    for n in mesh.nodes:
        names.append(layout.node_ns(n.name))
        if n.subnets:
            names.append(layout.lan_ns(n.name))
    return names


def build_internet(state: LabState, layout: Layout) -> None:
    inet = layout.internet_ns
    add_namespace(state, inet)
    # No multicast snooping: a snooping bridge joins the snoopers' groups (224.0.0.106, ff02::6a)
    # and reports them over IGMP and MLD at a random moment, which an underlay capture catches.
    ip(inet, "link", "add", BRIDGE, "type", "bridge", "mcast_snooping", "0")
    ip(inet, "link", "set", BRIDGE, "addrgenmode", "none")
    ip(inet, "link", "set", BRIDGE, "up")
    run(
        place_internet(layout).argv("nft", "-f", "-"),
        what="internet: fragment-dropping bridge filter",
        stdin_text=NOFRAG_RULESET,
    )


def attach_node(state: LabState, layout: Layout, mesh: LabMesh, index: int, node: LabNode) -> None:
    """The node's namespace and its underlay link to the internet bridge, at its underlay MTU."""
    ns, inet = layout.node_ns(node.name), layout.internet_ns
    port = f"p{index}"
    mtu = str(node.underlay_mtu)
    add_namespace(state, ns)
    ip(ns, "link", "add", "eth0", "mtu", mtu, "type", "veth", "peer", "name", port, "netns", inet)
    ip(ns, "link", "set", "eth0", "addrgenmode", "none")
    ip(inet, "link", "set", port, "mtu", mtu, "addrgenmode", "none")
    ip(inet, "link", "set", port, "master", BRIDGE, "up")
    ip(ns, "addr", "add", f"{node.public_ip}/32", "dev", "eth0")
    if node.public_ip6 is None:
        # Else a node that forwards IPv6 (cidr6) joins the all-routers group and reports it here.
        ipv4_only(ns, "eth0")
    else:
        ipv6_underlay(ns, "eth0")
        ip(ns, "-6", "addr", "add", f"{node.public_ip6}/128", "dev", "eth0", "nodad")
    ip(ns, "link", "set", "eth0", "up")
    for other in mesh.nodes:
        if other.name == node.name or other.behind_nat:  # behind NAT: reached at its NAT box (homes)
            continue
        ip(ns, "route", "add", f"{other.public_ip}/32", "dev", "eth0", "scope", "link")
        if node.public_ip6 is not None and other.public_ip6 is not None:
            ip(ns, "-6", "route", "add", f"{other.public_ip6}/128", "dev", "eth0")


def ipv4_only(netns: str, iface: str) -> None:
    """No IPv6 on a lab wire (this namespace's key, never the host's): the lab internet is IPv4
    only, so no MLD report appears in a capture that proves what crosses it."""
    _ipv6_conf(netns, iface, {"disable_ipv6": "1"}, f"no IPv6 on {iface}")


# IPv6 on a node's uplink, as quiet as the kernel allows: no router solicitations (nothing to
# configure from), no duplicate address detection (the lab hands out unique addresses).
_IPV6_UNDERLAY_SYSCTLS = {
    "disable_ipv6": "0",
    "accept_ra": "0",
    "router_solicitations": "0",
    "accept_dad": "0",
}


def ipv6_underlay(netns: str, iface: str) -> None:
    """IPv6 on a node's lab uplink (a node with `publicIp6`), set before the link comes up."""
    _ipv6_conf(netns, iface, _IPV6_UNDERLAY_SYSCTLS, f"IPv6 underlay on {iface}")


def _ipv6_conf(netns: str, iface: str, values: dict[str, str], what: str) -> None:
    """Write `net.ipv6.conf.<iface>.*` keys inside the namespace (per-namespace keys only)."""
    writes = "; ".join(f"echo {v} > /proc/sys/net/ipv6/conf/{iface}/{k}" for k, v in values.items())
    run(["nsenter", f"--net={NETNS_DIR / netns}", "--", "sh", "-c", writes], what=f"{netns}: {what}")


def attach_lan(state: LabState, layout: Layout, node: LabNode) -> None:
    """A namespace behind the node holding a host in each of its subnets.

    The hosts route through the node, except behind a masquerading node (jumpbox): there the
    network has no route back to the mesh at all (a VLAN of webcams with no gateway), so only
    the node's NAT can make replies find their way.
    """
    ns, lan = layout.node_ns(node.name), layout.lan_ns(node.name)
    add_namespace(state, lan)
    defaults: set[int] = set() if not node.masquerade else {4, 6}
    made: set[str] = set()
    for (inner, outer), net in zip(lan_links(node), node.subnets, strict=True):
        router, host = subnet_hosts(net)
        nodad = ["nodad"] if net.version == 6 else []  # usable at once, no duplicate detection wait
        if inner not in made:
            made.add(inner)
            ip(ns, "link", "add", inner, "type", "veth", "peer", "name", outer, "netns", lan)
        ip(ns, "addr", "add", f"{router}/{net.prefixlen}", "dev", inner, *nodad)
        ip(ns, "link", "set", inner, "up")
        ip(lan, "addr", "add", f"{host}/{net.prefixlen}", "dev", outer, *nodad)
        ip(lan, "link", "set", outer, "up")
        if net.version not in defaults:
            defaults.add(net.version)
            ip(lan, f"-{net.version}", "route", "add", "default", "via", str(router))


def lan_links(node: LabNode) -> list[tuple[str, str]]:
    """(the node's interface, the lan namespace's interface) for each of the node's subnets.

    One link per subnet (lan<j> / eth<j>), except on a node with `lanInterface`: every subnet
    sits on that one interface (named as the stack says, e.g. wlp0s0f0), eth0 on the far side,
    so its rendered masquerade rule (`oifname "<lanInterface>"`) meets a real interface.
    """
    if node.lan_interface is not None:
        return [(node.lan_interface, "eth0")] * len(node.subnets)
    return [(f"lan{j}", f"eth{j}") for j in range(len(node.subnets))]


# ----------------------------------------------------------------------------- node filesystems


def write_shims(layout: Layout) -> dict[str, str]:
    """Shim scripts under the lab dir; returns {shim file: host binary it covers}."""
    layout.shim_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    covers: dict[str, str] = {}
    seen: set[str] = set()
    for tool, target in {**SHIMMED, **SHIMMED_OPTIONAL}.items():
        real = os.path.realpath(target)
        if not os.path.isfile(real):
            if tool in SHIMMED:
                raise LabError(f"{target} not found: the lab replaces it inside nodes and needs it to exist")
            continue
        if real in seen:
            raise LabError(f"{target} and another shimmed tool are the same file ({real})")
        seen.add(real)
        script = layout.shim_dir / tool
        host = f"{HOST_NETNS_ENV}={os.stat('/proc/self/ns/net').st_ino}"
        argv = python_argv("lab.netns.nodeshim", tool)
        script.write_text(f'#!/bin/sh\nexec {shlex.join([argv[0], host, *argv[1:]])} "$@"\n')
        script.chmod(0o755)
        covers[str(script)] = real
    return covers


def prepare_mount_ns_dir(state: LabState, layout: Layout) -> None:
    """A private bind mount to hold mount-namespace files (a shared one would loop)."""
    d = layout.mount_ns_dir
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    state.mounts.append(str(d))
    state.save()
    run(["mount", "--bind", str(d), str(d)], what="bind the lab's mount-namespace dir")
    run(["mount", "--make-private", str(d)], what="make the lab's mount-namespace dir private")


def overlaid_dirs(files: Path) -> list[str]:
    """/etc, /root, /var and any other top-level directory holding written files.

    Each is an overlay in the node's mount namespace: the host's directory read-only below,
    the node's written files and later writes in a tmpfs above.
    """
    written = {p.name for p in files.iterdir() if p.is_dir()} if files.is_dir() else set()
    for top in sorted(written - NOT_OVERLAID):
        if not Path("/", top).is_dir():
            raise LabError(f"/{top} does not exist on the lab host: cannot place written files there")
    always = {t for t in ALWAYS_OVERLAID if Path("/", t).is_dir()}
    return sorted((written - NOT_OVERLAID) | always)


def make_node_fs(state: LabState, layout: Layout, node: str, files: Path, shims: dict[str, str]) -> None:
    """The node's persistent private mount namespace, bound on <lab>/mnt/<node>."""
    ns_file = layout.mount_ns(node)
    ns_file.touch(mode=0o600)
    state.mounts.append(str(ns_file))
    state.save()
    run(
        private_mounts_argv(layout.node_ns(node), ns_file, overlaid_dirs(files), shims),
        what=f"{node}: private mount namespace",
        env=private_mounts_env(layout, "64m", written_files=files),
    )


def private_mounts_argv(
    netns: str, mount_ns: Path, overlaid: Sequence[str], shims: dict[str, str] | None = None
) -> list[str]:
    """lab/netns/scripts/private-mounts.sh in a new mount namespace of `netns`, bound on `mount_ns`."""
    binds = [f"{shim}={target}" for shim, target in (shims or {}).items()]
    return [
        "nsenter", f"--net={NETNS_DIR / netns}", "--",
        "unshare", f"--mount={mount_ns}", "--propagation", "private", "--",
        "sh", "-c", script_text(PRIVATE_MOUNTS), "private-mounts", *overlaid, "--", *binds,
    ]  # fmt: skip


def private_mounts_env(layout: Layout, run_size: str, written_files: Path | None = None) -> dict[str, str]:
    """The script's settings: the lab's mount-ns dir, /run's size, the files to show (a node's)."""
    env = {**NODE_ENV, "LAB_MOUNT_NS_DIR": str(layout.mount_ns_dir), "RUN_SIZE": run_size}
    if written_files is not None:
        env |= {"WRITTEN_FILES": str(written_files), "MOUNT_SYSFS": "1"}
    return env


def lan_addresses(node: LabNode) -> Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return [subnet_hosts(net)[1] for net in node.subnets]
