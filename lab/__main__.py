"""`python -m lab up|down|check`: the local lab's command line (`make lab`, `make lab-down`).

python -m lab up --driver netns --stack lab        # render, boot, print health, stay up
python -m lab up --driver netns --render-dir DIR   # boot an existing `make render` output
python -m lab up --stack lab-home --installer      # external nodes run install.sh, not cloud-init
python -m lab check [--mtu-demo]                   # re-run the checks on the running netns lab
python -m lab down --driver netns
python -m lab up --driver vm --stack lab           # the same user-data in QEMU VMs (lab.vm)
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from lab.netns import driver


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="render a stack and boot it")
    up.add_argument("--driver", choices=("netns", "vm"), default="netns")
    up.add_argument("--stack", default="lab", help="stack name (stacks/Pulumi.<name>.yaml) or path")
    up.add_argument("--render-dir", type=Path, help="boot this existing render output instead of rendering")
    up.add_argument("--mtu-demo", action="store_true", help="netns: also run the planned-vs-1420 MTU trial")
    up.add_argument(
        "--installer",
        action="store_true",
        help="netns: `cloud: external` nodes run their install.sh instead of cloud-init",
    )
    down = sub.add_parser("down", help="remove everything `up` created")
    down.add_argument("--driver", choices=("netns", "vm"), default="netns")
    check = sub.add_parser("check", help="re-run the health checks on the running netns lab")
    check.add_argument("--mtu-demo", action="store_true")
    return parser


def _vm() -> ModuleType:
    """lab.vm, imported only when asked for (it brings the image builder with it)."""
    return importlib.import_module("lab.vm.driver")


def vm_up(stack: str, render_dir: Path | None) -> int:
    """Render into a private temporary dir unless given one; the VM seeds keep what they need."""
    if render_dir is not None:
        return int(_vm().up(stack, render_dir))
    tmp = Path(tempfile.mkdtemp(prefix="wgmesh-vm-render-"))
    try:
        driver.render(stack, tmp / "render")
        return int(_vm().up(stack, tmp / "render"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        return driver.check(mtu_demo=args.mtu_demo)
    if args.driver == "vm":
        return int(_vm().down()) if args.command == "down" else vm_up(args.stack, args.render_dir)
    if args.command == "down":
        return driver.down()
    return driver.up(args.stack, args.render_dir, mtu_demo=args.mtu_demo, installer=args.installer)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before `up` took over (its own Ctrl-C handling cleans up)
        sys.exit(130)
