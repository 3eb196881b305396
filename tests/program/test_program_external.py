"""ext (issue 15): `cloud: external` nodes under mocks: keys and config, no cloud resource.

An external node gets a key and both forms of its config as one secret output (`externalHosts`),
creates nothing in any cloud, and changes what its peers' firewalls open: an IP endpoint is
admitted alone, a host behind NAT (or at a DNS name) makes the nodes it dials accept WireGuard
from anywhere.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest
import yaml
from program_expectations import firewall_rules, plan_of
from wgmesh_mocks import ProgramRun, Resolved, reveal, run_program

from cloudinit.installer import SUMMARY_PREFIX

WG = ("udp", 51820)
WORLD = frozenset({"0.0.0.0/0", "::/0"})
BASE_MESH = {"cidr": "10.77.0.0/24"}


def config(nodes: list[dict[str, Any]], mesh: dict[str, Any] | None = None) -> dict[str, str]:
    return {"wgmesh:mesh": json.dumps(mesh or BASE_MESH), "wgmesh:nodes": json.dumps(nodes)}


HCLOUD: dict[str, Any] = {"name": "hz", "cloud": "hcloud", "region": "nbg1"}
AT_IP: dict[str, Any] = {
    "name": "dc",
    "cloud": "external",
    "endpoint": "203.0.113.7:51999",
    "subnets": ["10.20.0.0/16"],
}
HOME: dict[str, Any] = {
    "name": "home",
    "cloud": "external",
    "subnets": ["10.11.12.0/24"],
    "masquerade": True,
    "lanInterface": "wlp0s0f0",
}


@pytest.fixture(scope="module")
def at_ip() -> ProgramRun:
    run = run_program("ext-ip", config([HCLOUD, AT_IP]))
    assert run.error is None, repr(run.error)
    return run


@pytest.fixture(scope="module")
def behind_nat() -> ProgramRun:
    run = run_program("ext-nat", config([HCLOUD, HOME]))
    assert run.error is None, repr(run.error)
    return run


def wg_sources(run: ProgramRun) -> frozenset[str]:
    (sources,) = [src for proto, port, src in firewall_rules(run, "hz", "hcloud") if (proto, port) == WG]
    return sources


def test_an_external_node_creates_no_cloud_resource(at_ip: ProgramRun) -> None:
    ours = [r for r in at_ip.resources if "dc" in r.name.split("-")]
    assert {r.type for r in ours if r.custom} <= {"random:index/randomBytes:RandomBytes"}
    assert [r.name for r in at_ip.resources if r.type == "wgmesh:external:Node"] == ["dc"]


def test_its_ip_endpoint_is_dialled_and_is_the_only_source_its_peers_admit(at_ip: ProgramRun) -> None:
    own = at_ip.outputs["nodes"]["hz"]["publicIp"].value  # a class may admit its own address
    assert wg_sources(at_ip) == frozenset({"203.0.113.7/32", f"{own}/32"})
    conf = at_ip.outputs["wgConfigs"]["hz"].value
    assert "Endpoint = 203.0.113.7:51999" in conf  # its endpoint's port, not the mesh's
    assert at_ip.outputs["nodes"]["dc"]["publicIp"].value == "203.0.113.7"


def test_behind_nat_it_dials_and_its_peers_accept_wireguard_from_anywhere(behind_nat: ProgramRun) -> None:
    assert wg_sources(behind_nat) == WORLD
    hub_conf = behind_nat.outputs["wgConfigs"]["hz"].value
    home_peer = hub_conf.split("# home", 1)[1]
    assert "Endpoint" not in home_peer and "PersistentKeepalive" not in home_peer
    home_conf = behind_nat.outputs["wgConfigs"]["home"].value
    assert "Endpoint = " in home_conf and "PersistentKeepalive = 25" in home_conf
    assert behind_nat.outputs["nodes"]["home"]["publicIp"].value is None


def test_both_forms_are_one_secret_output_rendered_from_the_same_conf(behind_nat: ProgramRun) -> None:
    leaves = behind_nat.outputs["externalHosts"]["home"]
    assert set(leaves) == {"cloudConfig", "installer"}
    assert all(isinstance(v, Resolved) and v.secret for v in leaves.values())
    forms = {k: v.value for k, v in leaves.items()}
    doc = yaml.safe_load(forms["cloudConfig"])
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    wg_conf = behind_nat.outputs["wgConfigs"]["home"].value
    assert files["/etc/wireguard/wg0.conf"] == wg_conf
    assert 'oifname "wlp0s0f0" ip daddr { 10.11.12.0/24 } masquerade' in files["/etc/wireguard/wgmesh.nft"]
    installer = forms["installer"]
    assert installer.startswith("#!/bin/sh\n") and SUMMARY_PREFIX in installer
    assert set(behind_nat.outputs["externalHosts"]) == {"home"}  # cloud nodes are not in it
    assert plan_of(config([HCLOUD, HOME])).node("home").cloud == "external"


def test_keyed_errors_stop_the_program_before_any_resource() -> None:
    bad = {**HOME, "lanInterface": None, "endpoint": "home..example:70000"}
    run = run_program("ext-bad", config([HCLOUD, bad]))
    assert run.error is not None
    text = str(run.error)
    assert "wgmesh:nodes[1].lanInterface: is required with masquerade" in text
    assert "wgmesh:nodes[1].endpoint:" in text
    assert not [r for r in run.resources if r.custom and not r.type.startswith("pulumi:providers:")]


def live_run(ssh_host: bool) -> ProgramRun:
    from test_program_live_updates import SECRET_KEYS, dev_config

    home = {**HOME, **({"sshHost": "home.example.org"} if ssh_host else {})}
    run = run_program("ext-live", dev_config([HCLOUD, home]), secret_keys=SECRET_KEYS)
    assert run.error is None, repr(run.error)
    return run


def test_with_ssh_host_live_updates_reach_it_there_in_the_same_order_as_a_cloud_node() -> None:
    run = live_run(ssh_host=True)
    commands = {r.name: r for r in run.of_type("command:remote:Command")}
    assert {"home-peers", "home-sync", "hz-peers", "hz-sync"} <= set(commands)
    assert reveal(commands["home-sync"].inputs["connection"])["host"] == "home.example.org"
    assert reveal(commands["home-sync"].inputs["connection"])["user"] == "root"
    by_urn = run.by_urn()
    after = {by_urn[u].name for u in commands["home-sync"].dependencies if u in by_urn}
    assert {"home-peers", "hz-peers"} <= after  # its peers learn its key before it switches


def test_without_ssh_host_live_updates_leave_it_to_the_printed_command() -> None:
    run = live_run(ssh_host=False)
    names = {r.name for r in run.of_type("command:remote:Command")}
    assert "hz-sync" in names and not {n for n in names if n.startswith("home-")}


def test_without_live_updates_preview_prints_the_re_apply_command(monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    monkeypatch.setattr(pulumi.log, "info", lambda msg, *a, **k: said.append(str(msg)))
    run = run_program("ext-nat", config([HCLOUD, HOME]))
    assert run.error is None, repr(run.error)
    (line,) = [s for s in said if "home" in s and "self-managed" in s]
    assert "make host NAME=home STACK=ext-nat" in line and "sudo sh home-install.sh" in line
    assert not [s for s in said if "hz" in s and "self-managed" in s]
