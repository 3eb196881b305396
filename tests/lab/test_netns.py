"""The netns lab end to end: rendered user-data boots a mesh in network namespaces.

Needs root, network namespaces and wireguard-go. Not root outside CI: skipped with the
reason; with CI=true a missing prerequisite fails the run instead. Each test uses its own
namespace prefix and lab dir (so a running `make lab` is never touched) and asserts that
nothing is left behind afterwards: no namespaces, no mounts, no lab dir, no wireguard-go.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from labtest import namespaces_with_prefix, require_netns_lab

from lab.checks import health as checks
from lab.checks.mtu import mtu_scenario
from lab.checks.report import format_report
from lab.core.errors import LabError
from lab.core.mounts import mounts_under
from lab.core.proc import run_in
from lab.core.processes import alive
from lab.core.results import HealthReport
from lab.core.state import ProcessRecord, load_state
from lab.netns import driver as netns
from lab.netns.layout import BRIDGE, Layout
from lab.netns.running import NetnsLab
from mesh.keys import private_key, public_key
from tools.render import main as render_main

pytestmark = pytest.mark.lab
PREFIX = "wgm-t-"
ROOT = Path("/tmp/wgmesh-lab/test-netns")


@dataclass
class LabEnv:
    """Render stacks and boot them under the test layout, remembering every process started."""

    layout: Layout
    tmp: Path
    started: list[ProcessRecord] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def log(self, message: str) -> None:
        self.messages.append(message)
        print(message)

    def render(self, stack: str) -> Path:
        out = self.tmp / f"render-{stack}"
        assert render_main(["--stack", stack, "--out", str(out)]) == 0
        return out

    def remember_processes(self) -> None:
        state = load_state(self.layout.state_file)
        assert state is not None
        self.started += state.processes

    def bring_up(self, render_dir: Path, handshake_timeout: float = 20.0) -> netns.BringUp:
        result = netns.bring_up(
            render_dir, layout=self.layout, log=self.log, handshake_timeout=handshake_timeout
        )
        self.remember_processes()
        return result


def our_namespaces() -> list[str]:
    return namespaces_with_prefix(PREFIX)


def assert_nothing_left(env: LabEnv) -> None:
    assert our_namespaces() == []
    assert mounts_under(env.layout.root) == []
    assert not env.layout.root.exists()
    assert [p for p in env.started if alive(p)] == []


@pytest.fixture
def env(tmp_path: Path) -> Iterator[LabEnv]:
    require_netns_lab()
    lab_env = LabEnv(Layout(root=ROOT, prefix=PREFIX), tmp_path)
    if load_state(lab_env.layout.state_file) is not None or our_namespaces():
        pytest.fail(f"a previous test run left a lab behind: {our_namespaces()} {ROOT}")
    yield lab_env
    try:
        assert_nothing_left(lab_env)
    finally:
        if lab_env.layout.root.exists():
            netns.down(layout=lab_env.layout)


def read_in_node(lab: NetnsLab, node: str, *cmd: str) -> str:
    return run_in(lab.node(node), *cmd).stdout.strip()


def assert_all_healthy(report: HealthReport) -> None:
    for p in report.pairs:
        assert p.handshake_age is not None, f"{p.src} -> {p.dst}: no handshake"
        assert p.ping.ok, f"{p.src} -> {p.dst}: ping lost"
        assert p.df_ping.ok, f"{p.src} -> {p.dst}: DF ping at {p.mtu} lost"
    for c in report.checks:
        assert c.ok, f"{c.name}: {c.detail}"
    assert report.ok


# ----------------------------------------------------------------------------- the lab stack


def test_lab_stack_boots_healthy_and_up_replaces_a_running_lab(env: LabEnv) -> None:
    render_dir = env.render("lab")
    host_wireguard = sorted(os.listdir("/etc/wireguard"))
    host_forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    env.bring_up(render_dir)  # a lab already running when `up` is called
    first_lab = list(env.started)
    try:
        result = netns.start("lab", render_dir, layout=env.layout, log=env.log)
        env.remember_processes()
        assert any("tearing it down first" in m for m in env.messages)
        assert [p for p in first_lab if alive(p)] == []
        assert result.mesh_seconds is not None
        lab = result.lab
        mesh = json.loads((render_dir / "mesh.json").read_text())
        assert [n.name for n in lab.nodes] == ["lab-a", "lab-b", "lab-c"]
        assert sum(p.what == "wireguard-go" for p in env.started[len(first_lab) :]) == 3

        # cloud-init's files are at their rendered paths inside the node, not on the host.
        assert read_in_node(lab, "lab-c", "stat", "-c", "%a", "/etc/wireguard/wg0.conf") == "600"
        assert read_in_node(lab, "lab-c", "cat", "/proc/sys/net/ipv4/ip_forward") == "1"
        assert read_in_node(lab, "lab-a", "wg", "show", "wg0", "public-key") == mesh["nodes"][0]["public_key"]
        assert sorted(os.listdir("/etc/wireguard")) == host_wireguard
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host_forwarding
        # The bridge sends no IGMP/MLD snooper reports and the IPv4-only uplinks no MLD, so
        # the underlay capture below sees only what the nodes send on purpose.
        bridge = json.loads(run_in(lab.internet, "ip", "-d", "-j", "link", "show", BRIDGE).stdout)
        assert bridge[0]["linkinfo"]["info_data"]["mcast_snooping"] == 0
        off = "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"
        assert {read_in_node(lab, n.name, "cat", off) for n in lab.nodes} == {"1"}

        report = checks.run_all(lab)
        print(format_report(report))
        assert len(report.pairs) == 6
        assert {p.mtu for p in report.pairs} == {1420}
        subnet_checks = [c for c in report.checks if c.name.startswith("subnet ")]
        assert len(subnet_checks) == 4  # lab-a and lab-b to 10.0.7.2 and back
        for name in (
            "underlay carries only WireGuard UDP",
            "MSS clamped across a forwarding node",
            "negative: wrong peer key cannot reach the peer",
            "negative: source outside AllowedIPs is dropped",
        ):
            assert not report.check(name).skipped, name
        assert_all_healthy(report)
    finally:
        assert netns.down(layout=env.layout, log=env.log) == 0
    assert netns.down(layout=env.layout, log=env.log) == 0
    assert env.messages[-1] == "no netns lab is up"


def test_broken_render_fails_the_pair_checks(env: LabEnv) -> None:
    render_dir = env.render("lab")
    mesh = json.loads((render_dir / "mesh.json").read_text())
    keys = {n["name"]: n["public_key"] for n in mesh["nodes"]}
    user_data = render_dir / "lab-a" / "user-data"
    text = user_data.read_text()
    assert text.count(f"PublicKey = {keys['lab-b']}") == 1
    user_data.write_text(text.replace(keys["lab-b"], public_key(private_key(os.urandom(32)))))

    result = env.bring_up(render_dir, handshake_timeout=3)
    try:
        assert result.mesh_seconds is None
        pairs = checks.check_pairs(result.lab)
        broken = {("lab-a", "lab-b"), ("lab-b", "lab-a")}
        for p in pairs:
            if (p.src, p.dst) in broken:
                assert not p.ok and not p.ping.ok and p.handshake_age is None, p
            else:
                assert p.ok, p
    finally:
        assert netns.down(layout=env.layout, log=env.log) == 0


# ----------------------------------------------------------------------------- MTU


def test_planned_mtu_carries_tcp_where_1420_black_holes(env: LabEnv) -> None:
    render_dir = env.render("lab-mtu")
    result = env.bring_up(render_dir)
    try:
        lab = result.lab
        assert {(n.underlay_mtu, n.mtu) for n in lab.nodes} == {(1460, 1380)}
        pairs = checks.check_pairs(lab)
        assert all(p.ok and p.mtu == 1380 for p in pairs), pairs
        lan_to_lan = [c for c in checks.check_subnets(lab) if c.name.count("behind") == 2]
        assert len(lan_to_lan) == 2 and all(c.ok for c in lan_to_lan), lan_to_lan

        s = mtu_scenario(lab, seconds=2.0)
        print(s)
        assert s.underlay_mtu == 1460
        assert s.planned.wg_mtu == 1380 and s.planned.df_ping.ok
        assert s.planned.tcp.connected and s.planned.tcp.received > 1_000_000
        assert s.planned.fragments_dropped == 0
        assert s.wrong.wg_mtu == 1420 and not s.wrong.df_ping.ok
        assert s.wrong.tcp.received < 64 * 1024  # the handshake gets through, full segments do not
        assert s.wrong.fragments_dropped > 0
        assert read_in_node(lab, "lab-a", "cat", "/sys/class/net/wg0/mtu") == "1380"  # restored
    finally:
        assert netns.down(layout=env.layout, log=env.log) == 0


# ----------------------------------------------------------------------------- ownership, Ctrl-C


def test_refuses_a_namespace_it_did_not_create(env: LabEnv) -> None:
    render_dir = env.render("lab")
    squatter = env.layout.internet_ns
    subprocess.run(["ip", "netns", "add", squatter], check=True)
    try:
        with pytest.raises(LabError, match="not created by this lab"):
            env.bring_up(render_dir)
        assert squatter in our_namespaces()
        assert our_namespaces() == [squatter]
        assert netns.down(layout=env.layout, log=env.log) == 0
        assert squatter in our_namespaces()  # `down` does not touch it either
    finally:
        subprocess.run(["ip", "netns", "delete", squatter], check=True)


def test_ctrl_c_during_bring_up_removes_everything(env: LabEnv) -> None:
    render_dir = env.render("lab")

    def interrupt_once_wg_is_up(message: str) -> None:
        env.log(message)
        if "waiting for every pair" in message:
            env.remember_processes()  # wireguard-go runs by now: they must be gone afterwards
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        netns.bring_up(render_dir, layout=env.layout, log=interrupt_once_wg_is_up)
    assert sum(p.what == "wireguard-go" for p in env.started) == 3
    assert any("removing everything" in m for m in env.messages)


def test_missing_prerequisites_skip_outside_ci_and_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "unavailable_reason", lambda: "the netns lab needs root")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        require_netns_lab()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_netns_lab()
    # A tool one test file needs on top of the lab's own counts the same way.
    monkeypatch.setattr(netns, "unavailable_reason", lambda: None)
    with pytest.raises(pytest.fail.Exception, match="missing tools for this lab test: no-such-tool-x"):
        require_netns_lab("no-such-tool-x")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-x"):
        require_netns_lab("no-such-tool-x")
    require_netns_lab("sh")  # present: no skip, no failure


def test_a_failing_runcmd_step_is_reported_and_everything_is_removed(env: LabEnv) -> None:
    render_dir = env.render("lab")
    user_data = render_dir / "lab-b" / "user-data"
    doc = yaml.safe_load(user_data.read_text())
    doc["runcmd"].insert(0, ["systemctl", "restart", "ssh"])  # a unit the lab cannot emulate
    user_data.write_text("#cloud-config\n" + yaml.safe_dump(doc))

    with pytest.raises(LabError, match=r"lab-b: runcmd\[0\] `systemctl restart ssh` exited 1") as e:
        env.bring_up(render_dir)
    assert "not emulated" in str(e.value)
    assert any("removing everything" in m for m in env.messages)
