"""What a node's host needs around wg0: forwarding sysctls, one nftables table, a metadata guard.

All are files, loaded by tools that exist on every image (`sysctl -p`, `nft -f` from
wg-quick's PostUp), so the same text works on first boot, after a reboot and inside the
lab's network namespaces. Only per-network-namespace sysctl keys are written: the lab
applies this file inside namespaces and must never change the host.

The metadata guard is its own table in its own file, loaded by its own oneshot unit ordered
before the network (like Debian's nftables.service), so it holds from early boot on every boot
and does not depend on wg0: `wg-quick down` (PostDown drops `inet wgmesh`) leaves it in place.
It does not use nftables.service because /etc/nftables.conf starts with `flush ruleset` on
Debian and Ubuntu, and taking that file over would wipe other tools' rules.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterable

from cloudinit.script_files import script_body
from cloudinit.wireguard import WG_INTERFACE
from mesh.plan_types import NodePlan
from mesh.spec import IPNetwork

SYSCTL_PATH = "/etc/sysctl.d/90-wgmesh.conf"
NFT_PATH = "/etc/wireguard/wgmesh.nft"
NFT_TABLE = "inet wgmesh"
NFT_BINARY = "/usr/sbin/nft"  # Debian and Ubuntu (merged /usr)

# The cloud metadata service serves the user data, and so this node's WireGuard private key.
METADATA_V4 = ipaddress.IPv4Address("169.254.169.254")  # AWS, GCP, Hetzner
METADATA_V6 = ipaddress.IPv6Address("fd00:ec2::254")  # AWS IMDS over IPv6
METADATA_TABLE = "inet wgmesh_metadata"
METADATA_GUARD_PATH = "/etc/wgmesh/metadata-guard.nft"
METADATA_GUARD_UNIT = "wgmesh-metadata-guard.service"
METADATA_GUARD_UNIT_PATH = f"/etc/systemd/system/{METADATA_GUARD_UNIT}"
METADATA_NTP_COMMENT = "GCP: the metadata server is the time source of timesyncd/chrony (not root)"
INTO_MESH_DROP = "wgmesh: a gateway forwards into the mesh only replies and its own subnets"
# Spaces, not tabs: PyYAML will not emit a block scalar holding a tab (the ruleset travels in one).
_TAB = "    "


def sysctl_conf(ipv6: bool) -> str:
    """Forwarding on (every node may route for the mesh); IPv6 forwarding with a dual-stack overlay."""
    lines = [
        "# wgmesh: every node forwards mesh traffic (per network namespace keys only).",
        "net.ipv4.ip_forward = 1",
    ]
    if ipv6:
        lines.append("net.ipv6.conf.all.forwarding = 1")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- IPv6 RA guard

ACCEPT_RA_PATH = "/etc/sysctl.d/89-wgmesh-accept-ra.conf"  # sorts before SYSCTL_PATH

RA_GUARD_FILE = "wgmesh-ra-guard.sh"  # in cloudinit/scripts/


def accept_ra_guard_script() -> str:
    """The POSIX sh guard (cloudinit/scripts/wgmesh-ra-guard.sh without its header; $0: the file it writes).

    For each interface with an RA-learned IPv6 default route whose RAs the kernel handles
    (accept_ra 1): raise it to 2 now and keep the key, "-" prefixed, in that file for later boots.
    """
    return script_body(RA_GUARD_FILE)


def accept_ra_guard_step(path: str = ACCEPT_RA_PATH) -> tuple[str, ...]:
    """Run before the sysctl file: forwarding must not cost an uplink its kernel-learned IPv6 route.

    Turning `all.forwarding` on makes the kernel delete its RA-learned default routes at once and
    ignore later RAs, except on interfaces with accept_ra=2 (ip-sysctl.rst; rt6_purge_dflt_routers).
    That bites where the kernel handles RAs (ifupdown `inet6 dhcp`, a bare `dhclient -6`). The
    supported images use systemd-networkd via netplan, which sets accept_ra=0 and handles RAs in
    userspace whatever the sysctl says: their uplinks are at 0 and are left alone.
    """
    return ("sh", "-c", accept_ra_guard_script(), path)


def nft_load_command(path: str = NFT_PATH) -> str:
    """wg-quick PostUp: (re)load the table; the file replaces it atomically."""
    return f"nft -f {shlex.quote(path)}"


def nft_remove_command() -> str:
    """wg-quick PostDown: drop the table, without failing when it is already gone."""
    return f"nft {shlex.quote(f'add table {NFT_TABLE}; delete table {NFT_TABLE}')}"


def nft_ruleset(node: NodePlan, interface: str = WG_INTERFACE) -> str:
    """One `inet wgmesh` table: MSS clamping and forward accepts, plus NAT only where planned.

    The leading empty `table` + `delete table` make `nft -f` replace the table in one
    transaction, so loading it twice never duplicates a rule.
    """
    lines = [
        "#!/usr/sbin/nft -f",
        f"# wgmesh host rules for {node.name}: loaded by wg-quick PostUp, removed by PostDown.",
        f'define WG = "{interface}"',
        "",
        f"table {NFT_TABLE} {{}}",
        f"delete table {NFT_TABLE}",
        "",
        f"table {NFT_TABLE} {{",
        *_indent(_forward_chain(node)),
    ]
    nat = _nat_rules(node)
    if nat:
        lines += ["", *_indent(_chain("postrouting", "type nat hook postrouting priority srcnat", nat))]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _forward_chain(node: NodePlan) -> list[str]:
    # SYN and SYN-ACK only (not RST); `rt mtu` is the MSS that fits the route's MTU.
    rules = [
        "iifname $WG tcp flags syn / syn,rst tcp option maxseg size set rt mtu",
        "oifname $WG tcp flags syn / syn,rst tcp option maxseg size set rt mtu",
        "iifname $WG accept",
    ]
    return _chain("forward", "type filter hook forward priority mangle", rules + _into_mesh(node))


def _into_mesh(node: NodePlan) -> list[str]:
    """What may be forwarded into wg0 from another interface.

    A gateway faces the internet with forwarding on: anyone there (or in its cloud network)
    could route packets for the mesh through it. So it forwards into wg0 only replies to what
    the mesh sent out, and new connections from its own routed subnets. Other nodes keep
    `oifname $WG accept`: their uplinks face only their peers, and containers on them may
    reach the mesh through Docker's masquerade (forward sees the pre-NAT source).
    """
    if not node.gateway:
        return ["oifname $WG accept"]
    v4, v6 = _by_family(node.subnets)
    rules = ["oifname $WG ct state established,related accept"]
    if v4:
        rules.append(f"oifname $WG ip saddr {_set(v4)} accept")
    if v6:
        rules.append(f"oifname $WG ip6 saddr {_set(v6)} accept")
    rules.append(f'oifname $WG counter drop comment "{INTO_MESH_DROP}"')
    return rules


def _nat_rules(node: NodePlan) -> list[str]:
    """Masquerade mesh traffic into `node.masquerade` subnets; out of a gateway's uplink.

    A gateway masquerades whatever leaves by another interface than wg0, except into its own
    routed subnets: without `masquerade` those only route (their hosts see mesh addresses).
    """
    rules: list[str] = []
    v4, v6 = _by_family(node.masquerade)
    # ext: an external host NATs out of its LAN interface only (`lanInterface`, e.g. its Wi-Fi).
    into = f'iifname $WG oifname "{node.lan_interface}"' if node.lan_interface else "iifname $WG"
    if v4:
        rules.append(f"{into} ip daddr {_set(v4)} masquerade")
    if v6:
        rules.append(f"{into} ip6 daddr {_set(v6)} masquerade")
    if node.gateway:
        out = "iifname $WG oifname != $WG"
        own4, own6 = _by_family(node.subnets)
        if not node.subnets:
            rules.append(f"{out} masquerade")
        else:
            rules.append(
                f"{out} ip daddr != {_set(own4)} masquerade"
                if own4
                else f"{out} meta nfproto ipv4 masquerade"
            )
            rules.append(
                f"{out} ip6 daddr != {_set(own6)} masquerade"
                if own6
                else f"{out} meta nfproto ipv6 masquerade"
            )
    return rules


def _by_family(networks: Iterable[IPNetwork]) -> tuple[list[IPNetwork], list[IPNetwork]]:
    nets = list(networks)
    return [n for n in nets if n.version == 4], [n for n in nets if n.version == 6]


def _chain(name: str, hook: str, rules: list[str]) -> list[str]:
    return [f"chain {name} {{", f"{_TAB}{hook}; policy accept;", *(f"{_TAB}{r}" for r in rules), "}"]


def _set(networks: Iterable[IPNetwork]) -> str:
    return "{ " + ", ".join(str(n) for n in networks) + " }"


def _indent(lines: list[str]) -> list[str]:
    return [f"{_TAB}{line}" if line else line for line in lines]


# ----------------------------------------------------------------------------- metadata guard


def metadata_guard_ruleset() -> str:
    """Only root (cloud-init, the cloud agents) reaches the metadata service; nothing is forwarded to it.

    Output: a packet from a non-root socket to the metadata address is rejected (fails at once).
    Packets with no full socket (kernel replies, TIME_WAIT) have no owner to test and pass.
    Forward: mesh peers (a gateway's full-tunnel clients) and containers never reach it.
    DNS to that address stays open: on GCP it is the resolver systemd-resolved (not root) uses.
    NTP to it stays open from the node itself: on GCP the metadata server is the VM's time
    source ("Compute Engine instances are preconfigured to use NTP" with the internal server
    metadata.google.internal, https://cloud.google.com/compute/docs/instances/configure-ntp),
    and systemd-timesyncd and chronyd drop root before they ask. AWS's time source is
    169.254.169.123 (not the metadata address), Hetzner's is ntp.hetzner.com: untouched.
    """
    dns = "meta l4proto { tcp, udp } th dport 53 accept"
    ntp = f'udp dport 123 accept comment "{METADATA_NTP_COMMENT}"'
    chains = [
        *_chain(
            "output",
            "type filter hook output priority filter",
            [
                dns,
                ntp,
                f"ip daddr {METADATA_V4} meta skuid != 0 reject",
                f"ip6 daddr {METADATA_V6} meta skuid != 0 reject",
            ],
        ),
        "",
        *_chain(
            "forward",
            "type filter hook forward priority filter",
            [dns, f"ip daddr {METADATA_V4} reject", f"ip6 daddr {METADATA_V6} reject"],
        ),
    ]
    lines = [
        "#!/usr/sbin/nft -f",
        "# wgmesh: the metadata service holds the user data (this node's private key): root only.",
        f"# Loaded at boot by {METADATA_GUARD_UNIT}; independent of wg0.",
        f"table {METADATA_TABLE} {{}}",
        f"delete table {METADATA_TABLE}",
        "",
        f"table {METADATA_TABLE} {{",
        *_indent(chains),
        "}",
    ]
    return "\n".join(lines) + "\n"


def metadata_guard_unit(path: str = METADATA_GUARD_PATH) -> str:
    """A oneshot unit loading the guard before the network on every boot (nftables.service's ordering).

    No ExecStop: stopping the unit does not lift the guard; `restart` reloads it atomically.
    """
    return "\n".join(
        [
            "[Unit]",
            "Description=wgmesh: only root may reach the cloud metadata service",
            "DefaultDependencies=no",
            "Wants=network-pre.target",
            "Before=network-pre.target shutdown.target",
            "Conflicts=shutdown.target",
            "",
            "[Service]",
            "Type=oneshot",
            "RemainAfterExit=yes",
            f"ExecStart={NFT_BINARY} -f {path}",
            "",
            "[Install]",
            "WantedBy=sysinit.target",
            "",
        ]
    )


def metadata_guard_load_step(path: str = METADATA_GUARD_PATH) -> tuple[str, ...]:
    """First boot: load the guard now (the unit only exists once write_files has run)."""
    return ("nft", "-f", path)


def metadata_guard_enable_step() -> tuple[str, ...]:
    """Every later boot: the unit loads it before the network comes up."""
    return ("systemctl", "enable", METADATA_GUARD_UNIT)
