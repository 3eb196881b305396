"""Host text around wg0: sysctl keys (per namespace only), the nftables table (NAT only where
planned) and the metadata guard (its own table and boot unit)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_cloudinit_plans import mesh_plan, node_plan

from cloudinit.host import (
    INTO_MESH_DROP,
    METADATA_GUARD_PATH,
    METADATA_GUARD_UNIT,
    METADATA_NTP_COMMENT,
    METADATA_TABLE,
    NFT_PATH,
    NFT_TABLE,
    metadata_guard_enable_step,
    metadata_guard_load_step,
    metadata_guard_ruleset,
    metadata_guard_unit,
    nft_load_command,
    nft_remove_command,
    nft_ruleset,
    sysctl_conf,
)
from mesh.plan_types import NodePlan


def sysctl_keys(text: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return {k.strip(): v.strip() for k, v in pairs}


@pytest.mark.parametrize("ipv6", [False, True])
def test_sysctl_sets_forwarding_with_namespaced_keys_only(ipv6: bool) -> None:
    keys = sysctl_keys(sysctl_conf(ipv6=ipv6))
    expected = {"net.ipv4.ip_forward": "1"}
    if ipv6:
        expected["net.ipv6.conf.all.forwarding"] = "1"
    assert keys == expected
    assert all(k.startswith("net.") for k in keys)  # never kernel.* or vm.*: the lab applies it in netns


def chains(ruleset: str) -> dict[str, list[str]]:
    """Chain name -> its statement lines (hook line first)."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    for line in ruleset.splitlines():
        s = line.strip()
        m = re.fullmatch(r"chain (\S+) \{", s)
        if m:
            current = m.group(1)
            out[current] = []
        elif s == "}":
            current = None
        elif current is not None and s:
            out[current].append(s)
    return out


def test_ruleset_replaces_its_table_atomically_before_defining_it() -> None:
    text = nft_ruleset(node_plan("n1", 1))
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[:4] == [
        'define WG = "wg0"',
        f"table {NFT_TABLE} {{}}",
        f"delete table {NFT_TABLE}",
        f"table {NFT_TABLE} {{",
    ]
    assert text.count(f"table {NFT_TABLE} {{\n") == 1  # one definition, after the delete
    assert "\t" not in text  # tabs would turn the YAML block into an escaped string


def test_forward_chain_clamps_mss_both_ways_and_accepts_wg0() -> None:
    forward = chains(nft_ruleset(node_plan("n1", 1)))["forward"]
    assert forward[0] == "type filter hook forward priority mangle; policy accept;"
    clamps = [r for r in forward if "maxseg size set rt mtu" in r]
    assert sorted(r.split()[0] for r in clamps) == ["iifname", "oifname"]
    assert all("tcp flags syn" in r for r in clamps)
    assert "iifname $WG accept" in forward
    assert "oifname $WG accept" in forward  # not a gateway: its uplink faces only its peers
    assert not any("drop" in r for r in forward)


def test_no_nat_chain_without_masquerade_or_gateway() -> None:
    text = nft_ruleset(node_plan("n1", 1, subnets=["10.0.4.0/24"]))
    assert set(chains(text)) == {"forward"}
    assert "masquerade" not in text
    assert "nat" not in text


def masquerade_rules(node: NodePlan) -> list[str]:
    return [r for r in chains(nft_ruleset(node)).get("postrouting", []) if "masquerade" in r]


def test_masquerade_only_into_the_planned_subnets() -> None:
    node = node_plan(
        "n1", 1, subnets=["10.0.4.0/24", "10.0.5.0/24"], masquerade=["10.0.4.0/24", "fd00:4::/64"]
    )
    assert masquerade_rules(node) == [
        "iifname $WG ip daddr { 10.0.4.0/24 } masquerade",
        "iifname $WG ip6 daddr { fd00:4::/64 } masquerade",
    ]
    assert (
        chains(nft_ruleset(node))["postrouting"][0]
        == "type nat hook postrouting priority srcnat; policy accept;"
    )


def test_gateway_masquerades_everything_leaving_by_another_interface() -> None:
    assert masquerade_rules(node_plan("gw", 3, gateway=True)) == ["iifname $WG oifname != $WG masquerade"]


@pytest.mark.parametrize(
    ("own", "expected"),
    [
        (
            ["10.0.7.0/24"],
            [
                "iifname $WG oifname != $WG ip daddr != { 10.0.7.0/24 } masquerade",
                "iifname $WG oifname != $WG meta nfproto ipv6 masquerade",
            ],
        ),
        (
            ["fd00:7::/64"],
            [
                "iifname $WG oifname != $WG meta nfproto ipv4 masquerade",
                "iifname $WG oifname != $WG ip6 daddr != { fd00:7::/64 } masquerade",
            ],
        ),
        (
            ["10.0.7.0/24", "10.0.8.0/24", "fd00:7::/64"],
            [
                "iifname $WG oifname != $WG ip daddr != { 10.0.7.0/24, 10.0.8.0/24 } masquerade",
                "iifname $WG oifname != $WG ip6 daddr != { fd00:7::/64 } masquerade",
            ],
        ),
    ],
)
def test_a_gateway_only_routes_into_its_own_subnets(own: list[str], expected: list[str]) -> None:
    """gateway + subnets without masquerade: the LAN sees mesh addresses, the internet the gateway's."""
    assert masquerade_rules(node_plan("gw", 3, gateway=True, own_subnets=own)) == expected


def test_a_gateway_with_a_jumpbox_subnet_masquerades_into_it_and_out() -> None:
    node = node_plan("gw", 3, gateway=True, own_subnets=["10.0.7.0/24"], masquerade=["10.0.7.0/24"])
    assert masquerade_rules(node) == [
        "iifname $WG ip daddr { 10.0.7.0/24 } masquerade",
        "iifname $WG oifname != $WG ip daddr != { 10.0.7.0/24 } masquerade",
        "iifname $WG oifname != $WG meta nfproto ipv6 masquerade",
    ]


def test_a_gateway_forwards_into_the_mesh_only_replies_and_its_own_subnets() -> None:
    gateway = node_plan("gw", 3, gateway=True, own_subnets=["10.0.7.0/24", "fd00:7::/64"])
    forward = chains(nft_ruleset(gateway))["forward"]
    into = [r for r in forward if r.startswith("oifname $WG") and "maxseg" not in r]
    assert into == [
        "oifname $WG ct state established,related accept",
        "oifname $WG ip saddr { 10.0.7.0/24 } accept",
        "oifname $WG ip6 saddr { fd00:7::/64 } accept",
        f'oifname $WG counter drop comment "{INTO_MESH_DROP}"',
    ]
    assert forward.index("iifname $WG accept") < forward.index(into[-1])  # hub traffic (wg0 -> wg0) passes
    plain_gateway = chains(nft_ruleset(node_plan("gw", 3, gateway=True)))["forward"]
    assert [r for r in plain_gateway if r.startswith("oifname $WG") and "maxseg" not in r] == [
        "oifname $WG ct state established,related accept",
        f'oifname $WG counter drop comment "{INTO_MESH_DROP}"',
    ]


def test_only_the_nodes_that_plan_nat_get_it() -> None:
    plan = mesh_plan(masquerade_first=True, gateway_last=True)
    rules = {n.name: masquerade_rules(n) for n in plan.nodes}
    assert rules == {
        "n1": ["iifname $WG ip daddr { 10.0.4.0/24 } masquerade"],
        "n2": [],
        "n3": ["iifname $WG oifname != $WG masquerade"],
    }


def test_chain_names_avoid_nft_reserved_words() -> None:
    node = node_plan("n1", 1, masquerade=["10.0.4.0/24"], gateway=True)
    names = set(chains(nft_ruleset(node)))
    assert names == {"forward", "postrouting"}
    assert "fwd" not in names


def test_hooks_load_the_file_and_remove_the_table_idempotently() -> None:
    assert nft_load_command() == f"nft -f {NFT_PATH}"
    assert nft_remove_command() == f"nft 'add table {NFT_TABLE}; delete table {NFT_TABLE}'"


# ----------------------------------------------------------------------------- metadata guard


def test_metadata_guard_rejects_non_root_sockets_and_every_forwarded_packet() -> None:
    guard = chains(metadata_guard_ruleset())
    assert set(guard) == {"output", "forward"}
    dns = "meta l4proto { tcp, udp } th dport 53 accept"  # GCP's resolver lives at that address
    assert guard["output"] == [
        "type filter hook output priority filter; policy accept;",
        dns,
        f'udp dport 123 accept comment "{METADATA_NTP_COMMENT}"',  # GCP's time source, for timesyncd/chrony
        "ip daddr 169.254.169.254 meta skuid != 0 reject",
        "ip6 daddr fd00:ec2::254 meta skuid != 0 reject",
    ]
    assert guard["forward"] == [
        "type filter hook forward priority filter; policy accept;",
        dns,
        "ip daddr 169.254.169.254 reject",
        "ip6 daddr fd00:ec2::254 reject",
    ]


def test_metadata_guard_is_its_own_table_untouched_by_wg_quick() -> None:
    text = metadata_guard_ruleset()
    assert METADATA_TABLE != NFT_TABLE
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[:3] == [
        f"table {METADATA_TABLE} {{}}",
        f"delete table {METADATA_TABLE}",
        f"table {METADATA_TABLE} {{",
    ]
    assert METADATA_TABLE not in nft_remove_command()  # wg-quick PostDown drops only `inet wgmesh`
    assert "\t" not in text


def test_metadata_guard_unit_loads_the_file_before_the_network_on_every_boot() -> None:
    unit = metadata_guard_unit()
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for line in unit.splitlines():
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
        elif "=" in line:
            key, value = line.split("=", 1)
            sections[current][key] = value
    assert sections["Unit"]["DefaultDependencies"] == "no"
    assert "network-pre.target" in sections["Unit"]["Before"].split()
    assert sections["Unit"]["Wants"] == "network-pre.target"
    assert sections["Service"] == {
        "Type": "oneshot",
        "RemainAfterExit": "yes",
        "ExecStart": f"/usr/sbin/nft -f {METADATA_GUARD_PATH}",
    }  # no ExecStop: stopping the unit does not lift the guard
    assert sections["Install"] == {"WantedBy": "sysinit.target"}


def test_first_boot_loads_the_guard_now_and_enables_it_for_later_boots() -> None:
    assert metadata_guard_load_step() == ("nft", "-f", METADATA_GUARD_PATH)
    assert metadata_guard_enable_step() == ("systemctl", "enable", METADATA_GUARD_UNIT)


def require_root_and(tool: str) -> str:
    """Root for a throwaway network namespace; outside CI a missing piece skips, under CI=true fails."""
    path = shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    problem = "needs root (unshare --net)" if os.geteuid() != 0 else None
    problem = problem or (None if path else f"{tool} is not installed (scripts/install-debs)")
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {problem}")
        pytest.skip(problem)
    assert path is not None
    return path


def in_new_netns(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unshare", "--net", "sh", "-eu", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.netns
def test_metadata_guard_passes_nft_check_and_loads_twice_without_duplicates(tmp_path: Path) -> None:
    nft = require_root_and("nft")
    ruleset = tmp_path / "guard.nft"
    ruleset.write_text(metadata_guard_ruleset())
    assert in_new_netns(f"{nft} -c -f {ruleset}").returncode == 0
    loaded = in_new_netns(f"{nft} -f {ruleset}; {nft} -f {ruleset}; {nft} list ruleset")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.count("skuid != 0 reject") == 2  # v4 + v6, once each after two loads
    broken = tmp_path / "broken.nft"
    broken.write_text(metadata_guard_ruleset().replace("skuid != 0", "skuid != nosuchuser0"))
    assert in_new_netns(f"{nft} -c -f {broken}").returncode != 0  # the check is a real gate
