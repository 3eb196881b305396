"""`make client`: the conf and QR code a phone scans, decoded by a real QR reader (zbarimg).

The conf comes from a `make render` output (offline) or from the stack's secret `clients`
output through the Pulumi CLI; the CLI cannot run here, so a stand-in `pulumi` on PATH plays
its documented `stack output --json` role and records how it was called.
"""

from __future__ import annotations

import io
import json
import stat
import subprocess
from pathlib import Path

import pytest

from tools import client
from tools.render import main as render_main

from .artifact_helpers import need_tool


@pytest.fixture(scope="module")
def dev_render(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("client") / "render"
    assert render_main(["--stack", "dev", "--out", str(out)]) == 0
    return out


def private_key_of(conf: str) -> str:
    return next(line.split("=", 1)[1].strip() for line in conf.splitlines() if line.startswith("PrivateKey"))


def test_png_decodes_to_the_rendered_conf_and_files_are_private(
    dev_render: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zbarimg = need_tool("zbarimg")
    out = tmp_path / "out"
    rc = client.main(["--name", "laptop", "--stack", "dev", "--render", str(dev_render), "--out", str(out)])
    assert rc == 0
    rendered = (dev_render / "clients" / "laptop.conf").read_text()
    assert (out / "laptop.conf").read_text() == rendered
    for p in (out / "laptop.conf", out / "laptop.png"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    decoded = subprocess.run(
        [zbarimg, "--raw", "-q", "-Sbinary", str(out / "laptop.png")], capture_output=True, check=True
    ).stdout.decode()
    assert decoded.rstrip("\n") == rendered.rstrip("\n")
    printed = capsys.readouterr()
    assert private_key_of(rendered) not in printed.out + printed.err  # the QR, paths; never the text
    assert "█" in printed.out or "▀" in printed.out  # the terminal QR code


def test_terminal_code_is_the_same_code(dev_render: Path, tmp_path: Path) -> None:
    conf = client.from_render(dev_render, "laptop")
    term = io.StringIO()
    client.write_outputs(conf, "laptop", tmp_path / "o", term)
    expected = io.StringIO()
    client.qr_code(conf).terminal(out=expected, compact=True)
    assert term.getvalue() == expected.getvalue() and len(term.getvalue().splitlines()) > 20


def test_unknown_client_in_a_render_names_the_ones_there(dev_render: Path) -> None:
    with pytest.raises(client.ClientError, match=r"clients in .*: laptop\)$"):
        client.from_render(dev_render, "phone")


def fake_pulumi(tmp_path: Path, stdout: str, rc: int = 0, stderr: str = "") -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "pulumi"
    exe.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" > {tmp_path}/argv\n'
        f"cat <<'EOF'\n{stdout}\nEOF\n"
        f"echo {json.dumps(stderr)} >&2\n"
        f"exit {rc}\n"
    )
    exe.chmod(0o755)
    return exe


def test_stack_output_is_read_with_show_secrets_for_the_named_stack(dev_render: Path, tmp_path: Path) -> None:
    conf = client.from_render(dev_render, "laptop")
    exe = fake_pulumi(tmp_path, json.dumps({"laptop": conf, "phone": "[Interface]\n"}))
    assert client.from_stack("prod", "laptop", pulumi=str(exe)) == conf
    argv = (tmp_path / "argv").read_text().split()
    assert argv == ["stack", "output", "clients", "--show-secrets", "--json", "--stack", "prod"]


def test_stack_errors_are_one_line_and_name_what_to_do(tmp_path: Path) -> None:
    exe = fake_pulumi(tmp_path, "", rc=255, stderr="error: no stack named 'prod' found")
    with pytest.raises(client.ClientError, match=r"failed: error: no stack named 'prod' found$"):
        client.from_stack("prod", "laptop", pulumi=str(exe))
    with pytest.raises(client.ClientError, match="RENDER=build/render/<stack>"):
        client.from_stack("prod", "laptop", pulumi=str(tmp_path / "no-such-pulumi"))


def test_stack_without_that_client_lists_its_clients(tmp_path: Path) -> None:
    exe = fake_pulumi(tmp_path, json.dumps({"phone": "[Interface]\n"}))
    with pytest.raises(client.ClientError, match=r"no client 'laptop' \(wgmesh:clients: phone\)"):
        client.from_stack("prod", "laptop", pulumi=str(exe))
