"""IPv6 forwarding must not cost an uplink its RA-learned default route (throwaway namespaces only).

Each check builds a veth pair in a fresh `unshare --net` namespace: `up0` plays the node's
uplink, `rt0` the cloud router sending Router Advertisements (ra_sender.py). Then the rendered
sysctl file is applied with `sysctl -p`, as the node's runcmd does, with and without the guard.
"""

from __future__ import annotations

import os
import re
import shlex
import struct
import sys
from pathlib import Path

import pytest

from cloudinit.host import SYSCTL_PATH, accept_ra_guard_step

from .artifact_helpers import UNDER_CI, Rendered
from .ra_sender import ND_ROUTER_ADVERT, router_advertisement
from .test_artifacts_host import extract, in_new_netns, netns_tool

RA_SENDER = Path(__file__).with_name("ra_sender.py")
SYSTEMD_SYSCTL = Path("/lib/systemd/systemd-sysctl")  # what boots apply sysctl.d with (udev too)
IPV6_STACK = "ipv6"

# What each check does: scripts/ra-scenario.bash (uplink, a learned default route, optionally the
# guard, then the rendered sysctl file, then an RA of 600 s); it prints KEY=value lines.
SCENARIO = Path(__file__).with_name("scripts") / "ra-scenario.bash"
# How up0 got its default route (the scenario's LEARN argument):
KERNEL_LEARNS = "kernel"  # the kernel, from an RA of router lifetime 1800 s
NETWORKD_INSTALLS = "networkd"  # systemd-networkd, which installs its RA route itself as `proto ra`
STATIC_GATEWAY = "static"  # Hetzner: a static IPv6 from the metadata network-config, gateway fe80::1


def expires(route: str) -> int | None:
    match = re.search(r"expires (\d+)sec", route)
    return int(match.group(1)) if match else None


def run_scenario(
    rendered: Rendered, tmp_path: Path, *, accept_ra: int, learn: str, guard: bool
) -> dict[str, str]:
    sysctl = netns_tool("sysctl")
    netns_tool("ip")
    node = rendered.plan.nodes[0].name
    conf = extract(rendered, node, SYSCTL_PATH, tmp_path)
    assert "net.ipv6.conf.all.forwarding = 1" in conf.read_text()
    persisted = tmp_path / "89-wgmesh-accept-ra.conf"
    step = accept_ra_guard_step(str(persisted))
    assert step[:2] == ("sh", "-c")  # the scenario runs it the same way: sh -c SCRIPT FILE
    args = [str(accept_ra), learn, sysctl, str(conf), sys.executable, str(RA_SENDER)]
    script = shlex.join(["bash", str(SCENARIO), *args, *(step[2:] if guard else [])])
    code, output = in_new_netns(script)
    assert code == 0, output
    values = dict(line.split("=", 1) for line in output.splitlines() if re.match(r"^[A-Z_]+=", line))
    values["PERSISTED"] = persisted.read_text() if persisted.exists() else ""
    return values


@pytest.fixture
def ipv6_stack(rendered_stacks: dict[str, Rendered]) -> Rendered:
    r = rendered_stacks[IPV6_STACK]
    assert r.plan.spec.mesh.cidr6 is not None
    return r


@pytest.mark.netns
def test_forwarding_without_the_guard_drops_a_kernel_ra_route(ipv6_stack: Rendered, tmp_path: Path) -> None:
    """The risk is real: the rendered file alone deletes the route at once, and later RAs are ignored."""
    v = run_scenario(ipv6_stack, tmp_path, accept_ra=1, learn=KERNEL_LEARNS, guard=False)
    assert "proto ra" in v["BEFORE"] and expires(v["BEFORE"]) is not None
    assert v["AFTER"] == ""
    assert v["REFRESHED"] == ""


@pytest.mark.netns
def test_guard_keeps_a_kernel_ra_route_and_later_ras(ipv6_stack: Rendered, tmp_path: Path) -> None:
    v = run_scenario(ipv6_stack, tmp_path, accept_ra=1, learn=KERNEL_LEARNS, guard=True)
    assert "proto ra" in v["AFTER"], v
    assert v["ACCEPT_RA"] == "2"
    refreshed = expires(v["REFRESHED"])
    assert refreshed is not None and refreshed <= 600, v  # the 600 s RA was still honoured
    assert v["PERSISTED"].splitlines()[1:] == ["-net.ipv6.conf.up0.accept_ra = 2"]


@pytest.mark.netns
def test_guard_leaves_networkd_links_alone(ipv6_stack: Rendered, tmp_path: Path) -> None:
    """networkd sets accept_ra=0 and installs RA routes itself: forwarding keeps them, the guard stays out."""
    v = run_scenario(ipv6_stack, tmp_path, accept_ra=0, learn=NETWORKD_INSTALLS, guard=True)
    assert "via fe80::1" in v["AFTER"] and "proto ra" in v["AFTER"], v
    assert v["ACCEPT_RA"] == "0"
    assert v["PERSISTED"] == ""


@pytest.mark.netns
def test_guard_leaves_static_routes_alone(ipv6_stack: Rendered, tmp_path: Path) -> None:
    """A static gateway (Hetzner) survives forwarding as it is; the guard only acts on RA routes."""
    v = run_scenario(ipv6_stack, tmp_path, accept_ra=1, learn=STATIC_GATEWAY, guard=True)
    assert "via fe80::1" in v["AFTER"] and "proto static" in v["AFTER"], v
    assert v["ACCEPT_RA"] == "1"
    assert v["PERSISTED"] == ""


@pytest.mark.netns
def test_persisted_file_applies_at_boot_with_systemd_sysctl(ipv6_stack: Rendered, tmp_path: Path) -> None:
    """Later boots: systemd-sysctl (and its udev hook per new interface) reads the kept key;
    the '-' prefix makes an interface that is gone no error."""
    netns_tool("ip")
    if not os.access(SYSTEMD_SYSCTL, os.X_OK):
        message = f"{SYSTEMD_SYSCTL} is not installed"
        pytest.fail(message) if UNDER_CI else pytest.skip(message)
    persisted = run_scenario(ipv6_stack, tmp_path, accept_ra=1, learn=KERNEL_LEARNS, guard=True)["PERSISTED"]
    kept = tmp_path / "kept.conf"
    kept.write_text(persisted + "-net.ipv6.conf.gone0.accept_ra = 2\n")
    code, output = in_new_netns(
        f"""
        ip link add up0 type veth peer name rt0
        {SYSTEMD_SYSCTL} {shlex.quote(str(kept))}
        cat /proc/sys/net/ipv6/conf/up0/accept_ra /proc/sys/net/ipv6/conf/rt0/accept_ra
        """
    )
    assert code == 0, output
    assert output.split() == ["2", "1"]


def test_router_advertisement_packet() -> None:
    packet = router_advertisement(600)
    kind, code, checksum, hop_limit, flags, lifetime = struct.unpack("!BBHBBH", packet[:8])
    assert (kind, code, checksum, hop_limit, flags, lifetime) == (ND_ROUTER_ADVERT, 0, 0, 64, 0, 600)
    assert len(packet) == 16  # RFC 4861 4.2: no options
