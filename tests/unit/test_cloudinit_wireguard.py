"""wg0.conf and client conf text: every [Interface] key and every [Peer] follows the plan."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from artifacts.wgconf import parse_wg_conf
from test_cloudinit_plans import (
    MESH_SECRET,
    PORT,
    keys_for,
    mesh_plan,
    private_of,
    public_ips,
    public_of,
)

from cloudinit.host import nft_load_command, nft_remove_command
from cloudinit.render import client_config, node_wg_conf
from cloudinit.wireguard import format_endpoint, render_wg_conf
from mesh.errors import RenderError
from mesh.keys import NodeKeys, derive_psk
from mesh.plan_types import MeshPlan


def node_conf(plan: MeshPlan, name: str, *, v6_endpoints: bool = False) -> str:
    return node_wg_conf(plan, name, keys_for(plan, name), public_ips(plan, v6=v6_endpoints))


def test_node_interface_section_has_every_planned_key() -> None:
    plan = mesh_plan(dual_stack=True, mtu=1380)
    interface, *_ = parse_wg_conf(node_conf(plan, "n2"))

    assert interface.kind == "Interface"
    assert interface.one("Address") == "10.77.0.2/24, fd77:77::2/64"
    assert interface.one("ListenPort") == str(PORT)
    assert interface.one("PrivateKey") == private_of("n2")
    assert interface.one("MTU") == "1380"
    assert interface.one("SaveConfig") == "false"
    assert interface.values["PostUp"] == [nft_load_command()]
    assert interface.values["PostDown"] == [nft_remove_command()]
    assert "DNS" not in interface.values


def test_single_stack_interface_has_only_the_ipv4_address() -> None:
    plan = mesh_plan(dual_stack=False, mtu=1420)
    interface = parse_wg_conf(node_conf(plan, "n1"))[0]
    assert interface.one("Address") == "10.77.0.1/24"
    assert interface.one("MTU") == "1420"


def test_node_peers_follow_the_plan_in_order() -> None:
    plan = mesh_plan(dual_stack=True)
    ips = public_ips(plan)
    _, *peers = parse_wg_conf(node_conf(plan, "n1"))
    planned = plan.node("n1").iface.peers

    assert [p.comments for p in peers] == [[p.name] for p in planned]
    for section, peer in zip(peers, planned, strict=True):
        assert section.kind == "Peer"
        assert section.one("PublicKey") == public_of(peer.name)
        assert section.one("AllowedIPs") == ", ".join(str(n) for n in peer.allowed_ips)
        if peer.endpoint:
            assert section.one("Endpoint") == f"{ips[peer.name]}:{PORT}"
            assert section.one("PersistentKeepalive") == "25"
        else:  # the roaming laptop: no endpoint, no keepalive toward it
            assert "Endpoint" not in section.values
            assert "PersistentKeepalive" not in section.values


def test_subnet_behind_a_node_is_in_that_peer_allowed_ips_only() -> None:
    plan = mesh_plan(subnet_behind_first="10.0.4.0/24")
    _, *peers = parse_wg_conf(node_conf(plan, "n2"))
    by_name = {p.comments[0]: p.one("AllowedIPs") for p in peers}
    assert by_name == {"n1": "10.77.0.1/32, 10.0.4.0/24", "n3": "10.77.0.3/32", "laptop": "10.77.0.100/32"}


def test_psk_is_present_and_symmetric_when_enabled() -> None:
    plan = mesh_plan(psk=True)
    psk = {}
    for me in ("n1", "n2", "n3"):
        for section in parse_wg_conf(node_conf(plan, me))[1:]:
            psk[(me, section.comments[0])] = section.one("PresharedKey")
    assert psk[("n1", "n2")] == psk[("n2", "n1")] == derive_psk(MESH_SECRET, "n1", "n2", "0")
    assert psk[("n1", "n3")] == psk[("n3", "n1")]
    assert len({psk[("n1", "n2")], psk[("n1", "n3")], psk[("n2", "n3")], psk[("n1", "laptop")]}) == 4


def test_no_psk_when_disabled_even_with_a_mesh_secret() -> None:
    plan = mesh_plan(psk=False)
    text = node_conf(plan, "n1")
    assert "PresharedKey" not in text
    assert all("PresharedKey" not in s.values for s in parse_wg_conf(text))


def test_psk_without_mesh_secret_is_a_render_error_naming_the_peer() -> None:
    plan = mesh_plan(psk=True)
    keys = keys_for(plan, "n1", secret=None)
    with pytest.raises(RenderError, match=r"n1: peer n2 needs a preshared key") as err:
        node_wg_conf(plan, "n1", keys, public_ips(plan))
    assert private_of("n1") not in str(err.value)


def test_ipv6_endpoints_are_bracketed() -> None:
    plan = mesh_plan()
    _, *peers = parse_wg_conf(node_conf(plan, "n1", v6_endpoints=True))
    assert peers[0].one("Endpoint") == f"[2001:db8::b]:{PORT}"


def ipv6_endpoint_plan() -> MeshPlan:
    """mesh_plan() with `wgmesh:mesh.endpoints: ipv6`."""
    plan = mesh_plan()
    return dataclasses.replace(
        plan, spec=dataclasses.replace(plan.spec, mesh=dataclasses.replace(plan.spec.mesh, endpoints="ipv6"))
    )


def test_endpoints_ipv6_makes_every_node_peer_dial_its_static_ipv6() -> None:
    plan = ipv6_endpoint_plan()
    v4, v6 = public_ips(plan), public_ips(plan, v6=True)
    for node in plan.nodes:
        _, *peers = parse_wg_conf(node_wg_conf(plan, node.name, keys_for(plan, node.name), v4, v6))
        dialed = [p.one("Endpoint") for p in peers if p.get("Endpoint") is not None]
        others = [n.name for n in plan.nodes if n.name != node.name]
        assert dialed == [f"[{v6[o]}]:{PORT}" for o in others], node.name


def test_endpoints_ipv6_leaves_roaming_clients_on_ipv4() -> None:
    plan = ipv6_endpoint_plan()
    v4, v6 = public_ips(plan), public_ips(plan, v6=True)
    _, *peers = parse_wg_conf(client_config(plan, "laptop", keys_for(plan, "laptop"), v4, v6))
    assert [p.one("Endpoint") for p in peers] == [f"{v4[n.name]}:{PORT}" for n in plan.nodes]


def test_endpoints_ipv6_without_a_peers_ipv6_is_a_render_error() -> None:
    plan = ipv6_endpoint_plan()
    v4, v6 = public_ips(plan), public_ips(plan, v6=True)
    del v6["n3"]
    with pytest.raises(RenderError, match=r"^n1: no public IPv6 for peer n3$"):
        node_wg_conf(plan, "n1", keys_for(plan, "n1"), v4, v6)
    with pytest.raises(RenderError, match=r"^n1: no public IPv6 for peer n2$"):
        node_wg_conf(plan, "n1", keys_for(plan, "n1"), v4)  # endpoints6 not handed over at all
    with pytest.raises(RenderError, match=r"^n1: peer n2: endpoints: ipv6 needs an IPv6 address$"):
        node_wg_conf(plan, "n1", keys_for(plan, "n1"), v4, v4)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("192.0.2.10", "192.0.2.10:51820"),
        ("2001:db8::1", "[2001:db8::1]:51820"),
        ("2001:0db8:0000::0001", "[2001:db8::1]:51820"),
        ("wg.example.com", "wg.example.com:51820"),
    ],
)
def test_format_endpoint(host: str, expected: str) -> None:
    assert format_endpoint(host, 51820) == expected


@pytest.mark.parametrize(
    "host", ["", "a b", "10.0.0.1\nPostUp = rm -rf /", "-x.example", "[2001:db8::1]", "192.0.2.256"]
)
def test_format_endpoint_refuses_what_is_not_a_host(host: str) -> None:
    with pytest.raises(RenderError):
        format_endpoint(host, 51820)


def test_client_conf_has_dns_and_no_node_only_keys() -> None:
    plan = mesh_plan(dual_stack=True)
    text = client_config(plan, "laptop", keys_for(plan, "laptop"), public_ips(plan))
    interface, *peers = parse_wg_conf(text)

    assert interface.one("Address") == "10.77.0.100/24, fd77:77::100/64"
    assert interface.one("PrivateKey") == private_of("laptop")
    assert interface.one("DNS") == "10.77.0.1"
    assert interface.one("MTU") == "1380"
    for node_only in ("ListenPort", "SaveConfig", "PostUp", "PostDown"):
        assert node_only not in interface.values
    assert [p.comments[0] for p in peers] == ["n1", "n2", "n3"]
    assert [p.one("Endpoint") for p in peers] == [f"192.0.2.{10 + i}:{PORT}" for i in range(3)]


def test_missing_public_key_or_endpoint_is_a_render_error_naming_the_peer() -> None:
    plan = mesh_plan()
    keys = keys_for(plan, "n1")
    no_key = NodeKeys(keys.private_key, {k: v for k, v in keys.public_keys.items() if k != "n3"}, MESH_SECRET)
    with pytest.raises(RenderError, match="n1: no public key for peer n3"):
        node_wg_conf(plan, "n1", no_key, public_ips(plan))
    ips = public_ips(plan)
    del ips["n2"]
    with pytest.raises(RenderError, match="n1: no public IP for peer n2") as err:
        node_wg_conf(plan, "n1", keys, ips)
    assert keys.private_key not in str(err.value)


def test_multi_line_hook_is_refused() -> None:
    plan = mesh_plan()
    with pytest.raises(RenderError, match="one line"):
        render_wg_conf(plan.node("n1").iface, keys_for(plan, "n1"), {}, post_up=["true\nPostUp = x"])


def test_dns_accepts_v4_and_v6() -> None:
    plan = mesh_plan(client=False)
    dns = (ipaddress.ip_address("10.77.0.1"), ipaddress.ip_address("fd77:77::1"))
    text = render_wg_conf(plan.node("n1").iface, keys_for(plan, "n1"), _endpoints(plan, "n1"), dns=dns)
    assert parse_wg_conf(text)[0].one("DNS") == "10.77.0.1, fd77:77::1"


def test_output_is_deterministic_and_ends_with_one_newline() -> None:
    plan = mesh_plan(dual_stack=True)
    first = node_conf(plan, "n1")
    keys = keys_for(plan, "n1")
    shuffled = NodeKeys(keys.private_key, dict(reversed(keys.public_keys.items())), MESH_SECRET)
    ips = dict(reversed(public_ips(plan).items()))
    assert node_wg_conf(plan, "n1", shuffled, ips) == first
    assert first.endswith("\n")
    assert not first.endswith("\n\n")


def _endpoints(plan: MeshPlan, name: str) -> dict[str, str]:
    ips = public_ips(plan)
    return {p.name: format_endpoint(ips[p.name], PORT) for p in plan.node(name).iface.peers if p.endpoint}
