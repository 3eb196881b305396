"""The VM lab: the rendered lab stack boots unchanged in real QEMU VMs and forms the mesh.

Every test here boots VMs (marker `vm`; the pieces they rely on are checked without a VM in
tests/lab/test_vm_units.py), and they share one bring-up: the module-scoped `booted` lab runs
the stages below in order on the same three VMs.
The lab boots stacks/Pulumi.lab.yaml (lab-a, lab-b, lab-c with 10.0.7.0/24 behind lab-c),
rendered with a keys file and with a test SSH key in `sshPublicKeys` (and `sshUser: debian`, the
image's cloud-init default user), building the image first when the cache has none, and asserts
cleanup afterwards. Then live updates the way `pulumi up` runs them (lab/vm/live.py): from the
lab's namespace, `ssh` as debian runs components/sync.py's command (first-boot wait, `sudo -n`,
the apply script) with lab-a's re-rendered wg0.conf on stdin after a subnet is added behind
lab-b (a peer diff: the route appears, lab-a and lab-c lose no ping), then with lab-a's keyEpoch
bumped (peers first, then lab-a restarts wg0 through systemd, and its peers handshake with the
new key), then the health command on every VM; every command sends the node's bundle (its whole
host config, cloudinit/bundle.py) as `pulumi up` does. Then lab-a is replaced the way Pulumi
replaces a VM (lab/vm/replace.py): its QEMU stopped and its disk deleted, a new instance booted on
the same MAC and underlay IP from its *first* user data (ignore_changes: its first private key),
which runs stale until its `-peers`, `-sync` and `-health` commands run (they re-run because the
VM id is their input); it must then run the current conf and key, every VM's health must pass,
and lab-b <-> lab-c lose no ping meanwhile. Then `masquerade: true` on lab-c is pushed through
lab-c's commands: the host behind lab-c sees lab-a's pings from lab-c's LAN address instead of
lab-a's overlay address (tcpdump in its namespace), wg0 is not restarted, and lab-a <-> lab-b
lose no ping. Then the faults: lab-a reboots itself
(Ctrl-Alt-Del) and must rejoin within 60 s of its boot completing, with the metadata guard back
in place; lab-b's QEMU is killed and lab-a and lab-c must keep pinging each other with 0 loss.
Outside CI it skips without root or QEMU; with CI=true it fails.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Figure
from vmtest import REPO, require_vm_host

from cloudinit.access import KEYS_DIR
from cloudinit.cloudconfig import WG_CONF_PATH
from cloudinit.remote_apply import WAIT_FOR_FIRST_BOOT
from components.sync import conf_digest
from lab.core.manifest import LabNode, load_mesh
from lab.core.wgconf import rendered_wg_conf
from lab.vm import driver as vm
from lab.vm import faults as vm_faults
from lab.vm import image as lab_image
from lab.vm import live as vm_live
from lab.vm import masquerade as vm_masq
from lab.vm import network as vm_net
from lab.vm import replace as vm_replace
from lab.vm.guest_report import private_key, subnet_probe
from lab.vm.report import GUARD_OK, NodeReport, guard_loaded_before_network, timings
from mesh.plan import build_plan
from mesh.plan_types import MeshPlan
from mesh.stackfile import load_spec

pytestmark = pytest.mark.vm

BUILD_TIMEOUT = 360.0  # image download + install; measured 62-116 s
REPORT_TIMEOUT = 540.0  # boot to every VM report; measured 165-225 s for three VMs (380 s on a busy host)
GUEST_WAIT = 120  # seconds a guest waits for its peers before reporting a timeout
REJOIN_LIMIT = 60.0  # the promise: a rebooted VM rejoins within 60 s of its boot completing


@pytest.fixture(scope="session")
def vm_image() -> lab_image.Image:
    """The cached image, built here when missing (always on a fresh CI machine)."""
    require_vm_host()
    start = time.monotonic()
    built = not lab_image.cached_image().complete()
    image = lab_image.ensure_image(timeout=BUILD_TIMEOUT)
    if built:
        print(f"\nlab image built in {time.monotonic() - start:.0f} s: {image.directory}")
    return image


@dataclass
class Booted:
    lab: vm.Lab
    result: vm.LabResult


def our_qemu_pids(state_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and vm.our_qemu(int(proc.name), state_dir):
            pids.append(int(proc.name))
    return pids


LOGIN_USER = "debian"  # the Debian image's cloud-init default user (NOPASSWD sudo); root is refused
ADDED_SUBNET = "10.0.8.0/24"  # the day-2 change: a network routed behind lab-b
StackDoc = dict[str, Any]


@dataclass(frozen=True)
class Render:
    stack: Path  # the stack file it was rendered from
    out: Path

    def plan(self) -> MeshPlan:
        return build_plan(load_spec(self.stack))

    def nodes(self) -> dict[str, LabNode]:
        return {n.name: n for n in load_mesh(self.out).nodes}

    def conf(self, node: str) -> str:
        return rendered_wg_conf(self.out, node)  # secret: only ever stdin of an SSH command

    def payload(self, node: str) -> str:
        """What the node's live-update commands send on stdin (secret)."""
        return vm_live.node_payload(self.plan(), node, self.conf(node))


@dataclass
class LiveStack:
    """The lab stack with a test SSH key, rendered again and again with one keys file (like state)."""

    directory: Path  # 0700: SSH key, known_hosts, keys file, stack copies, renders
    key: vm_live.SshKey
    renders: dict[str, Render] = field(default_factory=dict)

    def render(self, name: str, change: Callable[[StackDoc], None] | None = None) -> Render:
        doc: StackDoc = yaml.safe_load((REPO / "stacks" / "Pulumi.lab.yaml").read_text())
        mesh = doc["config"]["wgmesh:mesh"]
        mesh["sshPublicKeys"] = [self.key.public]  # how cloud nodes get the admin key
        mesh["sshUser"] = LOGIN_USER
        if change is not None:
            change(doc)
        stack = self.directory / f"Pulumi.{name}.yaml"
        stack.write_text(yaml.safe_dump(doc, sort_keys=False))
        out = self.directory / name
        argv = [sys.executable, "-m", "tools.render", "--stack", str(stack), "--out", str(out)]
        subprocess.run([*argv, "--keys", str(self.directory / "keys.json")], cwd=REPO, check=True,
                       capture_output=True, timeout=120)  # fmt: skip
        self.renders[name] = Render(stack, out)
        return self.renders[name]

    def ssh(self, netns: str, user: str) -> vm_live.Ssh:
        return vm_live.Ssh(netns, user, self.key.private, self.directory / "known_hosts")


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> LiveStack:
    directory = tmp_path_factory.mktemp("live") / "private"
    stack = LiveStack(directory, vm_live.make_ssh_key(directory))
    stack.render("first")
    return stack


@pytest.fixture(scope="module")
def booted(
    vm_image: lab_image.Image, live_stack: LiveStack, tmp_path_factory: pytest.TempPathFactory, figure: Figure
) -> Iterator[Booted]:
    state_dir = tmp_path_factory.mktemp("vmlab") / "state"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(vm.STATE_ENV, str(state_dir))
        mp.setenv(vm_net.NS_PREFIX_ENV, f"wgtestvm{os.getpid()}")
        lab = vm.start(live_stack.renders["first"].out, guest_wait=GUEST_WAIT, image=vm_image)
        try:
            reports, mesh_seen = vm.wait_for_reports(lab, REPORT_TIMEOUT)
            result = vm.run_checks(lab, reports, mesh_seen)
            figure(f"VM lab first boot to mesh (guest uptime, s): {timings(result.reports)}")
            if result.problems:
                for node in lab.nodes:
                    tail = lab.paths(node.name).console.read_text(errors="replace").splitlines()[-25:]
                    print(f"---- {node.name} console (last 25 lines)\n" + "\n".join(tail))
            yield Booted(lab, result)
        finally:
            assert vm.down() == 0
            assert vm.down() == 0  # idempotent
            assert our_qemu_pids(state_dir) == []
            assert vm_net.our_namespaces() == []
            assert not state_dir.exists()


def report(booted: Booted, node: str) -> NodeReport:
    r = booted.result.reports.get(node)
    assert r is not None, f"{node} never reported"
    return r


def test_vms_boot_the_rendered_user_data_unchanged(booted: Booted) -> None:
    assert len(booted.lab.nodes) >= 3
    for node in booted.lab.nodes:
        r = report(booted, node.name)
        assert r.cloudinit == "done", node.name
        user_data = booted.lab.render_dir / node.name / "user-data"
        # The test key, in wgmesh's key file for the login user (cloudinit/access.py), as on a cloud.
        assert f"path: {KEYS_DIR}/{LOGIN_USER}" in user_data.read_text(), node.name
        rendered_hash = hashlib.sha256(user_data.read_bytes()).hexdigest()
        assert r.user_data_sha256 == rendered_hash, node.name


def test_full_mesh_pings_and_handshakes(booted: Booted) -> None:
    for node in booted.lab.nodes:
        r = report(booted, node.name)
        peers = [p for p in booted.lab.nodes if p.name != node.name]
        assert r.mesh == "up", node.name
        assert {str(p.address): True for p in peers} == r.pings, node.name
        for p in peers:
            age = r.handshakes.get(p.public_key)
            assert age is not None and age < 180, (node.name, p.name, age)


def test_routed_subnet_reached_through_its_node(booted: Booted) -> None:
    owners = [n for n in booted.lab.nodes if n.subnets]
    assert owners, "the lab stack routes a subnet behind a node"
    for node in booted.lab.nodes:
        r = report(booted, node.name)
        expected = {str(subnet_probe(s)): True for p in owners if p.name != node.name for s in p.subnets}
        assert r.subnets == expected, node.name
    # And the other way: the host in the subnet reaches every node's overlay address.
    assert booted.result.subnet_host_pings
    assert all(booted.result.subnet_host_pings.values()), booted.result.subnet_host_pings


def test_wg0_mtu_is_the_planned_mtu(booted: Booted) -> None:
    for node in booted.lab.nodes:
        assert report(booted, node.name).mtu == node.mtu, node.name


def test_metadata_guard_and_key_files_on_first_boot(booted: Booted) -> None:
    for node in booted.lab.nodes:
        r = report(booted, node.name)
        assert r.guard == GUARD_OK, node.name  # root reaches the lab's metadata host, nobody is refused
        paths = {f.path for f in r.key_files}
        assert "/etc/wireguard/wg0.conf" in paths, node.name
        assert all(f.root_only for f in r.key_files), r.key_files
        print(f"{node.name}: files holding the private key: {sorted(paths)}")


def test_no_problem_left(booted: Booted) -> None:
    assert booted.result.problems == []


# ---- live updates over SSH, the way `pulumi up` runs them ---------------------------------------


@dataclass
class Update:
    """One stack change pushed in Pulumi's order: every changed node's `-peers`, then each `-sync`."""

    changed: list[str]  # nodes whose wg0.conf changed (their commands' trigger fires)
    peers: dict[str, vm_live.Applied] = field(default_factory=dict)
    full: dict[str, vm_live.Applied] = field(default_factory=dict)

    def applied(self) -> list[vm_live.Applied]:
        return [*self.peers.values(), *self.full.values()]


@dataclass
class Live:
    user: str  # the login user components/sync.py would use for these nodes
    sudo: bool
    wait: vm_live.Result  # components/sync.py's first-boot wait alone, as the login user
    subnet: Update  # a subnet added behind lab-b
    routes_before: list[str]  # lab-a's routes on wg0
    routes_after_peers: list[str]  # after the -peers phase
    subnet_ticks: dict[str, vm_live.TickCount]  # the guests' pings from the first command to 5 s after
    settled_ticks: dict[str, vm_live.TickCount]  # the 5 s after the last command
    rotation: Update  # lab-a's keyEpoch bumped
    digests: dict[str, str]  # lab-a's wg0.conf SHA-256: "old", "new" (renders), "after -peers", "after -sync"
    cut: dict[str, float | None]  # peer -> when its ping to lab-a failed after it learned the new key
    unit_before: tuple[str, str]  # lab-a's wg-quick@wg0 (ActiveState, InvocationID)
    unit_after: tuple[str, str]
    handshake: dict[str, float | None]  # peer -> s from lab-a's -sync sent until its ping got through
    peer_handshakes: dict[str, dict[str, int]]  # peer -> `wg show latest-handshakes` afterwards
    old_key: str
    new_key: str
    health: dict[str, vm_live.Result] = field(default_factory=dict)

    def outputs(self) -> list[str]:
        results = [self.wait, *self.health.values()]
        applied = [*self.subnet.applied(), *self.rotation.applied()]
        return [r.stdout + r.stderr for r in results] + [x.output for x in applied]


def subnet_behind_lab_b(doc: StackDoc) -> None:
    (b,) = [n for n in doc["config"]["wgmesh:nodes"] if n["name"] == "lab-b"]
    b["subnets"] = [ADDED_SUBNET]


def rotate_lab_a(doc: StackDoc) -> None:
    (a,) = [n for n in doc["config"]["wgmesh:nodes"] if n["name"] == "lab-a"]
    a["keyEpoch"] = 1


def ticks_text(counts: dict[str, vm_live.TickCount]) -> str:
    return ", ".join(f"{k} {c.lost}/{c.sent}" for k, c in sorted(counts.items()))


def applied_text(update: Update) -> str:
    def one(x: vm_live.Applied) -> str:
        return f"{x.node} {x.summary['action']} {x.seconds} s (script {x.summary['seconds']} s)"

    peers = ", ".join(map(one, update.peers.values()))
    return f"-peers: {peers}; -sync: {', '.join(map(one, update.full.values()))}"


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(vm_faults.POLL)
    return True


@pytest.fixture(scope="module")
def live(booted: Booted, live_stack: LiveStack, figure: Figure) -> Live:
    """(b) a subnet added behind lab-b; (c) lab-a's key rotated; (d) every node's health command.

    Afterwards the lab's nodes carry the rotated keys (the faults below run on that mesh).
    """
    if booted.result.problems:
        pytest.fail("the mesh was not healthy before the live updates: " + "; ".join(booted.result.problems))
    lab = booted.lab
    first = live_stack.renders["first"]
    nodes = first.nodes()
    listed = list(nodes.values())
    user = vm_live.login_for(first.plan(), "lab-a")
    sudo = vm_live.uses_sudo(user)
    ssh = live_stack.ssh(lab.netns, user)
    a = nodes["lab-a"]
    wait_probe = f"{WAIT_FOR_FIRST_BOOT}; echo wait-exit=$?; cloud-init status"
    wait = ssh.check(str(a.public_ip), wait_probe, "first-boot wait")

    # (b) A network routed behind lab-b, pushed to every node whose conf changed.
    second = live_stack.render("subnet", subnet_behind_lab_b)
    subnet = Update([n for n in nodes if second.payload(n) != first.payload(n)])
    routes_before = vm_live.routes_on_wg0(ssh, a)
    with vm_live.polling(vm_faults.Tails(lab, lab.nodes)) as tails:
        window = time.monotonic()
        for n in subnet.changed:
            subnet.peers[n] = vm_live.apply(ssh, nodes[n], second.payload(n), sudo, peers_only=True)
        routes_after_peers = vm_live.routes_on_wg0(ssh, a)
        for n in subnet.changed:
            subnet.full[n] = vm_live.apply(ssh, nodes[n], second.payload(n), sudo)
        settled = time.monotonic()
        time.sleep(5.0)
    subnet_ticks = vm_live.tick_counts(tails.lines, listed, since=window)
    settled_ticks = vm_live.tick_counts(tails.lines, listed, since=settled)
    figure(
        f"VM live update over SSH as {user} (sudo -n: {sudo}), first-boot wait alone {wait.seconds} s; "
        f"subnet {ADDED_SUBNET} added behind lab-b: {applied_text(subnet)}; "
        f"guests' 1/s pings lost/sent, first command to 5 s after the last: {ticks_text(subnet_ticks)}"
    )

    # (c) lab-a's keyEpoch bumped. After the -peers phase the peers know only lab-a's new key
    # while lab-a still runs its old one (their pings to it fail); lab-a's -sync restarts wg0 with
    # the new private key, and their pings get through again only by handshaking with it.
    third = live_stack.render("rotated", rotate_lab_a)
    new = third.nodes()
    rotation = Update([n for n in new if third.payload(n) != second.payload(n)])
    peers = [n for n in new if n != "lab-a"]
    unit_before = vm_live.unit_invocation(ssh, a)
    with vm_live.polling(vm_faults.Tails(lab, lab.nodes)) as tails:
        for n in rotation.changed:
            rotation.peers[n] = vm_live.apply(ssh, new[n], third.payload(n), sudo, peers_only=True)
        applied = time.monotonic()
        digests = {"after -peers": vm_live.installed_digest(ssh, a, sudo)}
        wait_for(lambda: all(vm_live.first_tick(tails.lines, p, a, applied, ok=False) for p in peers), 30)
        cut = {p: vm_live.first_tick(tails.lines, p, a, applied, ok=False) for p in peers}
        rotation.full["lab-a"] = vm_live.apply(ssh, new["lab-a"], third.payload("lab-a"), sudo)
        restart = rotation.full["lab-a"].started

        def through() -> dict[str, float | None]:
            return {p: vm_live.first_tick(tails.lines, p, a, cut[p] or restart) for p in peers}

        wait_for(lambda: None not in through().values(), 90)
        seen = through()
    for n in rotation.changed:
        if n != "lab-a":
            rotation.full[n] = vm_live.apply(ssh, new[n], third.payload(n), sudo)
    digests["after -sync"] = vm_live.installed_digest(ssh, a, sudo)
    digests.update(old=conf_digest(second.conf("lab-a")), new=conf_digest(third.conf("lab-a")))
    unit_after = vm_live.unit_invocation(ssh, a)
    handshake = {p: None if t is None else round(t - restart, 1) for p, t in seen.items()}
    peer_handshakes = {p: vm_live.latest_handshakes(ssh, new[p], sudo) for p in peers}
    figure(
        f"VM live key rotation of lab-a over SSH: {applied_text(rotation)}; "
        "first ping through lab-a's new key, s after lab-a's -sync was sent: "
        + ", ".join(f"from {p} {t}" for p, t in handshake.items())
    )
    result = Live(
        user, sudo, wait, subnet, routes_before, routes_after_peers, subnet_ticks, settled_ticks,
        rotation, digests, cut, unit_before, unit_after, handshake,
        peer_handshakes, a.public_key, new["lab-a"].public_key,
    )  # fmt: skip
    lab.nodes = [new[n.name] for n in lab.nodes]  # the mesh now runs the rotated keys

    # (d) The health command of every node, over the same SSH path.
    plan = third.plan()
    keys = {n: node.public_key for n, node in new.items()}
    for n, node in new.items():
        command = vm_live.node_health_command(plan, n, keys, sudo)
        result.health[n] = ssh.run(str(node.public_ip), command, timeout=vm_live.HEALTH_TIMEOUT)
    figure(
        "VM health command over SSH: "
        + ", ".join(f"{n} exit {r.returncode} in {r.seconds} s" for n, r in result.health.items())
    )
    return result


def counts(summary: dict[str, str], *fields: str) -> tuple[str, ...]:
    return tuple(summary[f] for f in fields)


PEER_FIELDS = ("peers_added", "peers_changed", "peers_removed")
ROUTE_FIELDS = ("routes_added", "routes_removed")


def test_live_update_logs_in_as_the_image_user_and_runs_through_sudo(live: Live) -> None:
    assert (live.user, live.sudo) == (LOGIN_USER, True)  # sshUser, as components/sync.py reads it
    assert "wait-exit=0" in live.wait.stdout, live.wait.stdout  # the first-boot wait, as the login user
    assert "status: done" in live.wait.stdout, live.wait.stdout


def test_live_update_adds_the_subnet_route_without_touching_other_peers(live: Live) -> None:
    update = live.subnet
    assert update.changed == ["lab-a", "lab-c"]  # lab-b's own conf lists no route to its own subnet
    for node in update.changed:
        s = update.peers[node].summary
        assert s["interface"] == "wg0" and s["action"] == "peers", (node, s)
        assert counts(s, *PEER_FIELDS, *ROUTE_FIELDS) == ("0", "1", "0", "1", "0"), (node, s)
        s = update.full[node].summary  # the diff is done: the full apply only installs the file
        assert s["action"] == "sync", (node, s)
        assert counts(s, *PEER_FIELDS, *ROUTE_FIELDS) == ("0", "0", "0", "0", "0"), (node, s)
    assert ADDED_SUBNET not in live.routes_before
    assert ADDED_SUBNET in live.routes_after_peers, live.routes_after_peers
    # lab-a <-> lab-c runs through peers the commands never touched: not one ping lost.
    for pair in ("lab-a -> lab-c", "lab-c -> lab-a"):
        c = live.subnet_ticks[pair]
        assert c.sent >= 3 and c.lost == 0, ticks_text(live.subnet_ticks)
    # And the whole mesh pings once the commands are done.
    for pair, c in live.settled_ticks.items():
        assert c.sent >= 2 and c.lost == 0, (pair, ticks_text(live.settled_ticks))


def test_key_rotation_restarts_wg0_through_systemd_and_peers_handshake_with_the_new_key(live: Live) -> None:
    update = live.rotation
    assert update.changed == ["lab-a", "lab-b", "lab-c"]
    for peer in ("lab-b", "lab-c"):
        s = update.peers[peer].summary
        assert s["action"] == "peers" and counts(s, "peers_added", "peers_removed") == ("1", "1"), (peer, s)
        assert update.full[peer].summary["action"] == "sync", update.full[peer].summary
    assert update.peers["lab-c"].summary["routes_removed"] == "1"  # lab-b's extra subnet is gone again
    s = update.peers["lab-a"].summary
    assert s["action"] == "peers" and s["held"] == "private-key", s  # lab-a keeps its old key for now
    assert live.digests["old"] != live.digests["new"]
    assert live.digests["after -peers"] == live.digests["old"], "-peers installed the file"
    assert all(live.cut.values()), f"a peer still reached lab-a's old key: {live.cut}"
    s = update.full["lab-a"].summary
    assert s["action"] == "restart" and s["reason"] == "private-key" and s["peers"] == "2", s
    assert live.digests["after -sync"] == live.digests["new"]  # installed byte for byte
    assert live.unit_before[0] == live.unit_after[0] == "active"
    assert live.unit_after[1] != live.unit_before[1], "wg-quick@wg0 was not restarted by systemd"
    assert live.old_key != live.new_key
    for peer, seconds in live.handshake.items():
        assert seconds is not None, f"no ping from {peer} got through lab-a's new key"
    for peer, stamps in live.peer_handshakes.items():
        assert live.old_key not in stamps, peer
        assert stamps.get(live.new_key, 0) > 0, (peer, "no handshake with lab-a's new key")


def test_health_command_passes_on_every_vm_over_ssh(live: Live) -> None:
    assert set(live.health) == {"lab-a", "lab-b", "lab-c"}
    for node, r in live.health.items():
        assert r.returncode == 0, (node, r.stdout, r.stderr)
        lines = r.stdout.splitlines()
        assert lines[0].split()[:3] == ["PEER", "ADDRESS", "HANDSHAKE"], r.stdout
        rows = {line.split()[0]: line for line in lines[1:-1]}
        assert set(rows) == {"lab-a", "lab-b", "lab-c"} - {node}, r.stdout
        assert all(row.rstrip().endswith(" ok") for row in rows.values()), r.stdout
        assert lines[-1] == f"wgmesh-health: {node}: ok, 2 peers", r.stdout


def test_no_private_key_in_what_the_live_commands_print(live: Live, live_stack: LiveStack) -> None:
    keys = [private_key(r.conf(n)) for r in live_stack.renders.values() for n in ("lab-a", "lab-b", "lab-c")]
    printed = "\n".join(live.outputs())
    assert keys and all(k and k not in printed for k in keys)


# ---- a VM replaced the way Pulumi replaces it --------------------------------------------------


REPLACED = "lab-a"  # its keyEpoch was bumped: its first user data holds its first private key


@dataclass
class Replacement:
    destroyed: vm_replace.Destroyed
    booted: float  # host time.monotonic() the new QEMU started
    stale: vm_replace.Dialed  # first login: the first-boot wait, then what the new VM runs
    peers: vm_live.Applied  # its `-peers` (re-run: the VM id is an input)
    full: vm_live.Applied  # its `-sync`
    digests: dict[str, str]  # wg0.conf SHA-256: "first" (user data), "current", "stale", "after"
    public_key: dict[str, str]  # wg0's public key: "stale", "after", "current" (the render's)
    old_key: str  # the first render's public key of the node
    running_peers: dict[str, list[str]]  # `wg show wg0 allowed-ips` after the commands
    expected_peers: dict[str, list[str]]  # the current conf's peers
    peers_back: dict[str, float | None]  # peer -> s after boot when its ping reached the new VM
    reached_stale: list[str]  # peers whose ping reached the new VM before its -sync was sent
    ticks: dict[str, vm_live.TickCount]  # the other pair's pings, destroy to converged
    health: dict[str, vm_live.Result] = field(default_factory=dict)

    def converged(self) -> float | None:
        """s from the new VM's boot until its commands were done and every peer pinged it."""
        done = round(self.full.started + self.full.seconds - self.booted, 1)
        if None in self.peers_back.values():
            return None
        return max(done, *(t for t in self.peers_back.values() if t is not None))


STALE_PROBE = "; ".join(
    (WAIT_FOR_FIRST_BOOT, "sudo -n wg show wg0 public-key", f"sudo -n sha256sum {WG_CONF_PATH}")
)


@pytest.fixture(scope="module")
def replaced(
    booted: Booted, live: Live, live_stack: LiveStack, vm_image: lab_image.Image, figure: Figure
) -> Replacement:
    """lab-a's VM destroyed and created again from its first user data, then its commands run."""
    lab = booted.lab
    first, current = live_stack.renders["first"], live_stack.renders["rotated"]
    nodes = current.nodes()
    node = nodes[REPLACED]
    others = [n for n in lab.nodes if n.name != REPLACED]
    ssh = live_stack.ssh(lab.netns, live.user)
    host = str(node.public_ip)
    conf = current.conf(REPLACED)
    with vm_live.polling(vm_faults.Tails(lab, others)) as tails:
        destroyed = vm_replace.destroy(lab, REPLACED)
        booted_at = vm_replace.create(lab, node, first.out, vm_image, f"wglab-{REPLACED}-replaced")
        vm_replace.forget_host_key(live_stack.directory / "known_hosts", host)
        stale = vm_replace.dial(ssh, host, STALE_PROBE)
        payload = current.payload(REPLACED)
        peers = vm_live.apply(ssh, node, payload, live.sudo, peers_only=True)
        full = vm_live.apply(ssh, node, payload, live.sudo)

        def back() -> dict[str, float | None]:
            return {p.name: vm_live.first_tick(tails.lines, p.name, node, full.started) for p in others}

        wait_for(lambda: None not in back().values(), 90)
        seen = back()
    gone = destroyed.at + 5.0  # a tick line stamped later than this was pinged after the delete
    early = {p.name: vm_live.first_tick(tails.lines, p.name, node, gone) for p in others}
    ticks = vm_live.tick_counts(tails.lines, others, since=destroyed.at)
    words = stale.result.stdout.split()
    after = ssh.check(host, "sudo -n wg show wg0 public-key", "wg show").stdout.strip()
    running = ssh.check(host, "sudo -n wg show wg0 allowed-ips", "wg show").stdout
    result = Replacement(
        destroyed, booted_at, stale, peers, full,
        digests={
            "first": conf_digest(first.conf(REPLACED)),
            "current": conf_digest(conf),
            "stale": words[1] if len(words) > 1 else "",
            "after": vm_live.installed_digest(ssh, node, live.sudo),
        },
        public_key={"stale": words[0] if words else "", "after": after, "current": node.public_key},
        old_key=first.nodes()[REPLACED].public_key,
        running_peers=vm_replace.shown_peers(running),
        expected_peers=vm_replace.conf_peers(conf),
        peers_back={p: None if t is None else round(t - booted_at, 1) for p, t in seen.items()},
        reached_stale=[p for p, t in early.items() if t is not None and t < full.started],
        ticks=ticks,
    )  # fmt: skip
    plan = current.plan()
    keys = {n: x.public_key for n, x in nodes.items()}
    for n, x in nodes.items():
        command = vm_live.node_health_command(plan, n, keys, live.sudo)
        result.health[n] = ssh.run(str(x.public_ip), command, timeout=vm_live.HEALTH_TIMEOUT)
    figure(
        f"VM {REPLACED} replaced (deleted, then booted from its first user data): SSH login "
        f"{round(stale.at - booted_at, 1)} s after boot ({stale.attempts} dials, first-boot wait included); "
        f"-peers {peers.seconds} s, -sync {full.seconds} s ({full.summary.get('action')}); "
        f"converged {result.converged()} s after boot (peers' pings back: "
        + ", ".join(f"{p} {t} s" for p, t in result.peers_back.items())
        + f"); other pair lost/sent from the delete on: {ticks_text(ticks)}; health: "
        + ", ".join(f"{n} exit {r.returncode}" for n, r in result.health.items())
    )
    return result


def test_replaced_vm_boots_its_first_user_data_and_is_stale_until_its_commands_run(
    replaced: Replacement,
) -> None:
    d = replaced.destroyed
    assert d.gone and d.disk_gone, d
    assert replaced.stale.ok, (replaced.stale.result.returncode, replaced.stale.result.stderr)
    assert replaced.digests["first"] != replaced.digests["current"]
    assert replaced.digests["stale"] == replaced.digests["first"]  # ignore_changes: the first user data
    assert replaced.public_key["stale"] == replaced.old_key != replaced.public_key["current"]
    assert replaced.reached_stale == []  # its peers know only its current key: none reached it


def test_replaced_vm_converges_through_its_peers_sync_and_health_commands(replaced: Replacement) -> None:
    s = replaced.peers.summary
    assert s["action"] == "peers" and s["held"] == "private-key", s  # the stale node keeps its key for now
    s = replaced.full.summary
    assert s["action"] == "restart" and s["reason"] == "private-key", s
    assert replaced.digests["after"] == replaced.digests["current"]
    assert replaced.public_key["after"] == replaced.public_key["current"]
    assert replaced.running_peers == replaced.expected_peers and len(replaced.expected_peers) == 2
    assert None not in replaced.peers_back.values(), replaced.peers_back  # its peers reach it again
    assert set(replaced.health) == {"lab-a", "lab-b", "lab-c"}
    for node, r in replaced.health.items():
        assert r.returncode == 0, (node, r.stdout, r.stderr)
        assert r.stdout.splitlines()[-1] == f"wgmesh-health: {node}: ok, 2 peers", r.stdout


def test_other_pair_loses_no_ping_while_a_vm_is_replaced(replaced: Replacement) -> None:
    assert set(replaced.ticks) == {"lab-b -> lab-c", "lab-c -> lab-b"}
    for pair, c in replaced.ticks.items():
        assert c.sent >= 30 and c.lost == 0, (pair, ticks_text(replaced.ticks))


# ---- a host-rules change on a running VM: masquerade behind lab-c ------------------------------


MASQUERADING = "lab-c"  # routes 10.0.7.0/24; the change turns on masquerade into it


def masquerade_behind_lab_c(doc: StackDoc) -> None:
    rotate_lab_a(doc)  # the mesh as it runs now, plus the one change
    (c,) = [n for n in doc["config"]["wgmesh:nodes"] if n["name"] == MASQUERADING]
    c["masquerade"] = True


@dataclass
class HostRules:
    changed: list[str]  # nodes whose payload changed (their commands run)
    update: Update
    lan_address: str  # lab-c's own address in 10.0.7.0/24
    source: str  # the pinging node's overlay address
    before: vm_masq.Seen
    after: vm_masq.Seen
    ticks: dict[str, vm_live.TickCount]  # lab-a <-> lab-b, first command to 5 s after the last
    unit_before: tuple[str, str]  # lab-c's wg-quick@wg0 (ActiveState, InvocationID)
    unit_after: tuple[str, str]


@pytest.fixture(scope="module")
def host_rules(booted: Booted, live: Live, live_stack: LiveStack, figure: Figure) -> HostRules:
    """`masquerade: true` on lab-c pushed through its commands; lab-a pings the host behind it."""
    lab = booted.lab
    current = live_stack.renders["rotated"]
    changed_render = live_stack.render("masquerade", masquerade_behind_lab_c)
    nodes = changed_render.nodes()
    c, src = nodes[MASQUERADING], nodes["lab-a"]
    (net,) = c.subnets
    node_side, host_side = (a.split("/")[0] for a in vm_net.subnet_host_addresses(net))
    (host_ns,) = [ns for ns, owner in lab.subnet_hosts if owner == MASQUERADING]
    ssh = live_stack.ssh(lab.netns, live.user)
    changed = [n for n in nodes if changed_render.payload(n) != current.payload(n)]
    update = Update(changed)
    before = vm_masq.sources_seen(ssh, src, host_ns, host_side)
    unit_before = vm_live.unit_invocation(ssh, c)
    pair = [nodes["lab-a"], nodes["lab-b"]]
    with vm_live.polling(vm_faults.Tails(lab, pair)) as tails:
        window = time.monotonic()
        for n in changed:
            update.peers[n] = vm_live.apply(
                ssh, nodes[n], changed_render.payload(n), live.sudo, peers_only=True
            )
        for n in changed:
            update.full[n] = vm_live.apply(ssh, nodes[n], changed_render.payload(n), live.sudo)
        time.sleep(5.0)
    ticks = vm_live.tick_counts(tails.lines, pair, since=window)
    after = vm_masq.sources_seen(ssh, src, host_ns, host_side)
    result = HostRules(
        changed, update, node_side, str(src.address), before, after, ticks,
        unit_before, vm_live.unit_invocation(ssh, c),
    )  # fmt: skip
    figure(
        f"VM masquerade turned on behind {MASQUERADING} over SSH: "
        f"{applied_text(update) if changed else 'no command ran'}; "
        f"sources seen by {host_side}: before {sorted(before.sources)}, after {sorted(after.sources)}; "
        f"lab-a <-> lab-b lost/sent while applied: {ticks_text(ticks)}"
    )
    return result


def test_masquerade_change_reaches_the_running_node_and_takes_effect(host_rules: HostRules) -> None:
    h = host_rules
    assert h.changed == [MASQUERADING]  # only lab-c's commands run (its host rules changed)
    assert h.before.answered and h.before.sources == {h.source}  # routed: the overlay source arrives
    assert h.after.answered, h.after.ping.stdout
    assert h.after.sources == {h.lan_address}, h.after.sources  # masqueraded as lab-c's LAN address
    assert h.unit_after == h.unit_before, "wg0 restarted for a host-rules change"


def test_other_pair_loses_no_ping_while_host_rules_change(host_rules: HostRules) -> None:
    assert set(host_rules.ticks) == {"lab-a -> lab-b", "lab-b -> lab-a"}
    for pair, c in host_rules.ticks.items():
        assert c.sent >= 5 and c.lost == 0, (pair, ticks_text(host_rules.ticks))


# ---- faults: reboot one VM, then kill another --------------------------------------------------


@dataclass
class Faults:
    reboot: vm_faults.RebootResult
    kill: vm_faults.KillResult


@pytest.fixture(scope="module")
def faults(booted: Booted, figure: Figure) -> Faults:
    if booted.result.problems:
        pytest.fail("the mesh was not healthy before the faults: " + "; ".join(booted.result.problems))
    nodes = {n.name: n for n in booted.lab.nodes}
    rebooted = vm_faults.reboot(booted.lab, nodes["lab-a"])
    figure(rebooted.summary())
    killed = vm_faults.kill(booted.lab, nodes["lab-b"])
    figure(killed.summary())
    return Faults(rebooted, killed)


def test_rebooted_vm_rejoins_within_60_s_of_boot_completing(faults: Faults) -> None:
    r = faults.reboot
    assert r.problems == []
    assert r.clean, "the guest did not reboot itself on Ctrl-Alt-Del (hard reset used)"
    assert r.rejoin is not None and r.rejoin < REJOIN_LIMIT, r.summary()
    assert set(r.peer_pings) == {"lab-b", "lab-c"}  # both peers' pings reach it again
    assert r.report is not None and r.report.cloudinit == "done"


def test_metadata_guard_survives_the_reboot(faults: Faults) -> None:
    second = faults.reboot.report
    assert second is not None and second.ended
    assert second.guard == GUARD_OK  # loaded by the enabled unit this time, not by runcmd
    assert guard_loaded_before_network(second), second.guard_unit
    print(f"guard unit after the reboot: {second.guard_unit}")
    assert second.key_files and all(f.root_only for f in second.key_files), second.key_files


def test_killing_a_vm_leaves_the_others_pinging_with_no_loss(faults: Faults) -> None:
    k = faults.kill
    assert k.gone
    assert set(k.sent) == {"lab-a -> lab-c", "lab-c -> lab-a"}
    for pair, sent in k.sent.items():
        assert sent >= 10, (pair, sent)  # ~1 a second over the 25 s window
        assert k.lost[pair] == 0, k.summary()
