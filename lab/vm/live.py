"""Live updates in the VM lab, run the way a deployment runs them: SSH, the login user, `sudo -n`.

`pulumi up` with `liveUpdates` reaches each node as pulumi-command does: an SSH session as the
image's login user running one command string (cloudinit/remote_apply.py: the first-boot wait, then
`cloudinit.sync.apply_command()` through `sudo -n` for a non-root user) with the node's new
bundle (cloudinit/bundle.py: its whole host config, wg0.conf, nft, sysctl, ...) on standard
input; first `<node>-peers` (peers only) on every changed node, then
`<node>-sync` (the full apply) on each, then the health command (components/health.py). Here
the host runs `ssh` the same way, but only inside the VM lab's private network namespace
(where the lab bridge holds an underlay address), to VMs the lab booted from user data that
authorizes a test key. Every `ssh` is a child the caller waits for (killed by subprocess on
timeout): nothing is left running. The bundle goes on stdin only; what comes back (the
script's summary line, the health table, redacted errors) holds no key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cloudinit.bundle import node_bundle
from cloudinit.cloudconfig import WG_CONF_PATH
from cloudinit.healthcheck import expected_peers, health_command
from cloudinit.remote_apply import needs_sudo, remote_apply_command
from cloudinit.sync import parse_summary
from lab.core.errors import LabError
from lab.core.manifest import LabNode
from lab.core.probes import parse_latest_handshakes
from lab.core.proc import run, tail
from lab.vm.faults import POLL, Line, Tails, tick_states
from lab.vm.network import in_netns
from mesh.plan_types import MeshPlan
from mesh.spec import login_user
from tools.secretfiles import private_dir, private_umask

SSH_CONNECT_TIMEOUT = 20  # seconds for the TCP connect and key exchange with a TCG guest
COMMAND_TIMEOUT = 180.0  # s for a short command: a TCG guest on a busy host took over 60 s to log in
APPLY_TIMEOUT = 180.0  # the script holds a 120 s lock wait; a TCG guest is slow
HEALTH_TIMEOUT = 240.0  # the health script waits up to 150 s for handshakes
UNIT = "wg-quick@wg0"


@dataclass(frozen=True)
class SshKey:
    private: Path  # 0600, in a 0700 directory
    public: str  # one authorized_keys line


def make_ssh_key(directory: Path) -> SshKey:
    """A fresh ed25519 key pair in `directory` (created or tightened to 0700)."""
    private_dir(directory)
    path = directory / "id_ed25519"
    argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wgmesh-lab-vm-test", "-f", str(path)]
    with private_umask():  # the private key is 0600 from its first byte
        run(argv, what="ssh-keygen", timeout=30)
    return SshKey(path, path.with_name(path.name + ".pub").read_text().strip())


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # host wall time of the whole ssh command (connect, login, command)


@dataclass(frozen=True)
class Ssh:
    """`ssh` from inside the lab's namespace: batch mode, our key only, a private known_hosts."""

    netns: str
    user: str
    key: Path
    known_hosts: Path

    def argv(self, host: str, command: str) -> list[str]:
        options = {
            "BatchMode": "yes",
            "IdentitiesOnly": "yes",
            "StrictHostKeyChecking": "accept-new",  # first contact records the VM's host key
            "UserKnownHostsFile": str(self.known_hosts),
            "ConnectTimeout": str(SSH_CONNECT_TIMEOUT),
            "LogLevel": "ERROR",
        }
        argv = in_netns(self.netns, "ssh", "-F", "/dev/null", "-i", str(self.key))
        for name, value in options.items():
            argv += ["-o", f"{name}={value}"]
        return [*argv, "-l", self.user, "--", host, command]

    def run(self, host: str, command: str, stdin: str = "", timeout: float = COMMAND_TIMEOUT) -> Result:
        """One SSH session running `command` (a shell command line, as pulumi-command sends it)."""
        start = time.monotonic()
        proc = run(
            self.argv(host, command), what=f"ssh {host}", check=False, timeout=timeout, stdin_text=stdin
        )
        return Result(proc.returncode, proc.stdout, proc.stderr, round(time.monotonic() - start, 2))

    def check(
        self, host: str, command: str, what: str, stdin: str = "", timeout: float = COMMAND_TIMEOUT
    ) -> Result:
        result = self.run(host, command, stdin, timeout)
        if result.returncode != 0:
            # The exit code and stderr's tail (keys redacted), never stdin.
            raise LabError(f"{what} on {host}: exit {result.returncode}: {tail(result.stderr, 5)}")
        return result


def uses_sudo(user: str) -> bool:
    """What cloudinit/remote_apply.py decides for a login user (non-root logins go through `sudo -n`)."""
    return needs_sudo(user)


def login_for(plan: MeshPlan, node: str) -> str:
    """The user live updates log in as on `node` (the spec's sshUser or the image default)."""
    (spec,) = [n for n in plan.spec.nodes if n.name == node]
    return login_user(plan.spec.mesh, spec)


def sync_command(sudo: bool, peers_only: bool = False) -> str:
    """The command string of a node's `<node>-sync` (`<node>-peers` with `peers_only`), as
    components/sync.py's LiveSync builds it."""
    return remote_apply_command(sudo, peers_only=peers_only)


def node_health_command(plan: MeshPlan, node: str, public_keys: dict[str, str], sudo: bool) -> str:
    """The command string of a node's `<node>-health` (components/health.py)."""
    return health_command(node, expected_peers(plan, node, public_keys), plan.node(node).iface.mtu, sudo=sudo)


def node_payload(plan: MeshPlan, node: str, conf: str) -> str:
    """What a node's commands send on stdin (secret): its whole host configuration as one bundle
    (cloudinit/bundle.py: wg0.conf, nft, sysctl, guards, keys, login user)."""
    return node_bundle(plan, node, conf)


@dataclass(frozen=True)
class Applied:
    node: str
    summary: dict[str, str]  # the script's key=value summary line (action, peers, routes_added, ...)
    seconds: float  # host wall time of the SSH command
    started: float  # host time.monotonic() when the command was sent
    output: str  # everything the command printed (stdout, stderr): keys redacted by the script


def apply(ssh: Ssh, node: LabNode, conf: str, sudo: bool, peers_only: bool = False) -> Applied:
    """Push `conf` (secret: stdin only) to `node` with a live-update command; its summary."""
    started = time.monotonic()
    command = sync_command(sudo, peers_only)
    what = f"{node.name}: live update ({'peers only' if peers_only else 'full'})"
    result = ssh.check(str(node.public_ip), command, what, conf, APPLY_TIMEOUT)
    output = result.stdout + result.stderr
    return Applied(node.name, parse_summary(result.stdout), result.seconds, started, output)


def latest_handshakes(ssh: Ssh, node: LabNode, sudo: bool) -> dict[str, int]:
    """Peer public key -> unix time of its latest handshake (0: never), read as root."""
    command = f"{'sudo -n ' if sudo else ''}wg show wg0 latest-handshakes"
    return parse_latest_handshakes(ssh.check(str(node.public_ip), command, f"{node.name}: wg show").stdout)


def installed_digest(ssh: Ssh, node: LabNode, sudo: bool) -> str:
    """SHA-256 of the node's installed wg0.conf (compare with components.sync.conf_digest)."""
    command = f"{'sudo -n ' if sudo else ''}sha256sum {WG_CONF_PATH}"
    out = ssh.check(str(node.public_ip), command, f"{node.name}: sha256sum").stdout
    return out.split()[0] if out.split() else ""


def unit_invocation(ssh: Ssh, node: LabNode) -> tuple[str, str]:
    """(ActiveState, InvocationID) of wg-quick@wg0: a restart by systemd gives a new invocation."""
    command = f"systemctl show {UNIT} --property=ActiveState --property=InvocationID"
    out = ssh.check(str(node.public_ip), command, f"{node.name}: systemctl show").stdout
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return props.get("ActiveState", ""), props.get("InvocationID", "")


def routes_on_wg0(ssh: Ssh, node: LabNode) -> list[str]:
    """`ip route` entries on wg0, as the login user sees them (no root needed)."""
    out = ssh.check(str(node.public_ip), "ip -4 route show dev wg0", f"{node.name}: ip route").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@dataclass(frozen=True)
class TickCount:
    sent: int
    lost: int


def tick_counts(lines: Iterable[Line], nodes: Sequence[LabNode], since: float = 0.0) -> dict[str, TickCount]:
    """Per "a -> b": the guests' once-a-second pings seen on the host at or after `since`."""
    address = {n.name: str(n.address) for n in nodes}
    states: dict[str, list[bool]] = {f"{a.name} -> {b.name}": [] for a in nodes for b in nodes if a is not b}
    for line in lines:
        if line.fact != "TICK" or line.at < since or line.node not in address:
            continue
        for peer, ok in tick_states(line).items():
            names = [n for n, a in address.items() if a == peer and n != line.node]
            if names:
                states[f"{line.node} -> {names[0]}"].append(ok)
    return {k: TickCount(len(v), v.count(False)) for k, v in states.items()}


def first_tick(lines: Iterable[Line], src: str, dst: LabNode, since: float, ok: bool = True) -> float | None:
    """Host time of `src`'s first ping to `dst` at or after `since` that was answered (`ok`) or
    lost (None: none yet)."""
    for line in list(lines):
        if line.node == src and line.fact == "TICK" and line.at >= since:
            state = tick_states(line).get(str(dst.address))
            if state is not None and state == ok:
                return line.at
    return None


@contextmanager
def polling(tails: Tails, every: float = POLL) -> Iterator[Tails]:
    """Poll `tails` from a thread while the body runs (an SSH command blocks the caller), so each
    report line is stamped within `every` seconds of being written."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            tails.poll()

    tails.poll()
    thread = threading.Thread(target=loop, name="wglab-report-tails", daemon=True)
    thread.start()
    try:
        yield tails
    finally:
        stop.set()
        thread.join(10)
        tails.poll()
