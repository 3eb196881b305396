"""The nft table and sysctl file work for real, inside throwaway network namespaces only.

`unshare --net` gives each check a fresh namespace with its own ruleset and net.* sysctls,
so nothing here can touch the host's firewall or settings.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from cloudinit.cloudconfig import INSTALL_STEP
from cloudinit.host import NFT_PATH, SYSCTL_PATH

from .artifact_helpers import Rendered, need_root, need_tool, run
from .wgconf import parse_wg_conf

pytestmark = pytest.mark.netns  # root and throwaway namespaces


def netns_tool(name: str) -> str:
    """Root first (so a non-root run skips for that reason), then the tool and unshare."""
    need_root()
    need_tool("unshare")
    return need_tool(name)


def in_new_netns(script: str) -> tuple[int, str]:
    result = run([need_tool("unshare"), "--net", "bash", "-euo", "pipefail", "-c", script])
    return result.returncode, result.stdout + result.stderr


def extract(rendered: Rendered, node: str, path: str, tmp_path: Path) -> Path:
    out = tmp_path / node / Path(path).name
    out.parent.mkdir(exist_ok=True)
    out.write_text(rendered.written_file(node, path))
    return out


def test_every_ruleset_passes_nft_check(rendered: Rendered, tmp_path: Path) -> None:
    nft = netns_tool("nft")
    for node in rendered.plan.nodes:
        ruleset = extract(rendered, node.name, NFT_PATH, tmp_path)
        code, output = in_new_netns(f"{nft} -c -f {shlex.quote(str(ruleset))}")
        assert code == 0, f"{node.name}: {output}"


def test_wg_quick_hooks_load_replace_and_remove_the_table(rendered: Rendered, tmp_path: Path) -> None:
    """Run the PostUp/PostDown lines as wg-quick does (bash eval), twice each, in a new netns."""
    netns_tool("nft")
    for node in rendered.plan.nodes:
        ruleset = extract(rendered, node.name, NFT_PATH, tmp_path)
        interface = parse_wg_conf(rendered.wg_conf(node.name))[0]
        (post_up,) = interface.values["PostUp"]
        (post_down,) = interface.values["PostDown"]
        assert NFT_PATH in post_up
        post_up = post_up.replace(NFT_PATH, shlex.quote(str(ruleset)))
        script = f"""
            {post_up}
            {post_up}
            nft list ruleset
            echo ---
            {post_down}
            {post_down}
            nft list ruleset
        """
        code, output = in_new_netns(script)
        assert code == 0, f"{node.name}: {output}"
        loaded, after_down = output.split("---\n")
        assert after_down.strip() == "", f"{node.name}: PostDown left rules behind"
        assert loaded.count("table inet wgmesh") == 1
        assert loaded.count("maxseg size set rt mtu") == 2  # loading twice replaced, not appended
        masquerades = [line.strip() for line in loaded.splitlines() if "masquerade" in line]
        expected = len({n.version for n in node.masquerade}) + int(node.gateway)  # one rule per family
        assert len(masquerades) == expected, f"{node.name}: {masquerades}"
        for net in node.masquerade:
            assert any(str(net) in m for m in masquerades), f"{node.name}: no masquerade into {net}"


def test_sysctl_file_applies_inside_a_namespace(rendered: Rendered, tmp_path: Path) -> None:
    sysctl = netns_tool("sysctl")
    dual_stack = rendered.plan.spec.mesh.cidr6 is not None
    for node in rendered.plan.nodes:
        conf = extract(rendered, node.name, SYSCTL_PATH, tmp_path)
        script = f"""
            {sysctl} -q -p {shlex.quote(str(conf))}
            {sysctl} -n net.ipv4.ip_forward
            {sysctl} -n net.ipv6.conf.all.forwarding
        """
        code, output = in_new_netns(script)
        assert code == 0, f"{node.name}: {output}"
        assert output.split() == ["1", "1" if dual_stack else "0"], node.name


def test_install_step_succeeds_offline_when_the_tools_are_present() -> None:
    """The lab images have no mirror: with wg and nft present the step must not reach for apt."""
    netns_tool("wg")
    netns_tool("nft")
    code, output = in_new_netns(shlex.join(INSTALL_STEP))
    assert code == 0, output
    assert "apt" not in output.lower()


def test_nft_check_gate_rejects_bad_rulesets(rendered_stacks: dict[str, Rendered], tmp_path: Path) -> None:
    """The check is real: `fwd` (an nft keyword) as a chain name makes `nft -c` fail."""
    nft = netns_tool("nft")
    r = rendered_stacks["dev"]
    good = extract(r, r.plan.nodes[0].name, NFT_PATH, tmp_path)
    bad = tmp_path / "bad.nft"
    bad.write_text(good.read_text().replace("chain forward {", "chain fwd {"))
    assert bad.read_text() != good.read_text()
    assert in_new_netns(f"{nft} -c -f {shlex.quote(str(good))}")[0] == 0
    assert in_new_netns(f"{nft} -c -f {shlex.quote(str(bad))}")[0] != 0
