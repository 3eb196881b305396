"""The lab in real VMs: one QEMU guest per lab node booting its rendered user-data, unchanged.

`up` reads what tools.render wrote (mesh.json and each node's user-data), boots every lab node
from the cached Debian image (lab/vm/image.py) with a NoCloud seed holding the rendered user-data
byte for byte plus a lab network-config (underlay address, and the node's address in any routed
subnet), waits for each VM's reporter to speak on the second serial port, and checks the
reports against the mesh. The VMs stay up until `down`, which removes only what `up` recorded.

Like a cloud, the lab network has a metadata host at 169.254.169.254 (an HTTP server in the lab's
namespace, reached through the lab bridge's address): the reporter checks that root reaches it
and that the rendered guard refuses uid 65534. Each QEMU has a QMP socket (lab/vm/faults.py reboots
VMs through it).

Slow by nature (TCG emulation, ~3 minutes for three VMs); the netns driver is the quick one.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab.core.errors import LabError
from lab.core.manifest import LabNode, load_mesh
from lab.core.network import add_namespace, remove_network
from lab.core.proc import run
from lab.core.processes import alive, process_record, process_start, stop_processes
from lab.core.state import STATE_FILE, LabState, ProcessRecord, load_state
from lab.vm import network
from lab.vm.files import FileOf
from lab.vm.image import Image, ensure_image
from lab.vm.report import (
    NodeReport,
    check,
    parse_reports,
    summary,
    timings,
    user_data_sha256,
)
from tools.secretfiles import private_dir, private_umask

STATE_ENV = "WGMESH_LAB_VM_STATE"
DEFAULT_STATE = Path("/tmp/wgmesh-lab-vm")
TIMEOUT_ENV = "WGMESH_LAB_VM_TIMEOUT"
DEFAULT_TIMEOUT = 600.0  # seconds from boot until every VM has reported
GUEST_MESH_WAIT = 300  # seconds a guest pings for its peers after cloud-init is done
MEMORY_MB = 512
ACCEL = "tcg,tb-size=256"  # this host's /dev/kvm cannot run a stock guest kernel; TCG (software) works
CPU = "qemu64"
STOP_GRACE = 10.0  # seconds a QEMU gets to exit on SIGTERM before SIGKILL

__all__ = [
    "Lab",
    "LabResult",
    "down",
    "first_boot_seconds",
    "run_checks",
    "start",
    "timings",
    "up",
    "wait_for_reports",
]


def state_dir() -> Path:
    return Path(os.environ.get(STATE_ENV) or DEFAULT_STATE)


def log(message: str) -> None:
    print(f"lab vm: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class VmPaths:
    """Per-VM files under the state directory: `<node>.<suffix>`."""

    directory: Path
    node: str

    overlay = FileOf("qcow2")  # the VM's disk: copy-on-write over the image
    seed = FileOf("seed.iso")  # NoCloud: the rendered user-data, meta-data, network-config
    console = FileOf("console.log")  # first serial port
    report = FileOf("report.log")  # second serial port: the guest reporter's WGLAB lines
    pidfile = FileOf("pid")
    qmp = FileOf("qmp")  # QEMU's control socket (lab/vm/faults.py)

    def file(self, suffix: str) -> Path:
        return self.directory / f"{self.node}.{suffix}"


def mac(kind: int, index: int) -> str:
    """Stable locally administered MACs: kind 0 = underlay NIC, 1 = routed-subnet NIC."""
    return f"52:54:00:77:{kind:02x}:{index + 1:02x}"


def tap_name(index: int) -> str:
    return f"t{index}"


def subnet_tap_name(index: int) -> str:
    return f"st{index}"


def underlay_prefix(nodes: Sequence[LabNode]) -> int:
    """One L2 segment for all lab nodes: the longest prefix (at most /24) holding every public IP."""
    first = int(nodes[0].public_ip)
    prefix = 24
    while prefix > 8 and any((int(n.public_ip) ^ first) >> (32 - prefix) for n in nodes):
        prefix -= 1
    return prefix


def lab_gateway(nodes: Sequence[LabNode], prefix: int) -> ipaddress.IPv4Address:
    """The lab bridge's own address on the underlay: the highest host no node holds."""
    net = ipaddress.ip_network(f"{nodes[0].public_ip}/{prefix}", strict=False)
    taken = {n.public_ip for n in nodes}
    for host in reversed(list(net.hosts())):
        if host not in taken and isinstance(host, ipaddress.IPv4Address):
            return host
    raise LabError(f"no free address for the lab gateway in {net}")


def network_config(node: LabNode, prefix: int, gateway: ipaddress.IPv4Address | None = None) -> str:
    """Lab network-config v2: the underlay address on eth0, the node's routed-subnet addresses on eth1.

    This stands in for what a cloud's own network gives a VM (with `gateway`, a route to the
    metadata address through it); the rendered user-data stays untouched.
    """
    eth0: dict[str, object] = {
        "match": {"macaddress": mac(0, node.index)},
        "set-name": "eth0",
        "addresses": [f"{node.public_ip}/{prefix}"],
        "mtu": node.underlay_mtu,
    }
    if gateway is not None:
        eth0["routes"] = [{"to": f"{network.METADATA_ADDRESS}/32", "via": str(gateway)}]
    ethernets: dict[str, object] = {"eth0": eth0}
    if node.subnets:
        ethernets["eth1"] = {
            "match": {"macaddress": mac(1, node.index)},
            "set-name": "eth1",
            "addresses": [network.subnet_host_addresses(net)[0] for net in node.subnets],
        }
    return yaml.safe_dump({"version": 2, "ethernets": ethernets}, sort_keys=False)


def meta_data(node: LabNode, instance_id: str | None = None) -> str:
    """NoCloud meta-data; a replacement VM gets a new `instance_id`, as a cloud's new instance does."""
    return yaml.safe_dump({"instance-id": instance_id or f"wglab-{node.name}", "local-hostname": node.name})


def make_seed(
    node: LabNode,
    render_dir: Path,
    paths: VmPaths,
    prefix: int,
    gateway: ipaddress.IPv4Address,
    instance_id: str | None = None,
) -> None:
    """NoCloud seed ISO: the rendered user-data file as is, plus lab meta-data and network-config."""
    seed_src = paths.file("seed")
    private_dir(seed_src)
    (seed_src / "meta-data").write_text(meta_data(node, instance_id))
    (seed_src / "network-config").write_text(network_config(node, prefix, gateway))
    argv = [
        "cloud-localds",
        "-N",
        str(seed_src / "network-config"),
        str(paths.seed),
        str(render_dir / node.name / "user-data"),
        str(seed_src / "meta-data"),
    ]
    run(argv, what=f"{node.name}: seed ISO", timeout=60)


def make_overlay(image: Image, paths: VmPaths) -> None:
    """A fresh copy-on-write disk over the cached image: a new VM's empty root disk."""
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image.disk)]
    run([*argv, str(paths.overlay)], what=f"{paths.node}: disk overlay", timeout=60)


def qemu_argv(node: LabNode, image: Image, paths: VmPaths, guest_wait: int = GUEST_MESH_WAIT) -> list[str]:
    append = (
        "root=/dev/vda ro console=ttyS0 net.ifnames=0 systemd.show_status=error"
        f" wglab.node={node.name} wglab.wait={guest_wait}"
    )
    argv = [
        "qemu-system-x86_64",
        "-name",
        node.name,
        "-accel",
        ACCEL,
        "-cpu",
        CPU,
        "-m",
        str(MEMORY_MB),
        "-smp",
        "1",
        "-display",
        "none",
        "-nodefaults",
        "-no-reboot",
        "-serial",
        f"file:{paths.console}",
        "-serial",
        f"file:{paths.report}",
        "-qmp",
        f"unix:{paths.qmp},server=on,wait=off",
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initrd),
        "-append",
        append,
        "-drive",
        f"file={paths.overlay},if=virtio,format=qcow2",
        "-drive",
        f"file={paths.seed},if=virtio,format=raw,readonly=on",
        "-device",
        "virtio-rng-pci",
        "-netdev",
        f"tap,id=n0,ifname={tap_name(node.index)},script=no,downscript=no",
        "-device",
        f"virtio-net-pci,netdev=n0,mac={mac(0, node.index)}",
    ]
    if node.subnets:
        argv += [
            "-netdev",
            f"tap,id=n1,ifname={subnet_tap_name(node.index)},script=no,downscript=no",
            "-device",
            f"virtio-net-pci,netdev=n1,mac={mac(1, node.index)}",
        ]
    return [*argv, "-pidfile", str(paths.pidfile), "-daemonize"]


@dataclass
class Lab:
    """A started VM lab."""

    state: LabState
    nodes: list[LabNode]
    render_dir: Path
    user_data_hashes: dict[str, str]
    subnet_hosts: list[tuple[str, str]] = field(default_factory=list)  # (namespace, owner node)
    booted_at: float = 0.0  # time.monotonic() when the first VM started
    guest_wait: int = GUEST_MESH_WAIT
    netns: str = network.NS_PREFIX  # the namespace holding the bridges, taps and QEMUs

    @property
    def directory(self) -> Path:
        """The state directory: the state file, and each VM's disk, seed, logs and sockets."""
        return self.state.path.parent

    def paths(self, node: str) -> VmPaths:
        return VmPaths(self.directory, node)

    def qemu(self, node: str) -> ProcessRecord:
        """The QEMU process recorded for `node`."""
        for record in self.state.processes:
            if record.what == qemu_what(node):
                return record
        raise LabError(f"no QEMU recorded for {node}")


@dataclass
class LabResult:
    reports: dict[str, NodeReport]
    problems: list[str]
    host_seconds_to_mesh: dict[str, float]  # wall time from boot until the node reported MESH up
    subnet_host_pings: dict[str, bool] = field(default_factory=dict)  # "<host ns> -> <address>"


def qemu_what(node: str) -> str:
    """How the state file names a node's QEMU process."""
    return f"qemu {node}"


def lab_nodes(render_dir: Path) -> list[LabNode]:
    mesh = load_mesh(render_dir)  # LabError when mesh.json has no lab node
    not_lab = [*mesh.skipped, *(n.name for n in mesh.nodes if n.external)]
    if not_lab:
        raise LabError(f"the VM lab runs lab nodes only; not lab: {', '.join(not_lab)}")
    return list(mesh.nodes)


def start(render_dir: Path, guest_wait: int = GUEST_MESH_WAIT, image: Image | None = None) -> Lab:
    """Create the network, seeds and overlays, and boot one VM per lab node (does not wait).

    `guest_wait`: seconds each guest pings for its peers before reporting the mesh as timed out.
    """
    nodes = lab_nodes(render_dir)
    directory = state_dir()
    if load_state(directory / STATE_FILE) is not None:
        raise LabError(f"a VM lab is already up ({directory}); run `python -m lab down --driver vm`")
    hashes = {n.name: user_data_sha256(render_dir, n.name) for n in nodes}
    image = image or ensure_image()
    if directory.exists():
        raise LabError(f"{directory} exists without a lab state file; not touching it")
    private_dir(directory)
    names = [n.name for n in nodes]
    state = LabState(directory / STATE_FILE, driver="vm", render_dir=str(render_dir), nodes=names)
    state.save()
    lab = Lab(state, nodes, render_dir, hashes, guest_wait=guest_wait, netns=network.ns_prefix())
    with private_umask():  # seeds and overlays hold private keys
        try:
            prefix = underlay_prefix(nodes)
            gateway = lab_gateway(nodes, prefix)
            build_network(lab)
            network.add_metadata_host(state, lab.netns, "br0", f"{gateway}/{prefix}", directory / "metadata")
            for node in nodes:
                paths = lab.paths(node.name)
                make_seed(node, render_dir, paths, prefix, gateway)
                make_overlay(image, paths)
            lab.booted_at = time.monotonic()
            for node in nodes:
                boot(lab, node, image)
        except BaseException:
            down()
            raise
    return lab


def build_network(lab: Lab) -> None:
    state = lab.state
    mtu = max(n.underlay_mtu for n in lab.nodes)
    main = lab.netns
    add_namespace(state, main)
    network.add_bridge(state, main, "br0", mtu)
    for node in lab.nodes:
        network.add_tap(state, main, tap_name(node.index), "br0", mtu)
        if not node.subnets:
            continue
        bridge = f"sb{node.index}"
        network.add_bridge(state, main, bridge, 1500)
        network.add_tap(state, main, subnet_tap_name(node.index), bridge, 1500)
        for j, net in enumerate(node.subnets):
            host_ns = f"{main}-sub{node.index}-{j}"
            network.add_subnet_host(state, main, bridge, host_ns, f"sv{node.index}-{j}", net)
            lab.subnet_hosts.append((host_ns, node.name))


def boot(lab: Lab, node: LabNode, image: Image) -> None:
    paths = lab.paths(node.name)
    argv = network.in_netns(lab.netns, *qemu_argv(node, image, paths, lab.guest_wait))
    run(argv, what=f"{node.name}: QEMU", timeout=60)  # returns once QEMU has daemonized
    pid = int(paths.pidfile.read_text().strip())
    lab.state.processes.append(process_record(pid, qemu_what(node.name)))
    lab.state.save()


def our_qemu(pid: int, directory: Path) -> bool:
    """A live QEMU whose command line names `directory`: one this lab started, recorded or not
    (a QEMU can daemonize and write its pidfile before its record reaches the state file)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"qemu-system" in cmdline and f"{directory}/".encode() in cmdline


def wait_for_reports(
    lab: Lab, timeout: float, on_fact: Callable[[str], None] | None = None
) -> tuple[dict[str, NodeReport], dict[str, float]]:
    """Poll the report ports until every VM has finished, died, or the timeout passes.

    Returns the reports and, per node, host seconds from boot until it reported MESH up.
    """
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    mesh_seen: dict[str, float] = {}
    reports: dict[str, NodeReport] = {}
    while True:
        lines: list[str] = []
        for node in lab.nodes:
            path = lab.paths(node.name).report
            if path.exists():
                lines += path.read_text(errors="replace").splitlines()
        reports = parse_reports(lines)
        elapsed = time.monotonic() - lab.booted_at
        for line in lines:
            fact = line.strip().replace("\r", "")
            if fact.startswith("WGLAB ") and " TICK " not in fact and fact not in seen:
                seen.add(fact)
                if on_fact is not None:
                    on_fact(f"[{elapsed:6.1f}s] {fact.removeprefix('WGLAB ')}")
        for name, r in reports.items():
            if r.mesh is not None and name not in mesh_seen:
                mesh_seen[name] = round(elapsed, 1)
        dead = [n.name for n in lab.nodes if not alive(lab.qemu(n.name))]
        unfinished = [n.name for n in lab.nodes if not (n.name in reports and reports[n.name].finished)]
        if not unfinished:
            break
        if set(unfinished) <= set(dead):
            log(f"QEMU exited before reporting: {', '.join(sorted(set(unfinished)))}")
            break
        if time.monotonic() > deadline:
            log(f"timed out after {timeout:.0f} s waiting for: {', '.join(unfinished)}")
            break
        time.sleep(2)
    return reports, mesh_seen


def run_checks(lab: Lab, reports: Mapping[str, NodeReport], mesh_seen: Mapping[str, float]) -> LabResult:
    """Check the reports against the mesh, then ping every node from each routed-subnet host."""
    problems = check(reports, lab.nodes, lab.user_data_hashes)
    host_pings: dict[str, bool] = {}
    for host_ns, owner in lab.subnet_hosts:
        for node in lab.nodes:
            ok = network.ping_from(host_ns, str(node.address))
            host_pings[f"{host_ns} -> {node.address}"] = ok
            if not ok:
                problems.append(f"subnet host behind {owner}: no reply from {node.name} ({node.address})")
    return LabResult(dict(reports), problems, dict(mesh_seen), host_pings)


def up(stack: str, render_dir: Path) -> int:
    """Boot the rendered `stack` in VMs and report; 0 when every check passed. VMs stay up."""
    timeout = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT)
    try:
        lab = start(render_dir)
    except LabError as e:
        log(str(e))
        return 1
    log(f"stack {stack}: booted {len(lab.nodes)} VMs (TCG); waiting up to {timeout:.0f} s for reports")
    try:
        reports, mesh_seen = wait_for_reports(lab, timeout, on_fact=print)
        result = run_checks(lab, reports, mesh_seen)
    except KeyboardInterrupt:
        log("interrupted: taking the VMs down")
        down()
        return 130
    for line in summary(result.reports, lab.nodes):
        print(line)
    for name, seconds in sorted(timings(result.reports).items()):
        wall = result.host_seconds_to_mesh.get(name)
        print(f"{name}: mesh up {seconds:.1f} s after kernel start ({wall} s after QEMU start)")
    for problem in result.problems:
        print(f"FAIL {problem}")
    print(f"consoles: {lab.directory}/*.console.log; remove with `python -m lab down --driver vm`")
    return 0 if not result.problems else 1


def first_boot_seconds(render_dir: Path, timeout: float = DEFAULT_TIMEOUT) -> dict[str, float]:
    """For a benchmark: boot, read per-node first-boot-to-mesh seconds (guest uptime), take down."""
    lab = start(render_dir)
    try:
        reports, _ = wait_for_reports(lab, timeout)
        return timings(reports)
    finally:
        down()


def down() -> int:
    """Stop our QEMUs and the metadata server, remove our links, namespaces, overlays and seeds.
    Idempotent."""
    directory = state_dir()
    state = load_state(directory / STATE_FILE)
    if state is None:
        strays = network.our_namespaces()
        if strays:
            log(f"no state file; not touching namespaces it does not list: {', '.join(strays)}")
        return 0
    processes = list(state.processes)
    recorded = {r.pid for r in processes}
    for pidfile in directory.glob("*.pid"):  # a QEMU that daemonized before its PID reached the state
        text = pidfile.read_text().strip()
        if text.isdigit() and int(text) not in recorded and our_qemu(int(text), directory):
            start = process_start(int(text))
            if start is not None:
                processes.append(
                    ProcessRecord(int(text), start, qemu_what(pidfile.name.removesuffix(".pid")))
                )
    stuck = stop_processes(processes, grace=STOP_GRACE)
    leftovers = [f"{r.what} (PID {r.pid})" for r in stuck]
    leftovers += remove_network(state)
    if leftovers:
        log("could not remove: " + "; ".join(leftovers))
        return 1
    shutil.rmtree(directory)
    return 0
