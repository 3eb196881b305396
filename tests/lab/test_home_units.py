"""The camera scenario's pure parts (stacks/Pulumi.lab-home.yaml): how the netns lab reads and
places a `cloud: external` node behind NAT, and what its checks read off the wire. No root."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from pathlib import Path

import pytest
from labtest import render_stack

from lab import __main__ as lab_main
from lab.checks import negative
from lab.checks.health import check_underlay
from lab.checks.home import sources_for
from lab.core.errors import LabError
from lab.core.manifest import LabMesh, load_mesh
from lab.netns import clients, driver, homes
from lab.netns.boot import installer_path
from lab.netns.layout import Layout
from lab.netns.running import NetnsLab
from lab.netns.topology import lan_links, wanted_namespaces

LAYOUT = Layout(root=Path("/nonexistent/wgmesh-home-units"), prefix="wgm-hu-")


@pytest.fixture(scope="module")
def home_render(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_stack("lab-home", tmp_path_factory.mktemp("render") / "lab-home")


@pytest.fixture(scope="module")
def mesh(home_render: Path) -> LabMesh:
    return load_mesh(home_render)


def test_the_external_home_node_is_booted_behind_nat_with_its_lan_interface(mesh: LabMesh) -> None:
    assert [n.name for n in mesh.nodes] == ["hub", "home"] and mesh.skipped == ()
    hub, home = mesh.node("hub"), mesh.node("home")
    assert (hub.external, hub.behind_nat, hub.lan_interface) == (False, False, None)
    assert (home.external, home.behind_nat, home.masquerade) == (True, True, True)
    assert home.lan_interface == "wlp0s0f0"
    assert home.keepalive == 2  # the stack's `keepalive: 2`, toward the hub it dials
    assert hub.keepalive is None  # it dials nobody: home is behind NAT, the laptop roams
    assert home.subnets == (ipaddress.ip_network("10.11.12.0/24"),)
    assert [c.name for c in mesh.clients] == ["laptop"] and mesh.clients[0].peers == ("hub",)


def test_the_lab_names_the_lan_link_as_the_rendered_masquerade_rule_does(mesh: LabMesh) -> None:
    """The rule NATs only out of `lanInterface`: a lab link of any other name would never match."""
    home = mesh.node("home")
    rule = re.search(
        r'oifname "([^"]+)" ip daddr \{ 10\.11\.12\.0/24 \} masquerade', home.user_data.read_text()
    )
    assert rule is not None
    assert lan_links(home) == [(rule.group(1), "eth0")]
    two = dataclasses.replace(home, subnets=(*home.subnets, ipaddress.ip_network("10.11.13.0/24")))
    assert lan_links(two) == [("wlp0s0f0", "eth0"), ("wlp0s0f0", "eth0")]  # one interface, as at home
    plain = dataclasses.replace(two, lan_interface=None)
    assert lan_links(plain) == [("lan0", "eth0"), ("lan1", "eth1")]


def test_the_home_router_gets_its_own_public_ip_lan_and_namespace(mesh: LabMesh) -> None:
    [s] = homes.sites(LAYOUT, mesh)
    assert (s.name, str(s.nat_ip), str(s.lan)) == ("home", "198.51.100.201", "192.168.200.0/24")
    assert (str(s.router), str(s.lan_address)) == ("192.168.200.1", "192.168.200.2")
    assert s.nat.netns == "wgm-hu-hnat-home"
    assert homes.wanted_namespaces(LAYOUT, mesh) == ["wgm-hu-hnat-home"]
    # The node keeps its own namespace (and its camera LAN one), like any node.
    assert {"wgm-hu-node-home", "wgm-hu-lan-home"} <= set(wanted_namespaces(LAYOUT, mesh))
    # The client's NAT box machinery, same ruleset: the LAN out of the uplink as the router's IP.
    rules = clients.nat_ruleset(s, clients.PORT_RANGES[0])
    assert (
        "ip saddr 192.168.200.0/24 meta l4proto { tcp, udp } snat ip to 198.51.100.201:20000-20999" in rules
    )


def test_the_home_router_forgets_idle_udp_fast_and_only_in_its_own_namespace() -> None:
    line = homes.conntrack_sysctls(homes.HOME_NAT_UDP_TIMEOUT)
    writes = re.findall(r"echo (\d+) > ([^;\s]+)", line)
    assert writes == [
        ("5", "/proc/sys/net/netfilter/nf_conntrack_udp_timeout"),
        ("5", "/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream"),
    ]
    # The keepalive must beat the timeout, or no keepalive could hold the mapping.
    assert homes.HOME_NAT_UDP_TIMEOUT > 2


def test_addresses_that_collide_with_the_home_wiring_are_refused(mesh: LabMesh) -> None:
    homes.check_fits(LAYOUT, mesh)
    hub = mesh.node("hub")
    squatter = dataclasses.replace(hub, public_ip=ipaddress.IPv4Address("198.51.100.201"))
    with pytest.raises(
        LabError, match=r"hub's publicIp 198\.51\.100\.201 is an address the lab gives a home"
    ):
        homes.check_fits(LAYOUT, dataclasses.replace(mesh, nodes=(squatter, *mesh.nodes[1:])))
    home = mesh.node("home")
    overlap = dataclasses.replace(home, subnets=(ipaddress.ip_network("192.168.200.0/25"),))
    with pytest.raises(LabError, match=r"home's subnet 192\.168\.200\.0/25 overlaps the lab's LAN of home"):
        homes.check_fits(LAYOUT, dataclasses.replace(mesh, nodes=(hub, overlap)))


def test_home_wireguard_is_the_routers_mapped_ports_to_a_node_listen_port(mesh: LabMesh) -> None:
    lab = NetnsLab(LAYOUT, mesh)
    lines = [
        "IP 198.51.100.201.20417 > 198.51.100.1.51820: UDP, length 32",  # keepalive out
        "IP 198.51.100.1.51820 > 198.51.100.201.20417: UDP, length 128",  # reply in
        "IP 198.51.100.201.51820 > 198.51.100.1.51820: UDP, length 32",  # not a mapped port
        "IP 198.51.100.201.20417 > 198.51.100.1.53: UDP, length 32",  # not the listen port
        "IP 192.0.2.10.51820 > 198.51.100.1.51820: UDP, length 32",  # the placeholder address
    ]
    counted, other = homes.home_wireguard(lab, lines)
    assert counted == 2 and other == lines[2:]
    # What the underlay check then says: the home's WireGuard counts, the rest are leaks.
    assert check_underlay(lab, [], counted).ok
    result = check_underlay(lab, other, counted)
    assert not result.ok and result.detail.startswith("2 WireGuard UDP packets, 3 other")


def test_the_camera_is_probed_from_the_laptop_through_the_hub_and_from_the_hub(mesh: LabMesh) -> None:
    found = [
        (src.label, str(src.address), via)
        for src, via in sources_for(NetnsLab(LAYOUT, mesh), mesh.node("home"))
    ]
    laptop, hub = mesh.clients[0], mesh.node("hub")
    assert found == [("client laptop", str(laptop.address), "hub"), ("hub", str(hub.address), None)]


def test_the_wrong_key_check_never_aims_at_a_node_behind_nat(mesh: LabMesh) -> None:
    """A node holds no Endpoint for a peer behind NAT: a re-added peer could not be dialled. The
    spoofed-source check keeps hub <- home: home's AllowedIPs at the hub are narrow (the hub's
    at home are the whole mesh, where any mesh address is allowed)."""
    lab = NetnsLab(LAYOUT, mesh)
    wrong_key = negative._two_nodes(lab, dialled=True)
    assert wrong_key is not None and (wrong_key[0].name, wrong_key[1].name) == ("home", "hub")
    spoofed = negative._two_nodes(lab)
    assert spoofed is not None and (spoofed[0].name, spoofed[1].name) == ("hub", "home")


def test_the_installer_form_runs_the_install_sh_make_render_wrote(mesh: LabMesh, home_render: Path) -> None:
    path = installer_path(mesh.node("home"))
    assert path == home_render / "home" / "install.sh"
    text = path.read_text()
    assert text.startswith("#!/bin/sh\n") and "wgmesh-bundle 1" in text
    assert not installer_path(mesh.node("hub")).exists()  # only external nodes have one
    args = lab_main._parser().parse_args(["up", "--stack", "lab-home", "--installer"])
    assert args.installer and args.stack == "lab-home"
    assert not lab_main._parser().parse_args(["up"]).installer


def test_driver_knows_the_home_routers_as_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """`lab down` lists leftover home routers as strays like the other lab namespaces."""
    monkeypatch.setattr(driver, "existing_namespaces", lambda: {"wgm-hu-hnat-home", "other-ns"})
    assert driver.stray_namespaces(LAYOUT) == ["wgm-hu-hnat-home"]


def test_the_vm_lab_refuses_external_nodes(home_render: Path) -> None:
    from lab.vm import driver as vm_driver

    with pytest.raises(LabError, match="the VM lab runs lab nodes only; not lab: home"):
        vm_driver.lab_nodes(home_render)
