"""The netns lab's pure parts: no root, no namespaces (user-data reading, the node stand-ins,
underlay classification, ownership rules, state file, report)."""

from __future__ import annotations

import ast
import dataclasses
import ipaddress
import json
import os
import sys
import types
from pathlib import Path

import pytest
from labtest import render_stack, require_netns_lab

from lab import __main__ as lab_main
from lab.checks import patterns
from lab.checks.health import classify_underlay
from lab.checks.report import format_report
from lab.core import mounts
from lab.core.capture import mss_values
from lab.core.errors import LabError
from lab.core.manifest import load_mesh
from lab.core.probes import Ping, parse_latest_handshakes
from lab.core.proc import tail
from lab.core.processes import alive, process_record, process_start
from lab.core.results import CheckResult, HealthReport, PairResult
from lab.core.state import (
    LabState,
    LinkRecord,
    NamespaceRecord,
    ProcessRecord,
    foreign_namespaces,
    load_state,
)
from lab.core.wgconf import conf_peers, rendered_wg_conf
from lab.netns import driver, nodeshim
from lab.netns.day2 import booted_mesh
from lab.netns.layout import Layout
from lab.netns.topology import subnet_hosts, wanted_namespaces
from lab.netns.userdata import parse_user_data, shellify


@pytest.fixture(scope="module")
def lab_render(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_stack("lab", tmp_path_factory.mktemp("render") / "lab")


# ----------------------------------------------------------------------------- rendered input


def test_reads_the_rendered_mesh_and_user_data(lab_render: Path) -> None:
    mesh = load_mesh(lab_render)
    assert [n.name for n in mesh.nodes] == ["lab-a", "lab-b", "lab-c"]
    assert [str(n.public_ip) for n in mesh.nodes] == ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
    assert mesh.node("lab-c").subnets == (ipaddress.ip_network("10.0.7.0/24"),)
    ud = parse_user_data(mesh.node("lab-c").user_data.read_text(), "lab-c")
    assert [f.path for f in ud.write_files] == [
        "/etc/wireguard/wg0.conf",
        "/etc/wireguard/wgmesh.nft",
        "/etc/sysctl.d/90-wgmesh.conf",
        "/etc/wgmesh/metadata-guard.nft",
        "/etc/systemd/system/wgmesh-metadata-guard.service",
        "/etc/ssh/sshd_config.d/10-wgmesh.conf",
        "/etc/sudoers.d/90-wgmesh",
        "/etc/wgmesh/ssh/root",  # a lab node's login user
    ]
    assert ud.runcmd[-1] == "systemctl enable --now wg-quick@wg0"
    assert ud.runcmd[-2] == "sysctl -p /etc/sysctl.d/90-wgmesh.conf"
    assert ud.not_applied == ("hostname",)


def test_namespace_names_follow_the_layout_prefix(lab_render: Path) -> None:
    names = wanted_namespaces(Layout(prefix="wgm-t-"), load_mesh(lab_render))
    assert names == [
        "wgm-t-inet",
        "wgm-t-node-lab-a",
        "wgm-t-node-lab-b",
        "wgm-t-node-lab-c",
        "wgm-t-lan-lab-c",
    ]


def test_a_stack_without_lab_nodes_is_refused(tmp_path: Path) -> None:
    out = render_stack("dev", tmp_path / "dev")
    with pytest.raises(LabError, match="no `cloud: lab` nodes"):
        load_mesh(out)


def test_user_data_errors_name_the_key_and_never_quote_the_document() -> None:
    secret = "PrivateKey = c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI="
    with pytest.raises(LabError, match=r"write_files\[0\]\.path") as e:
        parse_user_data(f"#cloud-config\nwrite_files:\n- path: relative\n  content: '{secret}'\n", "n1")
    assert "c2VjcmV0" not in str(e.value)
    with pytest.raises(LabError, match="not a #cloud-config"):
        parse_user_data("#!/bin/sh\n", "n1")


def test_runcmd_items_become_the_lines_cloud_init_writes() -> None:
    assert shellify(["sh", "-c", "a && b"], "x") == "sh -c 'a && b'"
    assert shellify("echo hi", "x") == "echo hi"
    with pytest.raises(LabError):
        shellify([], "x")


# ----------------------------------------------------------------------------- node stand-ins


def test_sysctl_only_touches_per_network_namespace_keys() -> None:
    assert nodeshim.sysctl_path("net.ipv4.ip_forward") == Path("/proc/sys/net/ipv4/ip_forward")
    assert nodeshim.sysctl_path("net/ipv6/conf/all/forwarding") == Path(
        "/proc/sys/net/ipv6/conf/all/forwarding"
    )
    for key in ("kernel.hostname", "vm.swappiness", "net..x", "net", "fs.file-max"):
        with pytest.raises(LabError):
            nodeshim.sysctl_path(key)


def test_sysctl_files_are_read_like_sysctl_d() -> None:
    lines = ["# c", "; c", "", "net.ipv4.ip_forward = 1", "-net.ipv6.conf.all.forwarding=1", "junk"]
    assert nodeshim.parse_sysctl_lines(lines) == [
        ("net.ipv4.ip_forward", "1", False),
        ("net.ipv6.conf.all.forwarding", "1", True),
    ]


def test_the_shims_refuse_to_run_in_the_host_network_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(nodeshim.HOST_NETNS_ENV, raising=False)
    assert nodeshim.in_host_netns()
    monkeypatch.setenv(nodeshim.HOST_NETNS_ENV, str(os.stat("/proc/self/ns/net").st_ino))
    assert nodeshim.in_host_netns()
    assert nodeshim.main(["sysctl", "-w", "net.ipv4.ip_forward=1"]) == 1
    assert nodeshim.main(["systemctl", "enable", "--now", "wg-quick@wg0"]) == 1


def test_systemctl_maps_the_wg_quick_unit_to_wg_quick(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    links: set[str] = set()

    def fake_wg_quick(action: str, iface: str) -> int:
        calls.append((action, iface))
        (links.add if action == "up" else links.discard)(iface)
        return 0

    monkeypatch.setattr(nodeshim, "_wg_quick", fake_wg_quick)
    monkeypatch.setattr(nodeshim, "_link_exists", lambda name: name in links)
    assert nodeshim.systemctl(["enable", "--now", "wg-quick@wg0"]) == 0
    assert nodeshim.systemctl(["start", "wg-quick@wg0.service"]) == 0  # already up: nothing to do
    assert nodeshim.systemctl(["enable", "wg-quick@wg1"]) == 0  # no --now: only at next boot
    assert nodeshim.systemctl(["restart", "wg-quick@wg0"]) == 0
    assert calls == [("up", "wg0"), ("down", "wg0"), ("up", "wg0")]
    with pytest.raises(LabError, match="not emulated"):
        nodeshim.systemctl(["start", "ssh"])
    with pytest.raises(LabError, match="not emulated"):
        nodeshim.systemctl(["status", "wg-quick@wg0"])


def test_package_steps_pass_only_when_the_packages_are_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodeshim, "_installed", lambda p: p in {"wireguard-tools", "nftables"})
    assert nodeshim.packages("apt-get", ["update", "-q"]) == 0
    assert nodeshim.packages("apt-get", ["install", "-y", "-q", "wireguard-tools", "nftables"]) == 0
    with pytest.raises(LabError, match="frobnicate not installed"):
        nodeshim.packages("apt-get", ["install", "-y", "frobnicate"])
    with pytest.raises(LabError):
        nodeshim.packages("apt", ["remove", "nftables"])


# ----------------------------------------------------------------------------- checks as data


def test_underlay_lines_are_wireguard_only_between_node_ports() -> None:
    endpoints = {"198.51.100.1": 51820, "198.51.100.2": 51820}
    lines = [
        "IP 198.51.100.1.51820 > 198.51.100.2.51820: UDP, length 148",
        "IP 198.51.100.2.51820 > 198.51.100.1.51820: UDP, length 92",
        "IP 198.51.100.1.40000 > 198.51.100.2.51820: UDP, length 92",  # wrong source port
        "IP 10.77.0.1 > 10.77.0.2: ICMP echo request, id 1, seq 1, length 64",  # cleartext overlay
        "IP 198.51.100.1 > 198.51.100.2: ip-proto-17",  # a fragment
    ]
    wireguard, other = classify_underlay(lines, endpoints)
    assert wireguard == 2
    assert other == lines[2:]


def test_mss_is_read_from_syn_ack_lines() -> None:
    line = (
        "IP 10.0.7.2.5201 > 10.77.0.1.40000: Flags [S.], seq 1, ack 2, win 64240, "
        "options [mss 1380,sackOK], length 0"
    )
    assert mss_values([line, "IP x > y: Flags [.], length 0"]) == [1380]


def test_subnet_hosts_are_the_router_then_the_host() -> None:
    assert subnet_hosts(ipaddress.ip_network("10.0.7.0/24")) == (
        ipaddress.ip_address("10.0.7.1"),
        ipaddress.ip_address("10.0.7.2"),
    )
    with pytest.raises(LabError):
        subnet_hosts(ipaddress.ip_network("10.0.7.0/32"))


def test_format_report_lists_every_pair_and_check() -> None:
    ok = Ping(3, 3, 0.5)
    lost = Ping(3, 0, None)
    report = HealthReport(
        pairs=(
            PairResult("a", "b", "10.77.0.2", 1.2, ok, 1420, Ping(2, 2, 0.6)),
            PairResult("b", "a", "10.77.0.1", None, lost, 1420, Ping(2, 0, None)),
        ),
        checks=(CheckResult("underlay carries only WireGuard UDP", True, "9 packets"),),
    )
    text = format_report(report)
    assert "a -> b" in text and "1.2 s ago" in text and "1420 DF ok" in text
    assert "never" in text and "LOST 0/3" in text and "1420 DF LOST" in text
    assert "PASS  underlay carries only WireGuard UDP" in text
    assert text.endswith("NOT healthy: see FAIL lines above")
    assert not report.ok


# ----------------------------------------------------------------------------- ownership


def test_only_unrecorded_existing_namespaces_are_foreign() -> None:
    state = LabState(Path("/nonexistent/state.json"), namespaces=[NamespaceRecord("wgm-inet", 7)])
    wanted = ["wgm-inet", "wgm-node-a"]
    assert foreign_namespaces(wanted, {"wgm-inet", "wgm-node-a", "other"}, state) == ["wgm-node-a"]
    assert foreign_namespaces(wanted, {"wgm-inet"}, None) == ["wgm-inet"]
    assert foreign_namespaces(wanted, set(), None) == []


def test_state_round_trips_and_is_private(tmp_path: Path) -> None:
    layout = Layout(root=tmp_path / "lab")
    state = LabState(
        layout.state_file,
        stack="lab",
        render_dir="/r",
        namespaces=[NamespaceRecord("wgm-inet", None)],
        links=[LinkRecord("wgm-inet", "br0")],
        mounts=["/m"],
        processes=[ProcessRecord(10, 20, "wireguard-go")],
        files=["/f"],
        timings={"mesh": 1.5},
    )
    state.save()
    assert (layout.state_file.stat().st_mode & 0o777) == 0o600
    assert (layout.root.stat().st_mode & 0o777) == 0o700
    assert "state.json" not in layout.state_file.read_text()  # the path is where, not what
    assert load_state(layout.state_file) == state
    assert load_state(layout.root / "missing.json") is None


def test_state_is_never_written_through_a_symlink(tmp_path: Path) -> None:
    """A symlink planted at the temporary file's name is refused, its target untouched."""
    target = tmp_path / "target"
    target.write_text("unchanged")
    (tmp_path / "state.tmp").symlink_to(target)
    with pytest.raises(OSError):
        LabState(tmp_path / "state.json").save()
    assert target.read_text() == "unchanged"


def test_tool_output_quoted_in_errors_has_keys_redacted() -> None:
    key = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI="
    out = f"Key is not the correct length or format: `{key}'\nConfiguration parsing error"
    text = tail(out)
    assert key not in text and "<key>" in text and "Configuration parsing error" in text


def test_vm_driver_gets_a_fresh_render_that_is_removed_afterwards(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, Path, bool]] = []
    fake = types.ModuleType("lab.vm.driver")

    def up(stack: str, render_dir: Path) -> int:
        seen.append((stack, render_dir, (render_dir / "mesh.json").is_file()))
        return 0

    fake.up = up  # type: ignore[attr-defined]
    fake.down = lambda: 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lab.vm.driver", fake)
    assert lab_main.main(["up", "--driver", "vm", "--stack", "lab"]) == 0
    assert lab_main.main(["down", "--driver", "vm"]) == 3
    [(stack, render_dir, had_manifest)] = seen
    assert stack == "lab" and had_manifest
    assert not render_dir.exists()  # the user-data with private keys does not linger


def test_wg_show_per_peer_fields_parse_from_a_namespace_or_ssh() -> None:
    text = "AAA=\t1796130794\nBBB=\t0\nCCC=\t(none)\n\nDDD=\n"
    assert parse_latest_handshakes(text) == {"AAA=": 1796130794, "BBB=": 0}
    assert parse_latest_handshakes(text.replace("\n", "\r\n")) == {"AAA=": 1796130794, "BBB=": 0}


# ----------------------------------------------------------------------------- lab.core and day-2 views


def test_booted_mesh_keeps_every_rendered_field_but_the_nodes(lab_render: Path) -> None:
    """A day-2 change must not drop `endpoints` (the IPv6-endpoint check reads it) or anything else."""
    mesh = load_mesh(lab_render)
    assert len(mesh.nodes) == 3
    ipv6 = dataclasses.replace(mesh, endpoints="ipv6", topology="hub")
    booted = booted_mesh(ipv6, ["lab-a", "lab-c"])
    assert [n.name for n in booted.nodes] == ["lab-a", "lab-c"]
    assert booted == dataclasses.replace(ipv6, nodes=(mesh.nodes[0], mesh.nodes[2]))
    assert booted.endpoints == "ipv6"


def test_conf_peers_reads_each_peer_and_its_allowed_ips() -> None:
    conf = (
        "[Interface]\nAddress = 10.77.0.1/24\nPrivateKey = notakey\n\n"
        "[Peer]  # lab-b\nPublicKey = b=\nAllowedIPs = 10.77.0.2/32, 10.0.4.0/24\n"
        "Endpoint = 192.0.2.2:51820\n"
        "[Peer]\nPublicKey = c=\nAllowedIPs = 10.77.0.3/32\nAllowedIPs = fd00::3/128\n"
    )
    assert conf_peers(conf) == {"b=": {"10.77.0.2/32", "10.0.4.0/24"}, "c=": {"10.77.0.3/32", "fd00::3/128"}}


def test_rendered_wg_conf_lists_the_other_nodes(lab_render: Path) -> None:
    peers = conf_peers(rendered_wg_conf(lab_render, "lab-a"))
    mesh = load_mesh(lab_render)
    others = {f"{n.address}/32" for n in mesh.nodes if n.name != "lab-a"}
    assert len(peers) >= 2
    assert others <= set().union(*peers.values())


def test_mount_reader_unescapes_and_orders_deepest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:21 / /tmp/lab rw - tmpfs t rw\n"
        "23 22 0:22 / /tmp/lab/my\\040dir rw - tmpfs t rw\n"
        "24 1 0:23 / /tmp/labx rw - tmpfs t rw\n"
    )
    monkeypatch.setattr(mounts, "MOUNTINFO", info)
    assert mounts.mounts_under(Path("/tmp/lab")) == ["/tmp/lab/my dir", "/tmp/lab"]


def test_a_process_is_ours_only_while_pid_and_start_time_match() -> None:
    me = process_record(os.getpid(), "pytest")
    assert me.start == process_start(os.getpid())
    assert alive(me)
    assert not alive(ProcessRecord(me.pid, me.start + 1, "reused PID"))


# ----------------------------------------------------------------------------- deployment patterns


def test_the_manifest_says_who_peers_with_whom_and_through_which_hub(tmp_path: Path) -> None:
    mesh = load_mesh(render_stack("lab-hub", tmp_path / "render"))
    assert mesh.route_via("lab-s1", "lab-s2") == "lab-hub"
    assert mesh.route_via("lab-s1", "lab-hub") is None
    doc = json.loads((tmp_path / "render" / "mesh.json").read_text())
    for node in doc["nodes"]:
        del node["peers"]  # no guess for a render without peers: make render rewrites mesh.json
    (tmp_path / "render" / "mesh.json").write_text(json.dumps(doc))
    with pytest.raises(LabError, match=r"mesh\.json: nodes\[0\]\.peers: missing"):
        load_mesh(tmp_path / "render")


def test_underlay_udp_is_sorted_into_spoke_to_spoke_and_spoke_to_hub() -> None:
    lines = [
        "IP 198.51.100.2.51820 > 198.51.100.1.51820: UDP, length 128",
        "IP 198.51.100.1.51820 > 198.51.100.3.51820: UDP, length 128",
        "IP 198.51.100.3.51820 > 198.51.100.2.51820: UDP, length 32",
        "IP 198.51.100.1.51820 > 198.51.100.4.51820: UDP, length 32",
        "ARP, Request who-has 198.51.100.1",
    ]
    spokes = {"198.51.100.2", "198.51.100.3"}
    assert patterns.count_underlay_udp(lines, spokes) == (1, 2)


def test_echo_request_sources_are_read_for_both_families() -> None:
    lines = [
        "IP 10.0.9.1 > 10.0.9.2: ICMP echo request, id 7, seq 1, length 64",
        "IP 10.0.9.2 > 10.0.9.1: ICMP echo reply, id 7, seq 1, length 64",
        "IP6 fd77:77::1 > fd00:7::2: ICMP6, echo request, id 9, seq 1, length 64",
    ]
    assert patterns.echo_sources(lines) == {"10.0.9.1", "fd77:77::1"}


def test_ipv6_underlay_lines_are_wireguard_or_link_control_and_nothing_else_passes() -> None:
    endpoints = {"198.51.100.1": 51820, "2001:db8:51::1": 51820, "2001:db8:51::2": 51820}
    lines = [
        "IP6 2001:db8:51::1.51820 > 2001:db8:51::2.51820: UDP, length 148",
        "IP6 2001:db8:51::2.51820 > 2001:db8:51::1.51820: UDP, length 92",
        "IP6 2001:db8:51::1 > ff02::1:ff00:2: ICMP6, neighbor solicitation, who has 2001:db8:51::2",
        "IP6 2001:db8:51::2 > 2001:db8:51::1: ICMP6, neighbor advertisement, tgt is 2001:db8:51::2",
        "IP6 :: > ff02::16: HBH ICMP6, multicast listener report v2, 4 group record(s), length 88",
        "IP6 2001:db8:51::1.40000 > 2001:db8:51::2.51820: UDP, length 92",  # wrong source port
        "IP6 fd77:77::1 > fd77:77::2: ICMP6, echo request, id 1, seq 1, length 64",  # cleartext overlay
        "IP6 2001:db8:99::1 > ff02::1:ff00:2: ICMP6, neighbor solicitation, who has 2001:db8:51::2",
        "IP6 :: > ff02::1:ff00:2: ICMP6, neighbor solicitation, who has 2001:db8:51::2",
    ]
    wireguard, other = classify_underlay(lines, endpoints)
    assert wireguard == 2
    assert other == lines[5:]  # a stranger's or an unspecified source's neighbour discovery is no node's
    v4_only = {"198.51.100.1": 51820, "198.51.100.2": 51820}
    assert classify_underlay(lines[2:5], v4_only) == (0, lines[2:5])  # no IPv6 underlay: all leaks


def test_underlay_udp_between_nodes_is_counted_per_family() -> None:
    lines = [
        "IP6 2001:db8:51::1.51820 > 2001:db8:51::3.51820: UDP, length 128",
        "IP 198.51.100.1.51820 > 198.51.100.3.51820: UDP, length 128",
        "IP 203.0.113.5.4500 > 198.51.100.3.51820: UDP, length 128",  # a client: not node to node
    ]
    nodes = {"2001:db8:51::1", "2001:db8:51::3", "198.51.100.1", "198.51.100.3"}
    assert patterns.underlay_udp_families(lines, nodes) == (1, 1)


# ----------------------------------------------------------------------------- the lab tests' gate


def test_missing_prerequisites_skip_outside_ci_and_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver, "unavailable_reason", lambda: "the netns lab needs root")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        require_netns_lab()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_netns_lab()
    # A tool one test file needs on top of the lab's own counts the same way.
    monkeypatch.setattr(driver, "unavailable_reason", lambda: None)
    with pytest.raises(pytest.fail.Exception, match="missing tools for this lab test: no-such-tool-x"):
        require_netns_lab("no-such-tool-x")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-x"):
        require_netns_lab("no-such-tool-x")
    require_netns_lab("sh")  # present: no skip, no failure


# ----------------------------------------------------------------------------- layering


def test_lab_core_imports_no_driver_and_no_check() -> None:
    """Both drivers build on lab.core; lab.core itself depends on neither driver nor the checks."""
    core = Path(__file__).resolve().parents[2] / "lab" / "core"
    modules = sorted(core.glob("*.py"))
    assert len(modules) > 10
    for path in modules:
        tree = ast.parse(path.read_text())
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        wrong = [m for m in imported if m.startswith(("lab.netns", "lab.checks", "lab.vm"))]
        assert wrong == [], f"{path.name} imports {wrong}"
