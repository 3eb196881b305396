"""The metadata guard, booted from rendered user data in the netns lab, against a fake metadata host.

The lab's internet namespace gets 169.254.169.254 and fd00:ec2::254 and an HTTP server serving a
stand-in user data; each node gets the on-link routes a cloud gives its VMs (inside the lab's
namespaces only). Root in a node reads it; uid 65534 does not; a host behind a node cannot reach
it through the node either. Then the mutation: with the guard's table deleted the same non-root
and forwarded probes succeed, and reloading the rendered file blocks them again. The guard
also outlives `wg-quick down`, which removes only wg0's own table.

Needs root and the netns lab tools; skipped with the reason outside CI, failed under CI=true.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from labtest import namespaces_with_prefix, require_netns_lab

from cloudinit.host import METADATA_GUARD_PATH, METADATA_TABLE, METADATA_V4, METADATA_V6
from lab.core.mounts import mounts_under
from lab.core.proc import NETNS_DIR, NODE_ENV, Place, run_in
from lab.core.processes import alive
from lab.core.state import load_state
from lab.netns import driver as netns
from lab.netns.layout import Layout
from lab.netns.running import NetnsLab
from tools.render import main as render_main

pytestmark = pytest.mark.lab
PREFIX = "wgm-h-"
ROOT = Path("/tmp/wgmesh-lab/test-hardening")
NOBODY = ("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups")
MARKER = "wgmesh-lab stand-in user data (no key here)"
STACK = """\
config:
  wgmesh:mesh: {cidr: 10.77.0.0/24, port: 51820}
  wgmesh:nodes:
    - {name: lab-a, cloud: lab, publicIp: 198.51.100.1}
    - {name: lab-b, cloud: lab, publicIp: 198.51.100.2, subnets: [10.0.7.0/24]}
"""
# One GET, one line out: the body, or the error's class (ConnectionRefusedError, timeout, ...).
PROBE = """
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=4).read().decode().strip())
except Exception as e:
    reason = getattr(e, "reason", e)
    print(type(reason).__name__)
"""


def our_namespaces() -> list[str]:
    return namespaces_with_prefix(PREFIX)


@dataclass
class GuardedLab:
    lab: NetnsLab
    python: str

    def probe(self, place: Place, url: str, *, as_nobody: bool = False) -> str:
        argv = (*(NOBODY if as_nobody else ()), self.python, "-c", PROBE, url)
        return run_in(place, *argv, timeout=20).stdout.strip()

    def node(self, name: str) -> Place:
        return self.lab.node(name)


URL4 = f"http://{METADATA_V4}/latest/user-data"
URL6 = f"http://[{METADATA_V6}]/latest/user-data"


def add_fake_metadata_host(lab: NetnsLab, docroot: Path) -> subprocess.Popen[bytes]:
    """The metadata addresses on the internet bridge, an HTTP server there, on-link routes in nodes."""
    inet = lab.internet.netns
    for cmd in (
        ["addr", "add", f"{METADATA_V4}/32", "dev", "br0"],
        ["-6", "addr", "add", f"{METADATA_V6}/128", "dev", "br0", "nodad"],
        ["route", "add", "198.51.100.0/24", "dev", "br0", "scope", "link"],
        ["-6", "route", "add", "fd00:ec2::/64", "dev", "br0"],
        ["route", "add", "10.0.7.0/24", "via", "198.51.100.2", "dev", "br0", "onlink"],  # replies to the lan
    ):
        subprocess.run(["ip", "-n", inet, *cmd], check=True, capture_output=True)
    for i, node in enumerate(lab.nodes):
        ns = lab.node(node.name).netns
        # The lab underlay is IPv4 only; this lab's nodes get IPv6 on eth0 to reach fd00:ec2::254
        # (a per-namespace key, written inside the node's network namespace).
        enable_v6 = "echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6"
        subprocess.run(["nsenter", f"--net={NETNS_DIR / ns}", "--", "sh", "-c", enable_v6], check=True)
        for cmd in (
            ["route", "add", f"{METADATA_V4}/32", "dev", "eth0", "scope", "link"],
            ["-6", "addr", "add", f"fd00:ec2::{i + 1}/128", "dev", "eth0", "nodad"],
            ["-6", "route", "add", f"{METADATA_V6}/128", "dev", "eth0"],
        ):
            subprocess.run(["ip", "-n", ns, *cmd], check=True, capture_output=True)
    (docroot / "latest").mkdir(parents=True)
    (docroot / "latest" / "user-data").write_text(MARKER + "\n")
    python = shutil.which("python3", path=NODE_ENV["PATH"]) or "python3"
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            inet,
            python,
            "-m",
            "http.server",
            "--bind",
            "::",
            "--directory",
            str(docroot),
            "80",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(NODE_ENV),
    )
    return server


def wait_until_serving(g: GuardedLab) -> None:
    deadline = time.monotonic() + 15
    while g.probe(g.node("lab-a"), URL4) != MARKER:
        assert time.monotonic() < deadline, "the fake metadata server never answered root"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardedLab]:
    require_netns_lab("setpriv")
    layout = Layout(root=ROOT, prefix=PREFIX)
    if load_state(layout.state_file) is not None or our_namespaces():
        pytest.fail(f"a previous run left a lab behind: {our_namespaces()} {ROOT}")
    tmp = tmp_path_factory.mktemp("hardening")
    (tmp / "Pulumi.guard.yaml").write_text(STACK)
    render_dir = tmp / "render"
    assert render_main(["--stack", str(tmp / "Pulumi.guard.yaml"), "--out", str(render_dir)]) == 0
    server: subprocess.Popen[bytes] | None = None
    started = []
    try:
        result = netns.bring_up(render_dir, layout=layout, log=print)
        state = load_state(layout.state_file)
        assert state is not None
        started = list(state.processes)
        server = add_fake_metadata_host(result.lab, tmp / "metadata")
        g = GuardedLab(result.lab, shutil.which("python3", path=NODE_ENV["PATH"]) or "python3")
        wait_until_serving(g)
        yield g
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        netns.down(layout=layout, log=print)
        assert our_namespaces() == []
        assert mounts_under(ROOT) == []
        assert not ROOT.exists()
        assert [p for p in started if alive(p)] == []


def test_root_reads_metadata_and_non_root_is_refused(guarded: GuardedLab) -> None:
    for node in guarded.lab.nodes:
        place = guarded.node(node.name)
        assert guarded.probe(place, URL4) == MARKER, node.name
        assert guarded.probe(place, URL6) == MARKER, node.name
        assert guarded.probe(place, URL4, as_nobody=True) == "ConnectionRefusedError", node.name
        assert guarded.probe(place, URL6, as_nobody=True) == "ConnectionRefusedError", node.name


def test_a_host_behind_a_node_cannot_reach_metadata_through_it(guarded: GuardedLab) -> None:
    (lan,) = guarded.lab.lan_hosts()
    assert lan.router == "lab-b"
    assert guarded.probe(lan.place, URL4) == "ConnectionRefusedError"  # rejected by lab-b's forward chain


def test_key_files_are_root_only(guarded: GuardedLab) -> None:
    for node in guarded.lab.nodes:
        for path in ("/etc/wireguard/wg0.conf", "/etc/wireguard/wgmesh.nft"):
            mode = run_in(guarded.node(node.name), "stat", "-c", "%a %U:%G", path).stdout.strip()
            assert mode == "600 root:root", (node.name, path, mode)
        read = run_in(guarded.node(node.name), *NOBODY, "cat", "/etc/wireguard/wg0.conf", check=False)
        assert read.returncode != 0 and "Permission denied" in read.stderr


def test_guard_outlives_wg0_and_without_it_the_probes_get_through(guarded: GuardedLab) -> None:
    a = guarded.node("lab-a")
    run_in(a, "wg-quick", "down", "wg0")
    try:
        tables = run_in(a, "nft", "list", "tables").stdout
        assert f"table {METADATA_TABLE}" in tables and "table inet wgmesh\n" not in tables + "\n"
        assert guarded.probe(a, URL4, as_nobody=True) == "ConnectionRefusedError"
    finally:
        run_in(a, "wg-quick", "up", "wg0")

    (lan,) = guarded.lab.lan_hosts()
    b = guarded.node("lab-b")
    for place in (a, b):
        run_in(place, "nft", "delete", "table", *METADATA_TABLE.split())
    try:  # the mutation: the same probes succeed once the rule is gone
        assert guarded.probe(a, URL4, as_nobody=True) == MARKER
        assert guarded.probe(a, URL6, as_nobody=True) == MARKER
        assert guarded.probe(lan.place, URL4) == MARKER
    finally:
        for place in (a, b):
            run_in(place, "nft", "-f", METADATA_GUARD_PATH)  # the rendered file, as the boot unit loads it
    assert guarded.probe(a, URL4, as_nobody=True) == "ConnectionRefusedError"
    assert guarded.probe(lan.place, URL4) == "ConnectionRefusedError"
    assert guarded.probe(a, URL4) == MARKER
