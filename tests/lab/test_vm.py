"""The VM lab: the rendered lab stack boots unchanged in real QEMU VMs and forms the mesh.

The fast tests here (no marker) check the pieces the boot relies on: the guest reporter's
reading of a real rendered wg0.conf, the report parser and checker, the lab network-config.
The `vm` test boots stacks/Pulumi.lab.yaml (lab-a, lab-b, lab-c with 10.0.7.0/24 behind lab-c),
building the image first when the cache has none, and asserts cleanup afterwards. Then the
faults: lab-a reboots itself (Ctrl-Alt-Del) and must rejoin within 60 s of its boot completing,
with the metadata guard back in place; lab-b's QEMU is killed and lab-a and lab-c must keep
pinging each other with 0 loss. Outside CI it skips without root or QEMU; with CI=true it fails.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import Figure

from lab import image as lab_image
from lab import vm, vm_faults, vm_net
from lab.manifest import LabNode, load_mesh
from lab.vm_guest_report import files_holding, key_file_facts, parse_wg_conf, private_key, subnet_probe
from lab.vm_report import GUARD_OK, NodeReport, check, guard_loaded_before_network, parse_reports, timings

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI") == "true"
VM_TOOLS = ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "cloud-localds", "mkfs.ext4", "ip", "unshare")
BUILD_TIMEOUT = 360.0  # image download + install; measured 62-116 s
REPORT_TIMEOUT = 360.0  # boot to every VM report; measured 165-225 s for three VMs
GUEST_WAIT = 120  # seconds a guest waits for its peers before reporting a timeout
REJOIN_LIMIT = 60.0  # issue 6: a rebooted VM rejoins within 60 s of its boot completing


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
        say(f"WGLAB {n.name} GUARD table=yes root=ok nobody=ConnectionRefusedError")
        say(f"WGLAB {n.name} KEYFILES 2")
        say(f"WGLAB {n.name} KEYFILE 0600 0:0 /etc/wireguard/wg0.conf")
        say(f"WGLAB {n.name} KEYFILE 0600 0:0 /var/lib/cloud/instances/wglab-{n.name}/user-data.txt")
        say(f"WGLAB {n.name} END uptime=135.0")
        say(f"WGLAB {n.name} TICK 0 " + " ".join(f"{p.address}=ok" for p in nodes if p is not n))
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
        f"WGLAB {b.name} GUARD table=yes root=ok nobody=ConnectionRefusedError": (
            f"WGLAB {b.name} GUARD table=no root=ok nobody=ok"
        ),
        f"WGLAB {c.name} KEYFILE 0600 0:0 /etc/wireguard/wg0.conf": (
            f"WGLAB {c.name} KEYFILE 0644 0:0 /etc/wireguard/wg0.conf"
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
    gateway = vm.lab_gateway(nodes, prefix)
    assert gateway not in {n.public_ip for n in nodes}
    for node in nodes:
        doc = yaml.safe_load(vm.network_config(node, prefix, gateway))
        eth0 = doc["ethernets"]["eth0"]
        assert eth0["routes"] == [{"to": "169.254.169.254/32", "via": str(gateway)}]
        assert ipaddress.ip_address(gateway) in ipaddress.ip_interface(eth0["addresses"][0]).network
        assert eth0["match"]["macaddress"] == vm.mac(0, node.index)
        addr = ipaddress.ip_interface(eth0["addresses"][0])
        assert addr.ip == node.public_ip
        assert all(n.public_ip in addr.network for n in nodes)  # one L2 segment for every node
        if node.subnets:
            eth1 = doc["ethernets"]["eth1"]
            assert [ipaddress.ip_interface(a).network for a in eth1["addresses"]] == list(node.subnets)
        else:
            assert "eth1" not in doc["ethernets"]


def test_guest_lists_files_holding_the_key_by_path_and_mode_only(tmp_path: Path) -> None:
    key = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
    conf = f"[Interface]\nPrivateKey = {key}\nAddress = 10.77.0.1/24\n"
    assert private_key(conf) == key
    (tmp_path / "wg0.conf").write_text(conf)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "copy.txt").write_text(f"noise {key} noise")
    (tmp_path / "other.txt").write_text("no key here")
    (tmp_path / "link").symlink_to(tmp_path / "wg0.conf")  # not followed: counted once
    assert files_holding(key.encode(), [str(tmp_path)]) == [
        tmp_path / "sub" / "copy.txt",
        tmp_path / "wg0.conf",
    ]
    (tmp_path / "wg0.conf").chmod(0o600)
    (tmp_path / "sub" / "copy.txt").chmod(0o644)
    owner = f"{os.getuid()}:{os.getgid()}"
    facts = key_file_facts(conf, [str(tmp_path)])
    assert facts == [
        "KEYFILES 2",
        f"KEYFILE 0644 {owner} {tmp_path / 'sub' / 'copy.txt'}",
        f"KEYFILE 0600 {owner} {tmp_path / 'wg0.conf'}",
    ]
    assert key not in " ".join(facts)
    assert key_file_facts("[Interface]\n", [str(tmp_path)]) == ["KEYFILES none"]


def test_guard_unit_must_be_active_and_loaded_before_networkd() -> None:
    def unit(rest: str) -> NodeReport:
        return parse_reports([f"WGLAB lab-a GUARDUNIT {rest}"])["lab-a"]

    assert guard_loaded_before_network(unit("state=active loaded_us=4100000 network_us=4300000"))
    assert not guard_loaded_before_network(unit("state=active loaded_us=4400000 network_us=4300000"))
    assert not guard_loaded_before_network(unit("state=inactive loaded_us=0 network_us=4300000"))
    assert not guard_loaded_before_network(unit("state=active"))


def test_fault_tail_reads_only_new_complete_lines(tmp_path: Path) -> None:
    report = tmp_path / "lab-a.report.log"
    report.write_text("WGLAB lab-a START uptime=1.0\n")
    tail = vm_faults.ReportTail(report)
    assert tail.poll() == []  # what was there before the tail started is the old boot
    with report.open("a") as f:
        f.write("\x1b[0mWGLAB lab-a TICK 7 10.77.0.2=ok 10.77.0.3=lost\r\nWGLAB lab-a MES")
    (line,) = tail.poll()
    assert (line.node, line.fact) == ("lab-a", "TICK")
    assert vm_faults.tick_states(line) == {"10.77.0.2": True, "10.77.0.3": False}
    with report.open("a") as f:
        f.write("H up uptime=9.0\n")
    (line,) = tail.poll()
    assert (line.fact, line.rest) == ("MESH", "up uptime=9.0")


def test_qmp_client_waits_for_an_event_across_quiet_timeouts(tmp_path: Path) -> None:
    """QEMU's side faked on a unix socket: a wait that times out must not break the next one."""
    path = tmp_path / "q.qmp"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    received: list[dict[str, object]] = []

    def qemu() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as f:
            conn.sendall(b'{"QMP": {"version": {}}}\n')
            for _ in range(2):
                received.append(json.loads(f.readline()))
                conn.sendall(b'{"return": {}}\n')
            time.sleep(1.5)
            conn.sendall(b'{"event": "RES')  # split across two writes
            time.sleep(0.2)
            conn.sendall(b'ET", "data": {"guest": true}}\n')
            f.readline()

    thread = threading.Thread(target=qemu)
    thread.start()
    qmp = vm_faults.Qmp(path)
    try:
        assert qmp.execute("send-key", keys=vm_faults.CTRL_ALT_DELETE) == {}
        assert qmp.wait_event("RESET", 0.5) is None
        event = qmp.wait_event("RESET", 10)
        assert event is not None and event["data"] == {"guest": True}
    finally:
        qmp.close()
        thread.join(10)
        server.close()
    assert [m["execute"] for m in received] == ["qmp_capabilities", "send-key"]


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
    vm_image: lab_image.Image, rendered: Path, tmp_path_factory: pytest.TempPathFactory, figure: Figure
) -> Iterator[Booted]:
    state_dir = tmp_path_factory.mktemp("vmlab") / "state"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(vm.STATE_ENV, str(state_dir))
        mp.setenv(vm_net.NS_PREFIX_ENV, f"wgtestvm{os.getpid()}")
        lab = vm.start(rendered, guest_wait=GUEST_WAIT, image=vm_image)
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
def test_metadata_guard_and_key_files_on_first_boot(booted: Booted) -> None:
    for node in booted.lab.nodes:
        r = report(booted, node.name)
        assert r.guard == GUARD_OK, node.name  # root reaches the lab's metadata host, nobody is refused
        paths = {f.path for f in r.key_files}
        assert "/etc/wireguard/wg0.conf" in paths, node.name
        assert all(f.root_only for f in r.key_files), r.key_files
        print(f"{node.name}: files holding the private key: {sorted(paths)}")


@pytest.mark.vm
def test_no_problem_left(booted: Booted) -> None:
    assert booted.result.problems == []


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


@pytest.mark.vm
def test_rebooted_vm_rejoins_within_60_s_of_boot_completing(faults: Faults) -> None:
    r = faults.reboot
    assert r.problems == []
    assert r.clean, "the guest did not reboot itself on Ctrl-Alt-Del (hard reset used)"
    assert r.rejoin is not None and r.rejoin < REJOIN_LIMIT, r.summary()
    assert set(r.peer_pings) == {"lab-b", "lab-c"}  # both peers' pings reach it again
    assert r.report is not None and r.report.cloudinit == "done"


@pytest.mark.vm
def test_metadata_guard_survives_the_reboot(faults: Faults) -> None:
    second = faults.reboot.report
    assert second is not None and second.ended
    assert second.guard == GUARD_OK  # loaded by the enabled unit this time, not by runcmd
    assert guard_loaded_before_network(second), second.guard_unit
    print(f"guard unit after the reboot: {second.guard_unit}")
    assert second.key_files and all(f.root_only for f in second.key_files), second.key_files


@pytest.mark.vm
def test_killing_a_vm_leaves_the_others_pinging_with_no_loss(faults: Faults) -> None:
    k = faults.kill
    assert k.gone
    assert set(k.sent) == {"lab-a -> lab-c", "lab-c -> lab-a"}
    for pair, sent in k.sent.items():
        assert sent >= 10, (pair, sent)  # ~1 a second over the 25 s window
        assert k.lost[pair] == 0, k.summary()
