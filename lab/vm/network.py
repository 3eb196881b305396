"""The VM lab's private network: namespaces, bridges, taps and subnet hosts, with a record of each.

Everything lives in network namespaces this module creates (prefix `wglabvm`), so lab traffic
never reaches the host's own network and no host setting changes. Every namespace and link is
written to the state file *before* it is created, so `down` can remove a half-built lab, and
`down` only removes what the state file lists.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools.secretfiles import write_private

NS_PREFIX = "wglabvm"
METADATA_ADDRESS = ipaddress.IPv4Address("169.254.169.254")
METADATA_USER_DATA = "wgmesh lab stand-in user data (no key here)\n"
NS_PREFIX_ENV = "WGMESH_LAB_VM_NETNS"  # tests use their own, so they never meet a `make lab-vm`
STATE_FILE = "state.json"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class NotOurs(RuntimeError):
    """Something the lab would create already exists and no state file says the lab made it."""


@dataclass
class State:
    """What the VM lab created, in creation order (removed in reverse)."""

    directory: str
    namespaces: list[str] = field(default_factory=list)
    links: list[list[str]] = field(default_factory=list)  # [namespace, link name]
    pids: dict[str, int] = field(default_factory=dict)  # node -> QEMU PID
    servers: dict[str, int] = field(default_factory=dict)  # helper name -> PID (the metadata host)

    @property
    def path(self) -> Path:
        return Path(self.directory) / STATE_FILE

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        write_private(tmp, json.dumps(asdict(self), indent=1))  # never through a planted symlink
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, directory: Path) -> State | None:
        try:
            doc = json.loads((directory / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        return cls(
            directory=doc["directory"],
            namespaces=list(doc["namespaces"]),
            links=[list(link) for link in doc["links"]],
            pids={k: int(v) for k, v in doc["pids"].items()},
            servers={k: int(v) for k, v in doc.get("servers", {}).items()},
        )


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc


def namespace_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def ns_prefix() -> str:
    """The lab's main namespace name, also the prefix of its subnet-host namespaces."""
    return os.environ.get(NS_PREFIX_ENV) or NS_PREFIX


def our_namespaces() -> list[str]:
    """Namespaces carrying the lab's prefix (whether or not a state file lists them)."""
    run_netns = Path("/run/netns")
    if not run_netns.is_dir():
        return []
    return sorted(p.name for p in run_netns.iterdir() if p.name.startswith(ns_prefix()))


def add_namespace(state: State, name: str) -> None:
    if namespace_exists(name):
        raise NotOurs(f"network namespace {name} exists but this lab's state does not list it")
    state.namespaces.append(name)
    state.save()
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def add_bridge(state: State, netns: str, name: str, mtu: int) -> None:
    state.links.append([netns, name])
    state.save()
    ip("link", "add", name, "mtu", str(mtu), "type", "bridge", netns=netns)
    ip("link", "set", name, "up", netns=netns)


def add_tap(state: State, netns: str, name: str, bridge: str, mtu: int) -> None:
    """A persistent tap QEMU opens by name, plugged into `bridge`."""
    state.links.append([netns, name])
    state.save()
    ip("tuntap", "add", name, "mode", "tap", netns=netns)
    ip("link", "set", name, "mtu", str(mtu), "master", bridge, "up", netns=netns)


def subnet_host_addresses(net: IPNetwork) -> tuple[str, str]:
    """(node side, host side) interface addresses in a routed subnet: network + 1 and + 2."""
    if net.num_addresses < 4:
        raise ValueError(f"subnet {net} is too small for the lab (needs a node and a host address)")
    return (
        f"{net.network_address + 1}/{net.prefixlen}",
        f"{net.network_address + 2}/{net.prefixlen}",
    )


def add_subnet_host(state: State, netns: str, bridge: str, host_ns: str, veth: str, net: IPNetwork) -> None:
    """A namespace on `bridge` standing for a machine in `net`, routed via the node at network + 1."""
    add_namespace(state, host_ns)
    state.links.append([netns, veth])
    state.save()
    node_side, host_side = subnet_host_addresses(net)
    ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host_ns, netns=netns)
    ip("link", "set", veth, "master", bridge, "up", netns=netns)
    ip("addr", "add", host_side, "dev", "eth0", netns=host_ns)
    ip("link", "set", "eth0", "up", netns=host_ns)
    gateway = node_side.split("/")[0]
    ip("route", "add", "default", "via", gateway, netns=host_ns)


def remove_network(state: State) -> list[str]:
    """Delete the listed links, then the listed namespaces; return what could not be removed."""
    leftovers: list[str] = []
    for netns, link in reversed(state.links):
        if namespace_exists(netns) and ip("link", "show", link, netns=netns, check=False).returncode == 0:
            proc = ip("link", "del", link, netns=netns, check=False)
            if proc.returncode != 0:
                leftovers.append(f"link {link} in {netns}: {proc.stderr.strip()}")
    for name in reversed(state.namespaces):
        if namespace_exists(name):
            proc = ip("netns", "del", name, check=False)
            if proc.returncode != 0:
                leftovers.append(f"namespace {name}: {proc.stderr.strip()}")
    return leftovers


def ping_from(netns: str, address: str, count: int = 3) -> bool:
    """Ping from inside one of the lab's namespaces."""
    argv = ["ip", "netns", "exec", netns, "ping", "-n", "-q", "-c", str(count), "-W", "2", address]
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode == 0


def add_metadata_host(state: State, netns: str, bridge: str, gateway: str, docroot: Path) -> None:
    """The bridge becomes the VMs' gateway holding 169.254.169.254, where an HTTP server answers.

    The server's command line names `docroot` (inside the lab's state directory): that is how
    `stop_servers` knows the PID is still ours.
    """
    ip("addr", "add", gateway, "dev", bridge, netns=netns)
    ip("addr", "add", f"{METADATA_ADDRESS}/32", "dev", bridge, netns=netns)
    (docroot / "latest").mkdir(parents=True, exist_ok=True)
    (docroot / "latest" / "user-data").write_text(METADATA_USER_DATA)
    python = shutil.which("python3", path="/usr/bin:/bin") or "python3"
    argv = ["ip", "netns", "exec", netns, python, "-m", "http.server"]
    argv += ["--bind", str(METADATA_ADDRESS), "--directory", str(docroot), "80"]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env, start_new_session=True,
    )  # fmt: skip
    state.servers["metadata"] = proc.pid  # `ip netns exec` execs: this PID is the server
    state.save()


def server_alive(pid: int, directory: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"http.server" in cmdline and f"{directory}/".encode() in cmdline


def stop_servers(state: State, grace: float = 5.0) -> list[str]:
    """SIGTERM (then SIGKILL) each recorded helper that is still ours; return those still running."""
    directory = Path(state.directory)
    left = []
    for name, pid in state.servers.items():
        if not server_alive(pid, directory):
            continue
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + grace
        while server_alive(pid, directory) and time.monotonic() < end:
            time.sleep(0.1)
        if server_alive(pid, directory):
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)
        if server_alive(pid, directory):
            left.append(f"{name} server {pid}")
    return left
