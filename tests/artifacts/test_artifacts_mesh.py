"""Across all rendered files: every member's key, PSK, AllowedIPs and Endpoint sit where the plan says.

The expected relation comes from the plan (built again from the stack file) and mesh.json (keys and
public IPs of this render); the actual one is parsed out of every user data and client conf.
Peers are matched by public key, never by the `# name` comment, so a wrong key cannot hide.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mesh.manifest import ManifestClient, ManifestNode

from .artifact_helpers import Rendered
from .wgconf import parse_wg_conf


@dataclass(frozen=True)
class Link:
    """What one config says about one peer."""

    allowed_ips: frozenset[str]
    endpoint: str | None
    keepalive: str | None
    has_psk: bool


def manifest_by_name(rendered: Rendered) -> dict[str, ManifestNode | ManifestClient]:
    return {m.name: m for m in rendered.manifest.members()}


def manifest_nodes(rendered: Rendered) -> dict[str, ManifestNode]:
    return {n.name: n for n in rendered.manifest.nodes}


def endpoint(ip: str, port: object) -> str:
    return f"[{ip}]:{port}" if ipaddress.ip_address(ip).version == 6 else f"{ip}:{port}"


def expected_links(rendered: Rendered) -> dict[tuple[str, str], Link]:
    """(config owner, peer public key) -> Link, from the plan and mesh.json."""
    info = manifest_by_name(rendered)
    nodes = manifest_nodes(rendered)
    links = {}
    for owner in rendered.members():
        # Nodes dial each other's static IPv6 under `endpoints: ipv6`; clients always dial IPv4.
        v6 = rendered.manifest.endpoints == "ipv6" and owner in nodes
        for peer in rendered.plan.interface(owner).peers:
            dial = None
            if peer.endpoint:  # only nodes are dialed
                node = nodes[peer.name]
                dial = endpoint(str(node.public_ip6 if v6 else node.public_ip), node.listen_port)
            links[(owner, info[peer.name].public_key)] = Link(
                allowed_ips=frozenset(str(n) for n in peer.allowed_ips),
                endpoint=dial,
                keepalive=None if peer.keepalive is None else str(peer.keepalive),
                has_psk=peer.psk_epoch is not None,
            )
    return links


def rendered_links(rendered: Rendered) -> tuple[dict[tuple[str, str], Link], dict[tuple[str, str], str]]:
    """(owner, peer public key) -> Link and -> PresharedKey, parsed from every rendered file."""
    links: dict[tuple[str, str], Link] = {}
    psks: dict[tuple[str, str], str] = {}
    for owner in rendered.members():
        for section in parse_wg_conf(rendered.wg_conf(owner))[1:]:
            key = (owner, section.one("PublicKey"))
            assert key not in links, f"{owner} lists a peer key twice"
            psk = section.get("PresharedKey")
            links[key] = Link(
                allowed_ips=frozenset(v.strip() for v in section.one("AllowedIPs").split(",")),
                endpoint=section.get("Endpoint"),
                keepalive=section.get("PersistentKeepalive"),
                has_psk=psk is not None,
            )
            if psk is not None:
                psks[key] = psk
    return links, psks


def test_every_peer_entry_matches_the_plan(rendered: Rendered) -> None:
    expected = expected_links(rendered)
    actual, _ = rendered_links(rendered)
    assert set(actual) == set(expected)  # no missing, no extra peer anywhere
    mismatched = {k: (actual[k], expected[k]) for k in expected if actual[k] != expected[k]}
    assert mismatched == {}


def test_each_node_key_is_in_exactly_the_configs_that_should_hold_it(rendered: Rendered) -> None:
    actual, _ = rendered_links(rendered)
    info = manifest_by_name(rendered)
    for node in rendered.plan.nodes:
        holders = {owner for (owner, key) in actual if key == info[node.name].public_key}
        should = {
            m for m in rendered.members() if node.name in {p.name for p in rendered.plan.interface(m).peers}
        }
        assert holders == should, node.name
        assert node.name not in holders  # never its own peer


def test_psks_match_pairwise_and_differ_between_pairs(rendered: Rendered) -> None:
    _, psks = rendered_links(rendered)
    name_of = {m.public_key: name for name, m in manifest_by_name(rendered).items()}
    pair_psk: dict[frozenset[str], str] = {}
    for (owner, key), psk in psks.items():
        pair = frozenset((owner, name_of[key]))
        assert pair_psk.setdefault(pair, psk) == psk, f"the two ends of {sorted(pair)} disagree"
    for owner, key in psks:
        assert (name_of[key], manifest_by_name(rendered)[owner].public_key) in psks, (
            f"{owner} has a PSK for {name_of[key]} but not the other way round"
        )
    assert len(set(pair_psk.values())) == len(pair_psk)
    if not rendered.plan.spec.mesh.preshared_keys:
        assert psks == {}


def test_interfaces_match_the_manifest(rendered: Rendered) -> None:
    info = manifest_by_name(rendered)
    for member in rendered.members():
        interface = parse_wg_conf(rendered.wg_conf(member))[0]
        m = info[member]
        addresses = [a.strip() for a in interface.one("Address").split(",")]
        assert [str(ipaddress.ip_interface(a).ip) for a in addresses] == [
            str(a) for a in (m.address, m.address6) if a is not None
        ], member
        assert interface.one("MTU") == str(m.mtu), member
        if isinstance(m, ManifestNode):
            assert interface.one("ListenPort") == str(m.listen_port), member
        else:
            assert interface.get("ListenPort") is None, member


def test_no_two_peers_of_one_config_overlap(rendered: Rendered) -> None:
    """wg moves an AllowedIP to the last peer that claims it: overlaps would silently break routing."""
    for member in rendered.members():
        nets = [
            (section.comments[0], ipaddress.ip_network(v.strip()))
            for section in parse_wg_conf(rendered.wg_conf(member))[1:]
            for v in section.one("AllowedIPs").split(",")
        ]
        for i, (peer_a, a) in enumerate(nets):
            for peer_b, b in nets[i + 1 :]:
                if peer_a != peer_b and a.version == b.version:
                    assert not a.overlaps(b), f"{member}: {peer_a} {a} overlaps {peer_b} {b}"


def test_lab_nodes_dial_their_fixed_public_ips(rendered: Rendered) -> None:
    nodes = manifest_nodes(rendered)
    for node in rendered.plan.spec.nodes:
        if node.cloud == "lab":
            assert nodes[node.name].public_ip == node.public_ip
        else:
            assert nodes[node.name].public_ip in ipaddress.ip_network("192.0.2.0/24")
