"""Day-2 changes in a running netns lab: add or remove a node, and apply a new render live.

`apply` runs the exact command a live update runs on a node (cloudinit.sync.apply_command,
without sudo: the lab is root) inside the node, with the node's bundle (cloudinit/bundle.py;
tools.render writes it next to the user-data) on stdin, the way components/sync.py runs it
over SSH. `apply_update` runs a whole update in the order
Pulumi runs the `<node>-peers` and `<node>-sync` commands: every changed node's peers-only
apply, then every full apply. `health` runs a node's post-update health check
(components/health.py's command). `add_node` boots one more node namespace from a newer
render (same keys file), `remove_node` takes one away by PID, mount and namespace, and both
keep the lab's state file exact so `python -m lab down` still removes everything.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cloudinit.healthcheck import SUMMARY_PREFIX as HEALTH_PREFIX
from cloudinit.healthcheck import expected_peers, health_command
from cloudinit.sync import apply_command, parse_summary
from lab.core.errors import LabError
from lab.core.manifest import LabMesh, load_mesh
from lab.core.network import ip, namespace_inode
from lab.core.proc import NODE_ENV, Place, run, run_in
from lab.core.processes import processes_in, stop_processes
from lab.core.state import LabState, load_state
from lab.netns import topology
from lab.netns.boot import run_commands, write_files
from lab.netns.layout import Layout
from lab.netns.running import NetnsLab
from lab.netns.userdata import parse_user_data
from mesh.plan import build_plan
from mesh.stackfile import load_spec
from tools.render import BUNDLE_FILE


def rendered_bundle(render_dir: Path, node: str) -> str:
    """The node's apply payload as `make render` writes it (tools.render). Secret: never log it."""
    path = render_dir / node / BUNDLE_FILE
    if not path.is_file():
        raise LabError(f"{node}: no {BUNDLE_FILE} in {render_dir} (render it with tools.render)")
    return path.read_text()


@dataclass(frozen=True)
class Applied:
    node: str
    summary: dict[str, str]  # the script's key=value summary (action, peers, routes_added, ...)
    seconds: float  # wall time of the whole command, nsenter included
    started: float = 0.0  # unix time the command started
    ended: float = 0.0  # ... and returned


def apply(lab: NetnsLab, node: str, payload: str, *, peers_only: bool = False) -> Applied:
    """Run the live-update command (or its peers-only phase) inside `node` with `payload` on stdin.

    `payload`: the node's bundle (what components/sync.py sends), or a bare wg0.conf.
    """
    started, start = time.time(), time.monotonic()
    command = apply_command(sudo=False, peers_only=peers_only)
    proc = run_in(lab.node(node), "sh", "-c", command, stdin_text=payload, timeout=60)
    return Applied(node, parse_summary(proc.stdout), time.monotonic() - start, started, time.time())


def apply_render(
    lab: NetnsLab, render_dir: Path, nodes: list[str], *, peers_only: bool = False
) -> list[Applied]:
    """Apply each listed node's bundle from `render_dir`, all at once (as Pulumi runs them)."""
    bundles = {n: rendered_bundle(render_dir, n) for n in nodes}
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return list(pool.map(lambda n: apply(lab, n, bundles[n], peers_only=peers_only), nodes))


@dataclass(frozen=True)
class Update:
    """One update as Pulumi runs it: every `-peers` command, then every `-sync` command."""

    peers: list[Applied]
    sync: list[Applied]

    @property
    def peers_learned(self) -> float:
        """Unix time the last peers-only apply returned: every node knows every new key."""
        return max(a.ended for a in self.peers)

    def of(self, node: str) -> tuple[Applied, Applied]:
        return next(a for a in self.peers if a.node == node), next(a for a in self.sync if a.node == node)


def apply_update(lab: NetnsLab, render_dir: Path, nodes: list[str]) -> Update:
    """The listed nodes' new bundles in Pulumi's order: a node's `-sync` waits for the `-peers` of
    itself and all its peers; in a full mesh that is every `-peers`, so: all peers-only applies
    (in parallel), then all full applies (in parallel)."""
    peers = apply_render(lab, render_dir, nodes, peers_only=True)
    return Update(peers, apply_render(lab, render_dir, nodes))


@dataclass(frozen=True)
class Health:
    """A health check's exit status, its table by peer name, and its verdict line."""

    returncode: int
    rows: dict[str, str]  # peer name -> its table row
    verdict: str  # the `wgmesh-health: <node>: ...` line
    seconds: float


def health(lab: NetnsLab, stack_file: Path, render_dir: Path, node: str, *, wait: int = 30) -> Health:
    """Run the node's health check inside it: the command components/health.py runs over SSH
    (expected peers from the plan, keys from the render; no sudo: the lab is root)."""
    plan = build_plan(load_spec(stack_file))
    keys = {n.name: n.public_key for n in load_mesh(render_dir).nodes}
    command = health_command(
        node, expected_peers(plan, node, keys), plan.node(node).iface.mtu, sudo=False, wait=wait
    )
    start = time.monotonic()
    proc = run_in(lab.node(node), "sh", "-c", command, check=False, timeout=wait + 60)
    lines = proc.stdout.splitlines()
    verdicts = [ln for ln in lines if ln.startswith(HEALTH_PREFIX)]
    rows = {ln.split()[0]: ln for ln in lines[1:] if ln.strip() and not ln.startswith(HEALTH_PREFIX)}
    return Health(proc.returncode, rows, verdicts[-1] if verdicts else "", time.monotonic() - start)


# ----------------------------------------------------------------------------- membership


def _state(layout: Layout) -> LabState:
    state = load_state(layout.state_file)
    if state is None:
        raise LabError("no netns lab is up")
    return state


def _free_port_index(layout: Layout) -> int:
    """An index whose bridge port name (p<i>) is not in use in the internet namespace."""
    out = run(["ip", "-n", layout.internet_ns, "-o", "link", "show"], what="list bridge ports").stdout
    used = {int(m.group(1)) for m in re.finditer(r"^\d+: p(\d+)@", out, re.MULTILINE)}
    return next(i for i in range(len(used) + 1) if i not in used)


def add_node(layout: Layout, render_dir: Path, name: str) -> NetnsLab:
    """Boot node `name` of a newer render into the running lab (its wg0 comes up as on first boot).

    The other nodes are not touched except for an underlay route to the new node's public IP
    (in a cloud it is just reachable); their wg0 learns the node only through `apply`.
    """
    state = _state(layout)
    mesh = load_mesh(render_dir)
    node = mesh.node(name)
    ud = parse_user_data(node.user_data.read_text(), f"{name}/user-data")
    topology.attach_node(state, layout, mesh, _free_port_index(layout), node)
    if node.subnets:
        topology.attach_lan(state, layout, node)
    for other in state.nodes:
        ip(layout.node_ns(other), "route", "replace", f"{node.public_ip}/32", "dev", "eth0", "scope", "link")
    write_files(layout, node, ud)
    shims = topology.write_shims(layout)
    topology.make_node_fs(state, layout, name, layout.node_dir(name) / "written", shims)
    state.nodes.append(name)
    state.render_dir = str(render_dir)
    state.save()
    lab = NetnsLab(layout, _booted(mesh, state.nodes))
    run_commands(lab, node, ud)
    return lab


def remove_node(layout: Layout, render_dir: Path, name: str) -> NetnsLab:
    """Take node `name` (and the network behind it) out of the lab: processes, mount, namespaces."""
    state = _state(layout)
    mesh = load_mesh(render_dir)
    public_ip = _public_ip_of(layout, name)
    namespaces = [r for r in state.namespaces if r.name in (layout.node_ns(name), layout.lan_ns(name))]
    inodes = {i for r in namespaces if (i := namespace_inode(r.name)) is not None}
    stuck = stop_processes(processes_in(inodes))
    if stuck:
        raise LabError(f"{name}: processes {[r.pid for r in stuck]} would not stop")
    mount_ns = str(layout.mount_ns(name))
    if run(["umount", mount_ns], check=False).returncode != 0:
        run(["umount", "--lazy", mount_ns], what=f"{name}: unmount its mount namespace")
    state.mounts = [m for m in state.mounts if m != mount_ns]
    for record in namespaces:
        run(["ip", "netns", "delete", record.name], what=f"delete namespace {record.name}")
    state.namespaces = [r for r in state.namespaces if r not in namespaces]
    state.nodes = [n for n in state.nodes if n != name]
    state.render_dir = str(render_dir)
    state.save()
    Path(mount_ns).unlink(missing_ok=True)
    if public_ip is not None:
        for other in state.nodes:
            run(["ip", "-n", layout.node_ns(other), "route", "del", f"{public_ip}/32"], check=False)
    return NetnsLab(layout, _booted(mesh, state.nodes))


def _public_ip_of(layout: Layout, name: str) -> str | None:
    out = run(
        ["ip", "-n", layout.node_ns(name), "-4", "-o", "addr", "show", "dev", "eth0"], check=False
    ).stdout
    m = re.search(r"inet (\S+)/32", out)
    return m.group(1) if m else None


def _booted(mesh: LabMesh, names: list[str]) -> LabMesh:
    """The render's mesh restricted to the nodes the lab runs (a render may list one not booted yet)."""
    return LabMesh(
        stack=mesh.stack,
        cidr=mesh.cidr,
        nodes=tuple(n for n in mesh.nodes if n.name in names),
        skipped=mesh.skipped,
        clients=mesh.clients,
        topology=mesh.topology,
        cidr6=mesh.cidr6,
    )


def kill_wireguard(layout: Layout, name: str) -> int:
    """SIGKILL the node's wireguard-go (a crashed node); returns its PID."""
    inode = namespace_inode(layout.node_ns(name))
    found = [r for r in processes_in({inode} if inode is not None else set()) if r.what == "wireguard-go"]
    if len(found) != 1:
        raise LabError(f"{name}: expected one wireguard-go, found {len(found)}")
    os.kill(found[0].pid, signal.SIGKILL)
    return found[0].pid


# ----------------------------------------------------------------------------- observation


def wg0_routes(place: Place) -> set[str]:
    """Destinations routed on wg0 (IPv4), as `ip route` prints them."""
    out = run_in(place, "ip", "-4", "route", "show", "dev", "wg0").stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@dataclass
class PingLog:
    """A running `ping -i 0.02`: every reply's sequence number, and ping's own summary at the end."""

    proc: subprocess.Popen[str]
    summary: str = ""
    replies: frozenset[int] = frozenset()
    reply_times: dict[int, float] = field(default_factory=dict)  # sequence -> unix time of its reply
    sent: int = 0
    received: int = 0

    def missing(self) -> list[int]:
        """Sequence numbers with no reply, below the last one answered."""
        return [s for s in range(1, max(self.replies, default=0)) if s not in self.replies]

    def longest_silence(self) -> tuple[float, float]:
        """Unix times of the two consecutive replies furthest apart (the outage, plus one interval)."""
        times = [self.reply_times[s] for s in sorted(self.reply_times)]
        if len(times) < 2:
            return (0.0, 0.0)
        return max(itertools.pairwise(times), key=lambda pair: pair[1] - pair[0])

    @property
    def lost(self) -> int:
        """Probes with no reply among those sent before the last reply (the final in-flight probe,
        cut off when ping is stopped, is not a loss)."""
        last = max(self.replies, default=0)
        return last - len({s for s in self.replies if s <= last})


_REPLY = re.compile(r"^\[([\d.]+)\] \d+ bytes from .* icmp_seq=(\d+)", re.MULTILINE)
_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")


@contextlib.contextmanager
def continuous_ping(src: Place, dst: str, interval: float = 0.02) -> Iterator[PingLog]:
    """Ping `dst` from `src` every `interval` seconds for the duration of the block."""
    with tempfile.TemporaryFile("w+") as sink:  # a file, not a pipe: ping never blocks on a full pipe
        proc = subprocess.Popen(
            src.argv("ping", "-n", "-D", "-O", "-i", f"{interval:g}", dst),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=dict(NODE_ENV),
        )
        log = PingLog(proc)
        try:
            yield log
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            sink.seek(0)
            out = sink.read()
        log.reply_times = {int(m.group(2)): float(m.group(1)) for m in _REPLY.finditer(out)}
        log.replies = frozenset(log.reply_times)
        counts = _SUMMARY.search(out)
        if counts:
            log.sent, log.received = int(counts.group(1)), int(counts.group(2))
        log.summary = next((ln for ln in out.splitlines() if "packets transmitted" in ln), "")
