"""The camera scenario in the netns lab (stacks/Pulumi.lab-home.yaml, `make lab STACK=lab-home`).

A hub with a public address; `home`, a `cloud: external` host behind its home router (NAT, no
endpoint) routing a camera LAN 10.11.12.0/24 with masquerade out of its `lanInterface`; a
roaming laptop behind its own NAT box. One boot of the #cloud-config form must come out
healthy; one boot of the installer form (install.sh on a node that never saw cloud-init) must
too, with the same files and modes. Then each home check's key line is cut from the RENDERED
files before a fresh boot (home's masquerade, the hub's forwarding, home's keepalive), and that
check must fail.

Needs root (skips with the reason outside CI, fails under CI=true). Own namespace prefix and
lab dir; after every lab nothing may be left: no namespaces, mounts, lab dir or processes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import Figure
from labtest import assert_all_removed, render_stack, require_clean, require_netns_lab

from lab.checks import health, home
from lab.checks.report import format_report
from lab.core.probes import peer_endpoints, ping
from lab.core.proc import run_in
from lab.core.results import CheckResult, HealthReport
from lab.core.state import ProcessRecord, load_state
from lab.netns import clients, driver, homes
from lab.netns.layout import Layout
from lab.netns.running import NetnsLab

pytestmark = pytest.mark.lab
PREFIX = "wgm-hm-"
ROOT = Path("/tmp/wgmesh-lab/test-home")
LAYOUT = Layout(root=ROOT, prefix=PREFIX)
STACK = "lab-home"
MASQUERADE_LINE = 'iifname $WG oifname "wlp0s0f0" ip daddr { 10.11.12.0/24 } masquerade'
KEEPALIVE_LINE = "PersistentKeepalive = 2"
FORWARDING_LINE = "net.ipv4.ip_forward = 1"
CAMERA = "10.11.12.2"


@dataclass
class Booted:
    lab: NetnsLab
    render_dir: Path
    mesh_seconds: float | None
    seconds: float


def cut_line(render_dir: Path, node: str, needle: str, replacement: str | None = None) -> None:
    """Remove the one whole line of the node's rendered user-data holding `needle` (its YAML
    indentation too), or replace `needle` within it by `replacement`."""
    user_data = render_dir / node / "user-data"
    lines = user_data.read_text().splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if needle in line]
    assert len(hits) == 1, f"{node}/user-data: expected {needle!r} on one line, found {len(hits)}"
    [i] = hits
    if replacement is None:
        del lines[i]
    else:
        lines[i] = lines[i].replace(needle, replacement)
    user_data.write_text("".join(lines))


@contextlib.contextmanager
def booted(render_dir: Path, *, installer: bool = False, handshake_timeout: float = 20.0) -> Iterator[Booted]:
    """Boot a render under the test layout; afterwards assert nothing is left behind."""
    require_netns_lab("conntrack")
    require_clean(LAYOUT)
    started: list[ProcessRecord] = []
    host_forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    start = time.monotonic()
    try:
        up = driver.bring_up(
            render_dir, layout=LAYOUT, log=print, installer=installer, handshake_timeout=handshake_timeout
        )
        state = load_state(LAYOUT.state_file)
        assert state is not None
        started += state.processes
        seconds = time.monotonic() - start
        print(f"bring-up {seconds:.1f} s (every expected handshake: {up.mesh_seconds})")
        try:
            yield Booted(up.lab, render_dir, up.mesh_seconds, seconds)
        finally:
            assert driver.down(layout=LAYOUT, log=print) == 0
    finally:
        if LAYOUT.root.exists():
            driver.down(layout=LAYOUT)
    assert started
    assert_all_removed(LAYOUT, started)
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host_forwarding


def healthy_report(lab: NetnsLab) -> HealthReport:
    report = health.run_all(lab)
    print(format_report(report))
    for p in report.pairs:
        assert p.ok, p
    for c in report.checks:
        assert c.ok, f"{c.name}: {c.detail}"
    return report


def result(report: HealthReport | list[CheckResult], check: str) -> CheckResult:
    checks = report.checks if isinstance(report, HealthReport) else report
    [found] = [c for c in checks if c.name == home.named(check, "home")]
    print(f"{'ok ' if found.ok else 'BAD'} {found.name}: {found.detail}")
    return found


def assert_home_checks_pass(report: HealthReport) -> None:
    via = result(report, home.VIA_HUB)
    assert via.ok and f"client laptop -> {CAMERA} (behind home) via hub" in via.detail
    camera = result(report, home.CAMERA)
    assert camera.ok and "sources seen there: 10.11.12.1 (want 10.11.12.1)" in camera.detail
    assert camera.detail.endswith("route back to the mesh: none")
    held = result(report, home.KEEPALIVE)
    assert held.ok and "1 router mapping(s)" in held.detail
    moved = result(report, home.NAT_MOVE)
    assert moved.ok and "ports now 40000-40999" in moved.detail


# ----------------------------------------------------------------------------- the #cloud-config form


@pytest.fixture(scope="class")
def cloud_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    with booted(render_stack(STACK, tmp_path_factory.mktemp(STACK) / "render")) as b:
        yield b


class TestCloudConfigForm:
    def test_health_table_all_pass_with_the_home_checks(self, cloud_config: Booted, figure: Figure) -> None:
        assert cloud_config.mesh_seconds is not None
        start = time.monotonic()
        report = healthy_report(cloud_config.lab)
        figure(
            f"lab-home (#cloud-config): bring-up {cloud_config.seconds:.1f} s, every handshake after "
            f"{cloud_config.mesh_seconds:.1f} s, health table {time.monotonic() - start:.1f} s"
        )
        assert {(p.src, p.dst) for p in report.pairs} == {("hub", "home"), ("home", "hub")}
        assert_home_checks_pass(report)
        # The underlay check counted home's WireGuard, which reaches the lab internet only NATed.
        underlay = report.check("underlay carries only WireGuard UDP")
        assert underlay.ok and int(underlay.detail.split()[0]) > 0

    def test_home_sits_behind_its_router_and_the_camera_has_no_way_back(self, cloud_config: Booted) -> None:
        lab = cloud_config.lab
        site = homes.site(lab, "home")
        hub = lab.node("hub")
        endpoint = peer_endpoints(hub)[lab.mesh.node("home").public_key]
        address, _, port = endpoint.rpartition(":")
        assert address == str(site.nat_ip) and any(lo <= int(port) <= hi for lo, hi in clients.PORT_RANGES)
        uplink = run_in(lab.node("home"), "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
        assert f" {site.lan_address}/24 " in uplink
        lan = run_in(lab.node("home"), "ip", "-4", "-o", "addr", "show", "dev", "wlp0s0f0").stdout
        assert " 10.11.12.1/24 " in lan
        [camera] = [h for h in lab.lan_hosts() if h.router == "home"]
        assert str(camera.address) == CAMERA
        assert run_in(camera.place, "ip", "route", "show", "default").stdout.strip() == ""
        # The home node holds no address the hub could dial: the hub reaches it only through
        # the router's mapping, and the node's own uplink is a private LAN.
        assert run_in(hub, "ip", "route", "get", str(site.lan_address), check=False).returncode != 0


# ----------------------------------------------------------------------------- the installer form


def test_installer_form_on_a_node_that_never_saw_cloud_init(tmp_path: Path, figure: Figure) -> None:
    """install.sh in the node's fresh mount namespace: the same files and modes its
    #cloud-config writes, wg0 up, and every check of the health table passes the same."""
    render_dir = render_stack(STACK, tmp_path / "render")
    with booted(render_dir, installer=True) as b:
        assert b.mesh_seconds is not None
        node_dir = LAYOUT.node_dir("home")
        assert not (node_dir / "cloud-init.log").exists() and not (node_dir / "sandbox").exists()
        assert list((node_dir / "written").iterdir()) == []  # nothing was written for it beforehand
        assert (LAYOUT.node_dir("hub") / "cloud-init.log").exists()  # the hub booted its cloud-config
        place = b.lab.node("home")
        doc = yaml.safe_load((render_dir / "home" / "user-data").read_text())
        compared = 0
        for f in doc["write_files"]:
            assert "encoding" not in f  # a small mesh: plain content, compared as is
            mode = run_in(place, "stat", "-c", "%a %U", f["path"]).stdout.split()
            assert mode == [f["permissions"].lstrip("0"), "root"], f["path"]
            assert run_in(place, "cat", f["path"]).stdout == f["content"], f["path"]
            compared += 1
        assert compared == 8  # wg0.conf, nft, sysctl, guard and its unit, sshd, sudoers, keys
        start = time.monotonic()
        report = healthy_report(b.lab)
        figure(
            f"lab-home (installer): bring-up {b.seconds:.1f} s, every handshake after "
            f"{b.mesh_seconds:.1f} s, health table {time.monotonic() - start:.1f} s"
        )
        assert_home_checks_pass(report)


# ----------------------------------------------------------------------------- key lines cut


def test_home_without_its_masquerade_rule_fails_the_camera_check(tmp_path: Path) -> None:
    render_dir = render_stack(STACK, tmp_path / "render")
    cut_line(render_dir, "home", MASQUERADE_LINE)
    with booted(render_dir) as b:
        assert b.mesh_seconds is not None  # the mesh itself still comes up
        results = home.camera_checks(b.lab, homes.site(b.lab, "home"))
        camera = result(results, home.CAMERA)
        assert not camera.ok
        assert "0/2 sources" in camera.detail
        laptop = b.lab.mesh.clients[0].address
        assert str(laptop) in camera.detail.split("sources seen there: ")[1]  # unNATed, no way back
        assert ping(b.lab.node("home"), CAMERA, count=1).ok  # home itself still reaches its LAN


def test_hub_that_does_not_forward_fails_the_through_the_hub_check(tmp_path: Path) -> None:
    render_dir = render_stack(STACK, tmp_path / "render")
    # Forwarding off explicitly: a new namespace inherits the host's ip_forward, so a deleted
    # line would prove nothing on a host that forwards (CI runners with Docker do).
    cut_line(render_dir, "hub", FORWARDING_LINE, "net.ipv4.ip_forward = 0")
    with booted(render_dir) as b:
        assert b.mesh_seconds is not None
        assert run_in(b.lab.node("hub"), "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "0"
        results = home.camera_checks(b.lab, homes.site(b.lab, "home"))
        via = result(results, home.VIA_HUB)
        assert not via.ok
        assert "0 echo requests from" in via.detail  # none crossed the hub into home's wg0
        assert ping(b.lab.node("hub"), CAMERA, count=1).ok  # the hub itself still reaches the camera
        assert all(p.ok for p in health.check_pairs(b.lab))


def test_home_without_its_keepalive_loses_its_nat_mapping(tmp_path: Path) -> None:
    render_dir = render_stack(STACK, tmp_path / "render")
    cut_line(render_dir, "home", KEEPALIVE_LINE)
    # Nothing starts home's handshake now: the boot does not wait long for one.
    with booted(render_dir, handshake_timeout=3) as b:
        lab, site = b.lab, homes.site(b.lab, "home")
        hub = lab.mesh.node("hub")
        assert b.mesh_seconds is None
        # The router moves home to new ports: nothing from home tells the hub where it went.
        # (Each side has just answered the other, so neither owes a passive keepalive; home's own
        # re-handshake after 15 s of silence comes after the window.)
        assert ping(lab.node("home"), hub.address, count=1).ok  # home dials: a mapping exists
        assert ping(lab.node("hub"), lab.mesh.node("home").address, count=1).ok
        moved = home.check_nat_move(lab, site)
        print(f"BAD {moved.name}: {moved.detail}")
        assert not moved.ok and "not within 7 s" in moved.detail
        # A quiet spell: the router forgets home's idle mapping and the hub loses it.
        assert ping(lab.node("home"), hub.address, count=1).ok  # home speaks again: mapped anew
        held = home.check_keepalive(lab, site)
        print(f"BAD {held.name}: {held.detail}")
        assert not held.ok
        assert "first ping" not in held.detail  # the hub reached home before the quiet spell
        assert "0 router mapping(s)" in held.detail  # the router forgot the idle mapping
