"""The netns driver: boot every `cloud: lab` node of a rendered mesh in network namespaces.

Per node, in the order a VM's first boot would: cloud-init writes the files (lab.netns.sandbox),
the node's mount namespace shows them at their rendered paths, then bootcmd/runcmd run as
rendered inside the node (systemctl, sysctl and apt are lab.netns.nodeshim there), and
wg-quick brings wg0 up on wireguard-go. The lab stays up until `down`.

`up` when a lab is already up tears the old one down first (fresh keys every time).
Any failure or Ctrl-C during `up` removes everything created so far.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from lab.checks import health
from lab.checks.mtu import format_scenario, mtu_scenario
from lab.checks.report import format_report
from lab.core.errors import LabError
from lab.core.manifest import LabMesh, LabNode, load_mesh
from lab.core.network import existing_namespaces, namespace_inode
from lab.core.probes import parallel
from lab.core.proc import NODE_ENV, is_root
from lab.core.processes import processes_in
from lab.core.state import LabState, foreign_namespaces, load_state
from lab.netns import clients, homes, topology
from lab.netns.boot import run_commands, run_installer, write_files
from lab.netns.layout import Layout
from lab.netns.running import NetnsLab
from lab.netns.teardown import tear_down
from lab.netns.userdata import NodeUserData, parse_user_data
from mesh.errors import ConfigError, RenderError
from tools.render import render_to

Log = Callable[[str], None]
DEFAULT_LAYOUT = Layout()
REQUIRED_TOOLS = (
    "ip", "nsenter", "unshare", "mount", "umount", "chroot", "sh", "bash", "cloud-init",
    "wg", "wg-quick", "wireguard-go", "nft", "ping", "tcpdump", "dpkg-query",
)  # fmt: skip
HANDSHAKE_TIMEOUT = 20.0


def unavailable_reason() -> str | None:
    """Why the netns lab cannot run on this machine, or None."""
    if not is_root():
        return "the netns lab needs root (network namespaces, mounts)"
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t, path=NODE_ENV["PATH"]) is None]
    if missing:
        return f"missing tools for the netns lab: {' '.join(missing)} (scripts/install-debs)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (wireguard-go needs it)"
    return None


@dataclass(frozen=True)
class BringUp:
    lab: NetnsLab
    wg_up_seconds: float  # start of bring-up until wg-quick returned on every node
    mesh_seconds: float | None  # start until every node had a handshake with every other


def _stamp(start: float, log: Log) -> Log:
    return lambda message: log(f"[{time.monotonic() - start:5.1f}s] {message}")


def bring_up(
    render_dir: Path,
    *,
    layout: Layout = DEFAULT_LAYOUT,
    stack: str | None = None,
    owns_render_dir: bool = False,
    log: Log = lambda _: None,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    installer: bool = False,
) -> BringUp:
    """Boot the rendered mesh; on any failure (or Ctrl-C) everything created is removed.

    `installer`: `cloud: external` nodes never see cloud-init: each runs its install.sh (what
    `make render` wrote next to its user-data) in its fresh mount namespace instead.
    """
    reason = unavailable_reason()
    if reason:
        raise LabError(reason)
    start = time.monotonic()
    say = _stamp(start, log)
    mesh = load_mesh(render_dir)
    user_data = {n.name: parse_user_data(n.user_data.read_text(), f"{n.name}/user-data") for n in mesh.nodes}
    if load_state(layout.state_file) is not None:
        raise LabError(f"a netns lab is already up ({layout.state_file}); run `python -m lab down` first")
    homes.check_fits(layout, mesh)
    foreign = foreign_namespaces(
        topology.wanted_namespaces(layout, mesh)
        + homes.wanted_namespaces(layout, mesh)
        + clients.wanted_namespaces(layout, mesh),
        existing_namespaces(),
        None,
    )
    if foreign:
        raise LabError(
            f"network namespace(s) {', '.join(foreign)} exist and were not created by this lab "
            f"(not in {layout.state_file}): refusing to touch them"
        )
    layout.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    state = LabState(
        layout.state_file, stack=stack, render_dir=str(render_dir), owns_render_dir=owns_render_dir
    )
    state.nodes = [n.name for n in mesh.nodes]
    state.save()
    try:
        lab = _boot(mesh, user_data, state, layout, say, installer)
        wg_up = time.monotonic() - start
        say("waiting for every pair's first handshake")
        waited = health.wait_for_handshakes(lab, handshake_timeout)
        mesh_seconds = None if waited is None else wg_up + waited
        state.timings = {"wg_up": round(wg_up, 2)}
        if mesh_seconds is not None:
            state.timings["mesh"] = round(mesh_seconds, 2)
        state.save()
        say(
            "mesh up"
            if mesh_seconds is not None
            else f"not every pair shook hands within {handshake_timeout:g} s"
        )
        return BringUp(lab, wg_up, mesh_seconds)
    except BaseException:
        say("bring-up failed or interrupted: removing everything it created")
        tear_down(layout, say)
        raise


def _boot(
    mesh: LabMesh,
    user_data: dict[str, NodeUserData],
    state: LabState,
    layout: Layout,
    say: Log,
    installer: bool = False,
) -> NetnsLab:
    if mesh.skipped:
        say(f"not booting nodes of other clouds: {', '.join(mesh.skipped)}")
    say(f"namespaces for {len(mesh.nodes)} nodes, the internet bridge and routed subnets")
    topology.build_internet(state, layout)
    home_sites = {s.name: s for s in homes.sites(layout, mesh)}
    for i, node in enumerate(mesh.nodes):
        if node.name in home_sites:
            say(f"{node.name}: behind its home router {home_sites[node.name].nat_ip} (NAT, no endpoint)")
            homes.attach_home(state, layout, home_sites[node.name])
        else:
            topology.attach_node(state, layout, mesh, i, node)
        if node.subnets:
            topology.attach_lan(state, layout, node)
    lab = NetnsLab(layout, mesh)
    homes.route_nodes_to_homes(lab, list(home_sites.values()))
    by_installer = [n for n in mesh.nodes if installer and n.external]
    by_cloud_init = [n for n in mesh.nodes if n not in by_installer]
    say("cloud-init write_files in a sandbox per node")
    parallel(lambda n: write_files(layout, n, user_data[n.name]), by_cloud_init)
    for node in by_installer:  # never saw cloud-init: nothing written before its installer runs
        (layout.node_dir(node.name) / "written").mkdir(mode=0o700, parents=True)
    say("private mount namespace per node (/run, /sys, written files, systemctl/sysctl/apt stand-ins)")
    shims = topology.write_shims(layout)
    topology.prepare_mount_ns_dir(state, layout)
    for node in mesh.nodes:
        topology.make_node_fs(state, layout, node.name, layout.node_dir(node.name) / "written", shims)
    for node in by_cloud_init:
        if user_data[node.name].not_applied:
            say(f"{node.name}: not emulated here: {', '.join(user_data[node.name].not_applied)}")
    also = ", install.sh on external ones" if by_installer else ""
    say(f"bootcmd/runcmd as rendered, inside each node{also}")

    def first_boot(node: LabNode) -> None:
        if node in by_installer:
            say(f"{node.name}: {run_installer(lab, node)}")
        else:
            run_commands(lab, node, user_data[node.name])

    # Nodes behind NAT last: they dial the others, whose wg0 must be up to answer the first
    # handshake (else it is retried only after WireGuard's 5 s rekey timeout).
    parallel(first_boot, [n for n in mesh.nodes if not n.behind_nat])
    parallel(first_boot, [n for n in mesh.nodes if n.behind_nat])
    clients.attach_clients(lab, state, say)  # roaming clients dial the nodes, which are up now
    inodes = {ino for r in state.namespaces if (ino := namespace_inode(r.name)) is not None}
    state.processes = processes_in(inodes)
    state.save()
    return lab


def load_running(layout: Layout = DEFAULT_LAYOUT) -> NetnsLab:
    """The lab `up` left running, for `check` and for tests."""
    state = load_state(layout.state_file)
    if state is None:
        raise LabError("no netns lab is up (`make lab` starts one)")
    return NetnsLab(layout, load_mesh(Path(state.render_dir)))


@contextlib.contextmanager
def running(
    render_dir: Path,
    *,
    layout: Layout = DEFAULT_LAYOUT,
    log: Log = lambda _: None,
    handshake_timeout: float = 20.0,
    installer: bool = False,
) -> Iterator[BringUp]:
    """Bring a lab up for the duration of a `with` block (tests, benchmarks)."""
    result = bring_up(
        render_dir, layout=layout, log=log, handshake_timeout=handshake_timeout, installer=installer
    )
    try:
        yield result
    finally:
        tear_down(layout, log)


# ----------------------------------------------------------------------------- CLI entry points


@contextlib.contextmanager
def interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP behave like Ctrl-C, so every way of stopping `up` cleans up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def render(stack: str, out: Path) -> None:
    """`make render` into the lab dir (tools.render: fresh keys, 0600 files)."""
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        print("\n".join(render_to(stack, out).lines()))
    except (ConfigError, RenderError) as e:
        raise LabError(f"rendering stack {stack} failed: {e}") from None


def start(
    stack: str,
    render_dir: Path | None = None,
    *,
    layout: Layout = DEFAULT_LAYOUT,
    log: Log = print,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    installer: bool = False,
) -> BringUp:
    """Replace any running lab with a fresh one: render `stack` (unless given a render) and boot it."""
    if load_state(layout.state_file) is not None:
        log(f"a netns lab is already up ({layout.state_file}): tearing it down first")
        tear_down(layout, log)
    owns = render_dir is None
    if render_dir is None:
        if layout.root.exists():
            tear_down(layout, log)  # leftovers with no state file (e.g. an interrupted render)
        render_dir = layout.render_dir
        log(f"rendering stack {stack} into {render_dir}")
        render(stack, render_dir)
    return bring_up(
        render_dir,
        layout=layout,
        stack=stack,
        owns_render_dir=owns,
        log=log,
        handshake_timeout=handshake_timeout,
        installer=installer,
    )


def up(
    stack: str,
    render_dir: Path | None = None,
    *,
    mtu_demo: bool = False,
    installer: bool = False,
    layout: Layout = DEFAULT_LAYOUT,
    log: Log = print,
) -> int:
    """`make lab`: render, boot, print the health table, leave the lab up. Exit 1 if unhealthy."""
    with interrupts_as_keyboard_interrupt():
        try:
            result = start(stack, render_dir, layout=layout, log=log, installer=installer)
            _print_timings(result, log)
            report = health.run_all(result.lab)
            log(format_report(report))
            if mtu_demo:
                log(format_scenario(mtu_scenario(result.lab)))
        except KeyboardInterrupt:
            _clean_after_failure(layout, log)
            print("lab: interrupted; everything it created is removed", file=sys.stderr)
            return 130
        except LabError as e:
            print(f"lab: {e}", file=sys.stderr)
            _clean_after_failure(layout, log)
            return 1
        except BaseException:
            _clean_after_failure(layout, lambda _: None)  # e.g. stdout closed: nothing may be left
            raise
    first = result.lab.nodes[0].name
    inside = f"nsenter --net=/run/netns/{layout.node_ns(first)} --mount={layout.mount_ns(first)}"
    log(
        "\nthe lab stays up: `make lab-down` removes it, `python -m lab check` re-runs the checks.\n"
        f"look inside a node: {inside} wg show"
    )
    for site in clients.sites(layout, result.lab.mesh):
        log(f"look inside client {site.name}: {' '.join(site.laptop.argv('wg', 'show'))}")
    for home in homes.sites(layout, result.lab.mesh):
        mappings = " ".join(home.nat.argv("conntrack", "-L", "-p", "udp"))
        log(f"look at the NAT mappings of {home.nat.label}: {mappings}")
    return 0 if report.ok else 1


def _clean_after_failure(layout: Layout, log: Log) -> None:
    if layout.root.exists():
        try:
            tear_down(layout, log)
        except LabError as e:
            print(f"lab: {e}", file=sys.stderr)


def _print_timings(result: BringUp, log: Log) -> None:
    mesh = "not every pair" if result.mesh_seconds is None else f"{result.mesh_seconds:.1f} s"
    log(f"bring-up: wg0 up on every node after {result.wg_up_seconds:.1f} s, every pair shook hands: {mesh}")


def check(*, mtu_demo: bool = False, layout: Layout = DEFAULT_LAYOUT, log: Log = print) -> int:
    try:
        lab = load_running(layout)
        report = health.run_all(lab)
        log(format_report(report))
        if mtu_demo:
            log(format_scenario(mtu_scenario(lab)))
    except LabError as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1
    return 0 if report.ok else 1


def down(*, layout: Layout = DEFAULT_LAYOUT, log: Log = print) -> int:
    """`make lab-down`: remove what `up` recorded; a no-op when nothing is up."""
    if load_state(layout.state_file) is None and not layout.root.exists():
        log("no netns lab is up")
        strays = stray_namespaces(layout)
        if strays:
            log(f"left alone (not created by this lab): {', '.join(strays)}")
        return 0
    try:
        tear_down(layout, log)
    except LabError as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1
    finally:
        strays = stray_namespaces(layout)
        if strays:
            log(f"left alone (not created by this lab): {', '.join(strays)}")
    return 0


def stray_namespaces(layout: Layout) -> list[str]:
    """Namespaces named like this lab's that it has no record of."""
    exact = (layout.internet_ns, clients.internet_host_ns(layout))
    prefixes = (
        layout.node_ns(""),
        layout.lan_ns(""),
        clients.nat_ns(layout, ""),
        clients.client_ns(layout, ""),
        homes.nat_ns(layout, ""),
    )
    return sorted(n for n in existing_namespaces() if n in exact or n.startswith(prefixes))
