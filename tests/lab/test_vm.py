"""The VM lab: the rendered lab stack boots unchanged in real QEMU VMs and forms the mesh.

The fast tests here (no marker) check the pieces the boot relies on: the guest reporter's
reading of a real rendered wg0.conf, the report parser and checker, the lab network-config.
The `vm` test boots stacks/Pulumi.lab.yaml (lab-a, lab-b, lab-c with 10.0.7.0/24 behind lab-c),
building the image first when the cache has none, and asserts cleanup afterwards. Outside CI it
skips without root or QEMU; with CI=true it fails instead.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lab import image as lab_image
from lab import vm, vm_net
from lab.manifest import LabNode, load_mesh
from lab.vm_guest_report import parse_wg_conf, subnet_probe
from lab.vm_report import NodeReport, check, parse_reports, timings

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI") == "true"
VM_TOOLS = ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "cloud-localds", "mkfs.ext4", "ip", "unshare")
BUILD_TIMEOUT = 360.0  # image download + install; measured 62-116 s
REPORT_TIMEOUT = 360.0  # boot to every VM report; measured 165-225 s for three VMs
GUEST_WAIT = 120  # seconds a guest waits for its peers before reporting a timeout


def render(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "tools.render", "--stack", "lab", "--out", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("render") / "lab")


@pytest.fixture(scope="module")
def nodes(rendered: Path) -> list[LabNode]:
    return list(load_mesh(rendered).nodes)


def wg_conf_of(user_data: Path) -> str:
    doc = yaml.safe_load(user_data.read_text())
    (conf,) = [f["content"] for f in doc["write_files"] if f["path"] == "/etc/wireguard/wg0.conf"]
    return str(conf)


# ---- fast: the pieces ------------------------------------------------------------------------


def test_guest_reads_peers_and_subnets_from_rendered_wg0_conf(rendered: Path, nodes: list[LabNode]) -> None:
    for node in nodes:
        targets = parse_wg_conf(wg_conf_of(rendered / node.name / "user-data"))
        others = [n for n in nodes if n.name != node.name]
        assert sorted(map(str, targets.overlay)) == sorted(str(n.address) for n in others)
        assert sorted(map(str, targets.subnets)) == sorted(str(s) for n in others for s in n.subnets)


def test_vm_lab_refuses_a_render_with_cloud_nodes(tmp_path: Path) -> None:
    """Cloud nodes' endpoints are unreachable here, so guests would wait for them: refuse early."""
    stack = tmp_path / "Pulumi.mixed.yaml"
    stack.write_text(
        "config:\n"
        "  wgmesh:mesh: {cidr: 10.77.0.0/24}\n"
        "  wgmesh:nodes:\n"
        "    - {name: lab-a, cloud: lab, publicIp: 198.51.100.1}\n"
        "    - {name: fra, cloud: aws, region: eu-central-1}\n"
    )
    out = tmp_path / "render"
    subprocess.run(
        [sys.executable, "-m", "tools.render", "--stack", str(stack), "--out", str(out)], check=True
    )
    with pytest.raises(ValueError, match="the VM lab runs lab nodes only; not lab: fra"):
        vm.lab_nodes(out)
    assert [n.name for n in vm.lab_nodes(render(tmp_path / "lab"))] == ["lab-a", "lab-b", "lab-c"]


def test_guest_skips_roaming_peers_without_endpoint() -> None:
    conf = (
        "[Interface]\nPrivateKey = x\n"
        "[Peer]\nPublicKey = a\nAllowedIPs = 10.77.0.2/32, 10.0.4.0/24\nEndpoint = 192.0.2.1:51820\n"
        "[Peer]\nPublicKey = b\nAllowedIPs = 10.77.0.100/32\n"
    )
    targets = parse_wg_conf(conf)
    assert [str(a) for a in targets.overlay] == ["10.77.0.2"]
    assert [str(n) for n in targets.subnets] == ["10.0.4.0/24"]


def good_reports(nodes: list[LabNode], hashes: dict[str, str]) -> list[str]:
    """The lines a healthy mesh reports, derived from the manifest."""
    lines: list[str] = []
    for n in nodes:
        say = lines.append
        say(f"WGLAB {n.name} START uptime=40.0")
        say(f"WGLAB {n.name} CLOUDINIT done uptime=120.5")
        say(f"WGLAB {n.name} USERDATA sha256={hashes[n.name]}")
        say(f"WGLAB {n.name} MESH up uptime=130.2")
        for p in nodes:
            if p.name == n.name:
                continue
            say(f"WGLAB {n.name} PING {p.address} ok")
            for net in p.subnets:
                say(f"WGLAB {n.name} SUBNET {net} {subnet_probe(net)} ok")
            say(f"WGLAB {n.name} HANDSHAKE {p.public_key} 12")
        say(f"WGLAB {n.name} MTU {n.mtu}")
        say(f"WGLAB {n.name} END uptime=135.0")
    return lines


def test_checker_passes_a_healthy_report_and_flags_each_defect(nodes: list[LabNode]) -> None:
    hashes = {n.name: hashlib.sha256(n.name.encode()).hexdigest() for n in nodes}
    lines = good_reports(nodes, hashes)
    # Console noise and CRs around the lines must not matter.
    noisy = [f"\x1b[0m[  12.3] {line}\r" for line in lines] + ["garbage WGLAB"]
    assert check(parse_reports(noisy), nodes, hashes) == []
    assert timings(parse_reports(lines)) == {n.name: 130.2 for n in nodes}

    a, b, c = nodes[0], nodes[1], nodes[2]
    defects = {
        f"WGLAB {a.name} PING {b.address} ok": f"WGLAB {a.name} PING {b.address} fail",
        f"WGLAB {a.name} MTU {a.mtu}": f"WGLAB {a.name} MTU {a.mtu + 80}",
        f"WGLAB {b.name} CLOUDINIT done uptime=120.5": f"WGLAB {b.name} CLOUDINIT error uptime=120.5",
        f"WGLAB {b.name} HANDSHAKE {c.public_key} 12": f"WGLAB {b.name} HANDSHAKE {c.public_key} never",
        f"WGLAB {c.name} USERDATA sha256={hashes[c.name]}": f"WGLAB {c.name} USERDATA sha256={'0' * 64}",
        f"WGLAB {a.name} SUBNET {c.subnets[0]} {subnet_probe(c.subnets[0])} ok": (
            f"WGLAB {a.name} SUBNET {c.subnets[0]} {subnet_probe(c.subnets[0])} fail"
        ),
    }
    for good, bad in defects.items():
        assert good in lines
        problems = check(parse_reports([bad if line == good else line for line in lines]), nodes, hashes)
        assert len(problems) == 1, (bad, problems)
    missing_end = [line for line in lines if line != f"WGLAB {c.name} END uptime=135.0"]
    assert any("incomplete" in p for p in check(parse_reports(missing_end), nodes, hashes))
    assert check({}, nodes, hashes) == [f"{n.name}: no report (reporter did not start)" for n in nodes]


def test_lab_network_config_gives_underlay_and_subnet_addresses(nodes: list[LabNode]) -> None:
    prefix = vm.underlay_prefix(nodes)
    for node in nodes:
        doc = yaml.safe_load(vm.network_config(node, prefix))
        eth0 = doc["ethernets"]["eth0"]
        assert eth0["match"]["macaddress"] == vm.mac(0, node.index)
        addr = ipaddress.ip_interface(eth0["addresses"][0])
        assert addr.ip == node.public_ip
        assert all(n.public_ip in addr.network for n in nodes)  # one L2 segment for every node
        if node.subnets:
            eth1 = doc["ethernets"]["eth1"]
            assert [ipaddress.ip_interface(a).network for a in eth1["addresses"]] == list(node.subnets)
        else:
            assert "eth1" not in doc["ethernets"]


def test_image_cache_key_follows_the_recipe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(lab_image.CACHE_ENV, str(tmp_path))
    before = lab_image.cached_image().directory
    assert before.parent == tmp_path
    monkeypatch.setattr(lab_image, "PACKAGES", (*lab_image.PACKAGES, "tcpdump"))
    assert lab_image.cached_image().directory != before
    assert "wglab-report" in " ".join(f.path for f in lab_image.guest_files())


# ---- slow: real VMs --------------------------------------------------------------------------


def vm_host_problem() -> str | None:
    if os.geteuid() != 0:
        return "VM lab needs root (network namespaces, taps)"
    missing = [t for t in VM_TOOLS if shutil.which(t) is None]
    if missing:
        return f"VM lab needs {', '.join(missing)} (scripts/install-debs)"
    return None


def require_vm_host() -> None:
    problem = vm_host_problem()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true: {problem}")
    pytest.skip(problem)


def test_missing_vm_host_skips_outside_ci_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(sys.modules[__name__], "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        require_vm_host()
    monkeypatch.setattr(sys.modules[__name__], "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true: VM lab needs root"):
        require_vm_host()


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
        if proc.name.isdigit() and vm.qemu_alive(int(proc.name), state_dir):
            pids.append(int(proc.name))
    return pids


@pytest.fixture(scope="module")
def booted(
    vm_image: lab_image.Image, rendered: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Booted]:
    state_dir = tmp_path_factory.mktemp("vmlab") / "state"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(vm.STATE_ENV, str(state_dir))
        mp.setenv(vm_net.NS_PREFIX_ENV, f"wgtestvm{os.getpid()}")
        lab = vm.start(rendered, guest_wait=GUEST_WAIT, image=vm_image)
        try:
            reports, mesh_seen = vm.wait_for_reports(lab, REPORT_TIMEOUT)
            result = vm.run_checks(lab, reports, mesh_seen)
            print(f"\nVM lab first boot to mesh (guest uptime, s): {timings(result.reports)}")
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


@pytest.mark.vm
def test_vms_boot_the_rendered_user_data_unchanged(booted: Booted, rendered: Path) -> None:
    assert len(booted.lab.nodes) >= 3
    for node in booted.lab.nodes:
        r = report(booted, node.name)
        assert r.cloudinit == "done", node.name
        rendered_hash = hashlib.sha256((rendered / node.name / "user-data").read_bytes()).hexdigest()
        assert r.user_data_sha256 == rendered_hash, node.name


@pytest.mark.vm
def test_full_mesh_pings_and_handshakes(booted: Booted) -> None:
    for node in booted.lab.nodes:
        r = report(booted, node.name)
        peers = [p for p in booted.lab.nodes if p.name != node.name]
        assert r.mesh == "up", node.name
        assert {str(p.address): True for p in peers} == r.pings, node.name
        for p in peers:
            age = r.handshakes.get(p.public_key)
            assert age is not None and age < 180, (node.name, p.name, age)


@pytest.mark.vm
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


@pytest.mark.vm
def test_wg0_mtu_is_the_planned_mtu(booted: Booted) -> None:
    for node in booted.lab.nodes:
        assert report(booted, node.name).mtu == node.mtu, node.name


@pytest.mark.vm
def test_no_problem_left(booted: Booted) -> None:
    assert booted.result.problems == []
