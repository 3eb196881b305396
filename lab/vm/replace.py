"""Replace a VM the way `pulumi up` does, then converge it through the node's live-update commands.

What Pulumi does when a node's VM must be replaced (a zone or location change, `--replace`,
`cidr6` on AWS): with `delete_before_replace` the old instance is destroyed first, the static
IP (Elastic IP, reserved address, Hetzner primary IP) stays, and the new instance is created
from the inputs stored in state. `ignore_changes` on user data keeps the *stored* (first) user
data: the engine uses the program's value only when there is no previous one
(https://www.pulumi.com/docs/iac/concepts/resources/options/ignorechanges/). So the new VM
boots with its first wg0.conf and, after a `keyEpoch` bump, its first private key. What brings
it to the current config is the node's `-peers`, `-sync` and `-health` commands re-running
because the VM's id is one of their inputs.

Here: the old QEMU is stopped by PID and its disk overlay and seed deleted (an instance and its
root disk gone), then a new QEMU boots on the same tap and MAC (the same underlay IP, as the
static IP) from a fresh overlay and a seed holding the node's **first** rendered user data,
with a new instance id. The lab then dials SSH the way pulumi-command does (retrying while the
VM boots; no host-key check, since `hostKey` is unset: "If not provided, the host key will be
ignored", https://www.pulumi.com/registry/packages/command/api-docs/remote/command/) and runs
the node's commands (lab/vm/live.py, the strings components/sync.py builds).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from lab.core import wgconf
from lab.core.manifest import LabNode
from lab.core.proc import run
from lab.core.processes import stop_processes
from lab.vm import driver
from lab.vm.image import Image
from lab.vm.live import Result, Ssh
from tools.secretfiles import private_umask

DIAL_TIMEOUT = (
    600.0  # s from boot until SSH logs in (a TCG guest's first boot: ~150-200 s, more on a busy host)
)
DIAL_PAUSE = 5.0  # s between attempts (pulumi-command retries a failed dial too)
SSH_DIAL_ERROR = 255  # ssh's own exit code: no connection, no login yet


@dataclass(frozen=True)
class Destroyed:
    node: str
    pid: int
    gone: bool  # the QEMU process is gone
    disk_gone: bool  # its overlay and seed were deleted
    at: float  # host time.monotonic() when the QEMU was gone


def destroy(lab: driver.Lab, node: str) -> Destroyed:
    """Delete one VM: stop its QEMU (by the PID the lab recorded), delete its disk and seed.

    The console and report logs of the old instance are kept beside it (`<node>.old.*`) for a
    post-mortem; `driver.down` removes the whole state directory.
    """
    qemu = lab.qemu(node)
    gone = not stop_processes([qemu], grace=driver.STOP_GRACE)
    at = time.monotonic()
    if gone:
        lab.state.processes.remove(qemu)
        lab.state.save()
    paths = lab.paths(node)
    for path in (paths.console, paths.report):
        if path.exists():
            path.rename(paths.file(f"old.{path.name.removeprefix(node + '.')}"))
    paths.overlay.unlink(missing_ok=True)
    paths.seed.unlink(missing_ok=True)
    paths.pidfile.unlink(missing_ok=True)
    paths.qmp.unlink(missing_ok=True)  # the new QEMU listens on the same path
    shutil.rmtree(paths.file("seed"), ignore_errors=True)
    return Destroyed(node, qemu.pid, gone, not paths.overlay.exists() and not paths.seed.exists(), at)


def create(lab: driver.Lab, node: LabNode, first_render: Path, image: Image, instance_id: str) -> float:
    """Boot a new instance of `node` from its first rendered user data; host time it started.

    `node` carries the underlay address, MAC index and subnets (unchanged by a replacement).
    """
    paths = lab.paths(node.name)
    prefix = driver.underlay_prefix(lab.nodes)
    gateway = driver.lab_gateway(lab.nodes, prefix)
    with private_umask():  # the seed and the disk hold the first private key
        driver.make_seed(node, first_render, paths, prefix, gateway, instance_id)
        driver.make_overlay(image, paths)
        started = time.monotonic()
        driver.boot(lab, node, image)
    return started


def forget_host_key(known_hosts: Path, host: str) -> None:
    """Drop `host` from the lab's known_hosts: the new instance has new host keys, and
    pulumi-command without `hostKey` does not check them."""
    if known_hosts.exists():
        argv = ["ssh-keygen", "-R", host, "-f", str(known_hosts)]
        run(argv, check=False)  # exit 1: not listed
        known_hosts.with_name(known_hosts.name + ".old").unlink(missing_ok=True)


@dataclass(frozen=True)
class Dialed:
    result: Result  # the last attempt
    attempts: int
    at: float  # host time.monotonic() of the first successful login (or of giving up)

    @property
    def ok(self) -> bool:
        return self.result.returncode == 0


def dial(ssh: Ssh, host: str, command: str = "true", timeout: float = DIAL_TIMEOUT) -> Dialed:
    """Run `command` as soon as SSH logs in, retrying connection and login failures (exit 255)
    until `timeout`: sshd starts, and cloud-init installs the admin key, during the first boot."""
    end = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        result = ssh.run(host, command, timeout=120.0)
        if result.returncode != SSH_DIAL_ERROR or time.monotonic() + DIAL_PAUSE > end:
            return Dialed(result, attempts, time.monotonic())
        time.sleep(DIAL_PAUSE)


def conf_peers(conf: str) -> dict[str, list[str]]:
    """Peer public key -> sorted AllowedIPs of a wg0.conf (lab/core/wgconf.py reads it), as shown_peers
    gives them for `wg show` (the result holds public keys only)."""
    return {key: sorted(ips) for key, ips in wgconf.conf_peers(conf).items()}


def shown_peers(allowed_ips: str) -> dict[str, list[str]]:
    """`wg show wg0 allowed-ips` (`<public key>\\t<net> <net>`) -> public key -> sorted nets."""
    peers: dict[str, list[str]] = {}
    for line in allowed_ips.splitlines():
        key, _, nets = line.strip().partition("\t")
        if key:
            peers[key] = sorted(n for n in nets.split() if n != "(none)")
    return peers
