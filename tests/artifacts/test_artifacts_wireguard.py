"""Every rendered wg conf is accepted by the real wg-quick and wg tools."""

from __future__ import annotations

from pathlib import Path

import pytest

from .artifact_helpers import Rendered, is_wg_key, need_root, need_tool, run
from .wgconf import parse_wg_conf

WG_QUICK_ONLY = {"Address", "DNS", "MTU", "Table", "PreUp", "PostUp", "PreDown", "PostDown", "SaveConfig"}


def conf_file(tmp_path: Path, member: str, text: str) -> Path:
    """wg-quick takes the interface name from the file name (at most 15 chars): <dir>/wg0.conf."""
    d = tmp_path / member
    d.mkdir(mode=0o700)
    path = d / "wg0.conf"
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.mark.netns
def test_every_conf_survives_wg_quick_strip(rendered: Rendered, tmp_path: Path) -> None:
    need_root()  # wg-quick re-runs itself through sudo when not root, even for `strip`
    wg_quick = need_tool("wg-quick")
    for member in rendered.members():
        text = rendered.wg_conf(member)
        result = run([wg_quick, "strip", str(conf_file(tmp_path, member, text))])
        assert result.returncode == 0, f"{member}: {result.stderr}"
        stripped = parse_wg_conf(result.stdout)
        original = parse_wg_conf(text)
        assert [s.kind for s in stripped] == [s.kind for s in original], member
        assert not WG_QUICK_ONLY & set(stripped[0].values), member
        assert stripped[1:] == original[1:], member  # peers reach `wg setconf` untouched


def test_private_keys_are_accepted_by_wg_and_match_the_manifest(rendered: Rendered) -> None:
    wg = need_tool("wg")
    published = {m.name: m.public_key for m in rendered.manifest.members()}
    for member in rendered.members():
        interface = parse_wg_conf(rendered.wg_conf(member))[0]
        result = run([wg, "pubkey"], stdin=interface.one("PrivateKey") + "\n")
        assert result.returncode == 0, f"{member}: wg pubkey refused the private key"
        assert result.stdout.strip() == published[member], member


def test_every_key_value_is_32_bytes_of_base64(rendered: Rendered) -> None:
    for member in rendered.members():
        for section in parse_wg_conf(rendered.wg_conf(member)):
            for key in ("PrivateKey", "PublicKey", "PresharedKey"):
                for value in section.values.get(key, []):
                    assert is_wg_key(value), f"{member} {section.kind} {key}"
