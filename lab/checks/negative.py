"""Negative checks: the lab must notice a broken mesh, not only a working one.

A node holding a wrong public key for a peer cannot reach it; a packet whose source is
outside the sender's AllowedIPs is never delivered by the receiver's wg0 (cryptokey routing).
Both change wg0 at run time and put it back from wg0.conf afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from lab.core.capture import Capture
from lab.core.manifest import LabNode
from lab.core.probes import WG, allowed_ips, ping, ping_text
from lab.core.proc import Place, run_in
from lab.core.results import CheckResult
from lab.netns.running import NetnsLab
from mesh.keys import private_key, public_key


def _two_nodes(lab: NetnsLab, *, dialled: bool = False) -> tuple[LabNode, LabNode] | None:
    """The first pair of nodes that peer directly (in a hub mesh, two spokes do not).

    `dialled`: B must be a node A dials (not one behind NAT: A holds no Endpoint for it, so a
    peer entry A re-creates could not reach B until B's session with A expired)."""
    for a in lab.nodes:
        for b in lab.nodes:
            if a.name != b.name and b.name in lab.mesh.node_peers(a.name) and not (dialled and b.behind_nat):
                return a, b
    return None


def restore_from_config(place: Place) -> None:
    """Put wg0 back to what /etc/wireguard/wg0.conf says (as an operator would)."""
    run_in(place, "bash", "-c", f"wg syncconf {WG} <(wg-quick strip {WG})")


def random_public_key() -> str:
    """A valid public key nobody in the lab holds the private half of."""
    return public_key(private_key(os.urandom(32)))


Trial = Callable[[NetnsLab, LabNode, LabNode], tuple[bool, str]]


def _on_two_nodes(lab: NetnsLab, name: str, trial: Trial, *, dialled: bool = False) -> CheckResult:
    """Run `trial` on the first directly peering pair; skipped when the mesh has none."""
    pair = _two_nodes(lab, dialled=dialled)
    if pair is None:
        return CheckResult(name, True, "needs two nodes", skipped=True)
    ok, detail = trial(lab, *pair)
    return CheckResult(name, ok, detail)


def check_wrong_peer_key(lab: NetnsLab) -> CheckResult:
    return _on_two_nodes(lab, "negative: wrong peer key cannot reach the peer", _wrong_peer_key, dialled=True)


def check_outside_allowed_ips(lab: NetnsLab) -> CheckResult:
    return _on_two_nodes(lab, "negative: source outside AllowedIPs is dropped", _outside_allowed_ips)


def _wrong_peer_key(lab: NetnsLab, a: LabNode, b: LabNode) -> tuple[bool, str]:
    """Node A with a wrong public key for B (same endpoint and AllowedIPs) cannot reach B."""
    where = lab.node(a.name)
    allowed = allowed_ips(where).get(b.public_key)
    if not allowed:
        return False, f"{a.name} has no peer entry for {b.name}"
    try:
        run_in(where, "wg", "set", WG, "peer", b.public_key, "remove")
        endpoint = f"{b.public_ip}:{b.listen_port}"
        fake = random_public_key()
        run_in(where, "wg", "set", WG, "peer", fake, "endpoint", endpoint, "allowed-ips", ",".join(allowed))
        broken = ping(where, b.address, count=3, deadline=3)
    finally:
        restore_from_config(where)
    restored = ping(where, b.address, count=5)
    ok = not broken.ok and restored.ok
    return ok, f"{a.name} -> {b.name} with a wrong key: {ping_text(broken)}; restored: {ping_text(restored)}"


def _outside_allowed_ips(lab: NetnsLab, a: LabNode, b: LabNode) -> tuple[bool, str]:
    """B sends from an address outside its AllowedIPs at A: A's wg0 never delivers it."""
    spoofed = str(lab.free_overlay_address())
    sender = lab.node(b.name)
    run_in(sender, "ip", "addr", "add", f"{spoofed}/32", "dev", WG)
    try:
        with Capture(lab.node(a.name), WG, "icmp") as cap:
            outside = ping(sender, a.address, count=3, source=spoofed, deadline=3)
            inside = ping(sender, a.address, count=2)
    finally:
        run_in(sender, "ip", "addr", "del", f"{spoofed}/32", "dev", WG, check=False)
    from_spoofed = sum(1 for line in cap.lines if line.startswith(f"IP {spoofed} >"))
    from_real = sum(
        1 for line in cap.lines if line.startswith(f"IP {b.address} > {a.address}: ICMP echo request")
    )
    ok = not outside.ok and from_spoofed == 0 and inside.ok and from_real > 0
    detail = (
        f"{b.name} -> {a.name} from {spoofed}: {ping_text(outside)}, {from_spoofed} delivered on "
        f"{a.name}'s wg0; from {b.address}: {ping_text(inside)}, {from_real} delivered"
    )
    return ok, detail
