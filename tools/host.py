"""`make host NAME=home STACK=dev`: a `cloud: external` host's installer and #cloud-config as files.

ext (issue 15). Both hold the host's private key, so they come from where the key lives:
- by default the deployed stack's secret `externalHosts` output (`pulumi stack output
  externalHosts --show-secrets --json --stack STACK`), the keys its peers already know;
- with `--render DIR`, a `make render` output (fresh offline keys: for the lab or a dry run).

It writes <out>/<name>-install.sh and <out>/<name>.user-data (0600, directory 0700) and prints
where, and how to run the installer on the host. Their text is never printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from cloudinit.installer import INSTALLER_NAME
from tools.secretfiles import private_dir, private_umask, write_private

REPO = Path(__file__).resolve().parent.parent
OUTPUT = "externalHosts"


class HostError(Exception):
    """A one-line reason `make host` cannot produce the files (never holds key material)."""


def from_render(render_dir: Path, name: str) -> dict[str, str]:
    installer = render_dir / name / INSTALLER_NAME
    if not installer.is_file():
        found = sorted(p.parent.name for p in render_dir.glob(f"*/{INSTALLER_NAME}"))
        raise HostError(
            f"{installer}: no such installer (external nodes in {render_dir}: {', '.join(found) or 'none'})"
        )
    user_data = render_dir / name / "user-data"
    return {
        "installer": installer.read_text(encoding="utf-8"),
        "cloudConfig": user_data.read_text(encoding="utf-8"),
    }


def from_stack(stack: str, name: str, pulumi: str = "pulumi") -> dict[str, str]:
    """The host's two forms from the stack's secret `externalHosts` output, via the Pulumi CLI."""
    exe = shutil.which(pulumi)
    if exe is None:
        raise HostError(
            f"the Pulumi CLI ({pulumi}) is not on PATH: install it and log in to the stack's backend, "
            "or use an offline render: make host NAME=<name> RENDER=build/render/<stack>"
        )
    argv = [exe, "stack", "output", OUTPUT, "--show-secrets", "--json", "--stack", stack]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]  # failed before any output
        raise HostError(f"pulumi stack output {OUTPUT} --stack {stack} failed: {last}")
    try:
        hosts = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise HostError(f"pulumi stack output {OUTPUT} --stack {stack}: not JSON") from None
    if not isinstance(hosts, dict):
        raise HostError(f"stack {stack}: the {OUTPUT} output is not a map of name to forms")
    forms = hosts.get(name)
    if not isinstance(forms, dict) or not all(
        isinstance(forms.get(k), str) for k in ("installer", "cloudConfig")
    ):
        names = ", ".join(sorted(hosts)) or "none"
        raise HostError(f"stack {stack} has no external node {name!r} (cloud: external nodes: {names})")
    return {"installer": forms["installer"], "cloudConfig": forms["cloudConfig"]}


def write_outputs(forms: dict[str, str], name: str, out: Path) -> tuple[Path, Path]:
    installer, user_data = out / f"{name}-install.sh", out / f"{name}.user-data"
    with private_umask():
        private_dir(out)
        write_private(installer, forms["installer"])
        write_private(user_data, forms["cloudConfig"])
    return installer, user_data


def main(argv: Sequence[str] | None = None) -> int:
    summary = (__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m tools.host", description=summary)
    parser.add_argument("--name", required=True, help="the node's name in wgmesh:nodes (cloud: external)")
    parser.add_argument(
        "--stack", required=True, help="the Pulumi stack (for the secret externalHosts output)"
    )
    parser.add_argument("--render", type=Path, help="read a `make render` output instead of the stack")
    parser.add_argument("--out", type=Path, help="where to write <name>-install.sh and <name>.user-data")
    args = parser.parse_args(argv)
    out = args.out or REPO / "build" / "hosts" / Path(args.stack).name
    try:
        forms = from_render(args.render, args.name) if args.render else from_stack(args.stack, args.name)
        installer, user_data = write_outputs(forms, args.name, out)
    except HostError as e:
        print(f"host: {e}", file=sys.stderr)
        return 1
    print(f"{args.name}: wrote {installer} and {user_data} (0600; they hold the host's private key)")
    print(
        f"copy {installer.name} to the host and run: sudo sh {installer.name}"
        f"  (or boot it with {user_data.name})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
