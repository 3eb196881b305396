"""`make client NAME=laptop STACK=dev`: a roaming client's wg conf as a file and a QR code.

The conf holds the client's private key, so it comes from where the key lives:
- by default the deployed stack's secret `clients` output (`pulumi stack output clients
  --show-secrets --json --stack STACK`), the keys every node already knows;
- with `--render DIR`, a `make render` output (fresh offline keys: for the lab or a dry run).

It writes <out>/<name>.conf and <out>/<name>.png (0600, directory 0700) and prints the QR code
on the terminal for a phone's WireGuard app to scan. The conf text itself is never printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import segno

from tools.secretfiles import open_private, private_dir, private_umask, write_private

REPO = Path(__file__).resolve().parent.parent
PNG_SCALE = 6  # pixels per module: about 300 px for a typical conf, easy to scan off a screen


class ClientError(Exception):
    """A one-line reason `make client` cannot produce the conf (never holds key material)."""


def from_render(render_dir: Path, name: str) -> str:
    path = render_dir / "clients" / f"{name}.conf"
    if not path.is_file():
        found = sorted(p.stem for p in (render_dir / "clients").glob("*.conf"))
        listed = ", ".join(found) or "none"
        raise ClientError(f"{path}: no such client conf (clients in {render_dir}: {listed})")
    return path.read_text(encoding="utf-8")


def from_stack(stack: str, name: str, pulumi: str = "pulumi") -> str:
    """The client's conf from the stack's secret `clients` output, via the Pulumi CLI."""
    exe = shutil.which(pulumi)
    if exe is None:
        raise ClientError(
            f"the Pulumi CLI ({pulumi}) is not on PATH: install it and log in to the stack's backend, "
            "or use an offline render: make client NAME=<name> RENDER=build/render/<stack>"
        )
    argv = [exe, "stack", "output", "clients", "--show-secrets", "--json", "--stack", stack]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        # Pulumi's own message (no secret in it: it failed before printing any output).
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise ClientError(f"pulumi stack output clients --stack {stack} failed: {last}")
    try:
        clients = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise ClientError(f"pulumi stack output clients --stack {stack}: not JSON") from None
    if not isinstance(clients, dict) or not all(isinstance(v, str) for v in clients.values()):
        raise ClientError(f"stack {stack}: the clients output is not a map of name to conf")
    if name not in clients:
        names = ", ".join(sorted(clients)) or "none"
        raise ClientError(f"stack {stack} has no client {name!r} (wgmesh:clients: {names})")
    conf: str = clients[name]
    return conf


def qr_code(conf: str) -> segno.QRCode:
    """A regular (not micro) QR code at level L, like `qrencode`: the smallest symbol for a screen
    (segno raises the level when that costs no extra size)."""
    return segno.make_qr(conf, error="l")


def write_outputs(conf: str, name: str, out: Path, terminal: TextIO | None) -> tuple[Path, Path]:
    qr = qr_code(conf)
    with private_umask():
        private_dir(out)
        conf_path, png_path = out / f"{name}.conf", out / f"{name}.png"
        write_private(conf_path, conf)
        with open_private(png_path) as f:
            qr.save(f, kind="png", scale=PNG_SCALE, border=4)
    if terminal is not None:
        qr.terminal(out=terminal, compact=True)
    return conf_path, png_path


def main(argv: Sequence[str] | None = None) -> int:
    summary = (__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m tools.client", description=summary)
    parser.add_argument("--name", required=True, help="the client's name in wgmesh:clients")
    parser.add_argument("--stack", required=True, help="the Pulumi stack (for the secret clients output)")
    parser.add_argument("--render", type=Path, help="read a `make render` output instead of the stack")
    parser.add_argument("--out", type=Path, help="where to write <name>.conf and <name>.png")
    parser.add_argument("--no-terminal", action="store_true", help="do not print the QR code")
    args = parser.parse_args(argv)
    out = args.out or REPO / "build" / "clients" / Path(args.stack).name
    try:
        conf = from_render(args.render, args.name) if args.render else from_stack(args.stack, args.name)
        conf_path, png_path = write_outputs(conf, args.name, out, None if args.no_terminal else sys.stdout)
    except ClientError as e:
        print(f"client: {e}", file=sys.stderr)
        return 1
    print(f"{args.name}: wrote {conf_path} and {png_path} (0600; they hold the client's private key)")
    print(f"scan the code with the WireGuard app, or: wg-quick up {conf_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
