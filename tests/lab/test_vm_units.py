"""The VM lab's pieces, checked without booting a VM (no root, no QEMU: `make test-fast` runs them).

The guest reporter's reading of a real rendered wg0.conf and of the files holding the key, the
report parser and checker, the lab network-config, the fault tails and the QMP client, the image
cache key, the live-update SSH command line and the guests' ping counts, and the gate that skips
(or, under CI, fails) the VM-booting tests in tests/lab/test_vm.py on a host that cannot run them.
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
from pathlib import Path

import pytest
import vmtest
import yaml
from vmtest import REPO, require_vm_host

from cloudinit.remote_apply import WAIT_FOR_FIRST_BOOT
from cloudinit.sync import apply_command
from lab.core.errors import LabError
from lab.core.manifest import LabNode, load_mesh
from lab.core.wgconf import rendered_wg_conf
from lab.vm import driver as vm
from lab.vm import faults as vm_faults
from lab.vm import image as lab_image
from lab.vm import live as vm_live
from lab.vm.guest_report import files_holding, key_file_facts, parse_wg_conf, private_key, subnet_probe
from lab.vm.report import NodeReport, check, guard_loaded_before_network, parse_reports, timings


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


# ---- fast: the pieces ------------------------------------------------------------------------


def test_guest_reads_peers_and_subnets_from_rendered_wg0_conf(rendered: Path, nodes: list[LabNode]) -> None:
    for node in nodes:
        targets = parse_wg_conf(rendered_wg_conf(rendered, node.name))
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
    with pytest.raises(LabError, match="the VM lab runs lab nodes only; not lab: fra"):
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


def test_live_update_ssh_stays_in_the_lab_namespace_in_batch_mode(tmp_path: Path) -> None:
    ssh = vm_live.Ssh("wgtestvm1", "debian", tmp_path / "id_ed25519", tmp_path / "known_hosts")
    argv = ssh.argv("198.51.100.1", "true")
    assert argv[:5] == ["ip", "netns", "exec", "wgtestvm1", "ssh"]
    assert argv[5:9] == ["-F", "/dev/null", "-i", str(tmp_path / "id_ed25519")]
    for option in ("BatchMode=yes", "IdentitiesOnly=yes", "StrictHostKeyChecking=accept-new"):
        assert option in argv
    assert f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in argv
    assert argv[-5:] == ["-l", "debian", "--", "198.51.100.1", "true"]


def test_live_update_command_is_components_sync_s_with_sudo_for_a_non_root_login() -> None:
    assert vm_live.uses_sudo("debian") and vm_live.uses_sudo("admin") and not vm_live.uses_sudo("root")
    command = vm_live.sync_command(True)
    assert command == f"{WAIT_FOR_FIRST_BOOT}; {apply_command(sudo=True)}"
    peers = vm_live.sync_command(True, peers_only=True)
    assert peers == f"{WAIT_FOR_FIRST_BOOT}; {apply_command(sudo=True, peers_only=True)}" != command
    assert "; sudo -n -- bash -c " in command
    assert vm_live.sync_command(False).startswith(f"{WAIT_FOR_FIRST_BOOT}; bash -c ")  # root: no sudo


def test_tick_counts_per_pair_and_first_answer_after_a_moment(nodes: list[LabNode]) -> None:
    a, b, c = nodes[:3]

    def tick(at: float, node: LabNode, states: dict[LabNode, str]) -> vm_faults.Line:
        rest = "7 " + " ".join(f"{p.address}={s}" for p, s in states.items())
        return vm_faults.Line(at, node.name, "TICK", rest)

    lines = [
        tick(1.0, a, {b: "ok", c: "ok"}),
        tick(2.0, a, {b: "lost", c: "ok"}),
        tick(3.0, b, {a: "lost", c: "ok"}),
        tick(4.0, b, {a: "ok", c: "ok"}),
        vm_faults.Line(5.0, a.name, "MESH", "up uptime=9.0"),
    ]
    counts = vm_live.tick_counts(lines, [a, b, c], since=1.5)
    assert counts[f"{a.name} -> {b.name}"] == vm_live.TickCount(1, 1)
    assert counts[f"{a.name} -> {c.name}"] == vm_live.TickCount(1, 0)
    assert counts[f"{b.name} -> {a.name}"] == vm_live.TickCount(2, 1)
    assert counts[f"{c.name} -> {a.name}"] == vm_live.TickCount(0, 0)
    assert vm_live.first_tick(lines, b.name, a, since=0.0) == 4.0
    assert vm_live.first_tick(lines, b.name, a, since=0.0, ok=False) == 3.0
    assert vm_live.first_tick(lines, a.name, b, since=1.5) is None


def test_test_ssh_key_is_private(tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen (openssh-client)")
    key = vm_live.make_ssh_key(tmp_path / "k")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o700
    assert key.private.stat().st_mode & 0o777 == 0o600
    assert key.public.startswith("ssh-ed25519 ")
    assert "PRIVATE" not in key.public


def test_missing_vm_host_skips_outside_ci_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(vmtest, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        require_vm_host()
    monkeypatch.setattr(vmtest, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true: VM lab needs root"):
        require_vm_host()
