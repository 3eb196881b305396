"""The VM lab's private network: bridges, taps, subnet hosts and the metadata host, in namespaces.

Everything lives in network namespaces the lab creates (prefix `wglabvm`), so lab traffic never
reaches the host's own network and no host setting changes. Namespaces, links and helper
processes are recorded in the lab state (lab/core/state.py: namespaces by name and inode,
processes by PID and start time) *before* they exist or right after they start, so `down` can
remove a half-built lab and removes only what the state lists (lab/core/network.py).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

from lab.core.errors import LabError
from lab.core.network import add_namespace, existing_namespaces, ip, record_link
from lab.core.proc import run
from lab.core.processes import process_record
from lab.core.state import LabState

NS_PREFIX = "wglabvm"
METADATA_ADDRESS = ipaddress.IPv4Address("169.254.169.254")
METADATA_USER_DATA = "wgmesh lab stand-in user data (no key here)\n"
METADATA_SERVER = "metadata server"  # its process record's `what`
NS_PREFIX_ENV = "WGMESH_LAB_VM_NETNS"  # tests use their own, so they never meet a `make lab-vm`

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def in_netns(netns: str, *cmd: str) -> list[str]:
    """`cmd` run inside one of the lab's namespaces (QEMU, ssh, ping, the metadata server)."""
    return ["ip", "netns", "exec", netns, *cmd]


def ns_prefix() -> str:
    """The lab's main namespace name, also the prefix of its subnet-host namespaces."""
    return os.environ.get(NS_PREFIX_ENV) or NS_PREFIX


def our_namespaces() -> list[str]:
    """Namespaces carrying the lab's prefix (whether or not a state file lists them)."""
    return sorted(n for n in existing_namespaces() if n.startswith(ns_prefix()))


def add_bridge(state: LabState, netns: str, name: str, mtu: int) -> None:
    record_link(state, netns, name)
    ip(netns, "link", "add", name, "mtu", str(mtu), "type", "bridge")
    ip(netns, "link", "set", name, "up")


def add_tap(state: LabState, netns: str, name: str, bridge: str, mtu: int) -> None:
    """A persistent tap QEMU opens by name, plugged into `bridge`."""
    record_link(state, netns, name)
    ip(netns, "tuntap", "add", name, "mode", "tap")
    ip(netns, "link", "set", name, "mtu", str(mtu), "master", bridge, "up")


def subnet_host_addresses(net: IPNetwork) -> tuple[str, str]:
    """(node side, host side) interface addresses in a routed subnet: network + 1 and + 2."""
    if net.num_addresses < 4:
        raise LabError(f"subnet {net} is too small for the lab (needs a node and a host address)")
    return (
        f"{net.network_address + 1}/{net.prefixlen}",
        f"{net.network_address + 2}/{net.prefixlen}",
    )


def add_subnet_host(
    state: LabState, netns: str, bridge: str, host_ns: str, veth: str, net: IPNetwork
) -> None:
    """A namespace on `bridge` standing for a machine in `net`, routed via the node at network + 1."""
    add_namespace(state, host_ns)
    record_link(state, netns, veth)
    node_side, host_side = subnet_host_addresses(net)
    ip(netns, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host_ns)
    ip(netns, "link", "set", veth, "master", bridge, "up")
    ip(host_ns, "addr", "add", host_side, "dev", "eth0")
    ip(host_ns, "link", "set", "eth0", "up")
    gateway = node_side.split("/")[0]
    ip(host_ns, "route", "add", "default", "via", gateway)


def ping_from(netns: str, address: str, count: int = 3) -> bool:
    """Ping from inside one of the lab's namespaces."""
    argv = in_netns(netns, "ping", "-n", "-q", "-c", str(count), "-W", "2", address)
    return run(argv, check=False, timeout=30).returncode == 0


def add_metadata_host(state: LabState, netns: str, bridge: str, gateway: str, docroot: Path) -> None:
    """The bridge becomes the VMs' gateway holding 169.254.169.254, where an HTTP server answers.

    The server is recorded by PID and start time, so `down` stops it and nothing else.
    """
    ip(netns, "addr", "add", gateway, "dev", bridge)
    ip(netns, "addr", "add", f"{METADATA_ADDRESS}/32", "dev", bridge)
    (docroot / "latest").mkdir(parents=True, exist_ok=True)
    (docroot / "latest" / "user-data").write_text(METADATA_USER_DATA)
    python = shutil.which("python3", path="/usr/bin:/bin") or "python3"
    argv = in_netns(netns, python, "-m", "http.server", "--bind", str(METADATA_ADDRESS))
    argv += ["--directory", str(docroot), "80"]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env, start_new_session=True,
    )  # fmt: skip
    state.processes.append(process_record(proc.pid, METADATA_SERVER))  # `ip netns exec` execs: the server
    state.save()
