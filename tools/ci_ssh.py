"""CI: let this runner reach the nodes' SSH for one `pulumi up` (stacks with liveUpdates only).

GitHub-hosted runners have no fixed address, and with `wgmesh:mesh.liveUpdates` the `up`
connects to every node over SSH, which is open to `adminCidrs` only. The workflow
(.github/workflows/preview.yml) finds the runner's public IPv4, asks this tool whether the stack
has live updates and at which index of `adminCidrs` to add `<ip>/32`, sets it with
`pulumi config set --path` in the job's throwaway checkout (never committed), runs `up`, then
restores the stack file and runs `up` again (`if: always()`) so SSH closes.

Prints shell assignments for `eval`: `live=true|false`, `index=<n>`, `cidr=<ip>/32`.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence

from mesh.errors import ConfigError
from mesh.stackfile import load_config


def plan(stack: str, runner_ip: str) -> dict[str, str]:
    """`live`, and where the runner's /32 goes: the next index of `wgmesh:mesh.adminCidrs`."""
    ip = ipaddress.IPv4Address(runner_ip.strip())
    mesh = load_config(stack).get("mesh") or {}
    live = mesh.get("liveUpdates") is True
    cidrs = mesh.get("adminCidrs") or []
    return {"live": "true" if live else "false", "index": str(len(cidrs)), "cidr": f"{ip}/32"}


def main(argv: Sequence[str] | None = None) -> int:
    summary = (__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m tools.ci_ssh", description=summary)
    parser.add_argument("--stack", required=True, help="stack name (stacks/Pulumi.<stack>.yaml) or file")
    parser.add_argument("--runner-ip", required=True, help="this runner's public IPv4")
    args = parser.parse_args(argv)
    try:
        values = plan(args.stack, args.runner_ip)
    except ValueError as e:  # a bad address, or a ConfigError (a ValueError too)
        text = "; ".join(str(p) for p in e.problems) if isinstance(e, ConfigError) else str(e)
        print(f"ci_ssh: {text}", file=sys.stderr)
        return 1
    for key, value in values.items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
