"""Quota budget of full meshes with PSKs over three clouds, next to each default quota (prints figures).

    python -m bench.quota [N ...]          (default 10 60 150)
    python -m bench.quota --markdown       the table in docs/quotas.md (10, 50, 150 nodes)

The stack is tests/program/synthetic_stacks.three_clouds(N): nodes round-robin over AWS
(eu-central-1, us-east-1, eu-west-1), GCP (europe-west3, us-central1) and Hetzner (nbg1,
fsn1, hel1), default sizes, SSH from one admin CIDR, two roaming clients. Needs come from the
planner the program runs at preview (components/quota_plan.py); for a size that exceeds a
default, the program itself runs under mocks (a new account: Service Quotas answers the
defaults) and its refusal is printed exactly as `pulumi preview` shows it. No asserts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from components.quota_catalog import ALL_QUOTAS, Quota
from components.quota_plan import Need, budget, quota_needs
from mesh.plan import build_plan
from mesh.spec import parse

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO / "tests" / "program"
SIZES = (10, 60, 150)
TABLE_SIZES = (10, 50, 150)
CLOUD_NAMES = {
    "aws": "AWS (per region)",
    "gcp": "GCP (per project; regional rows per region)",
    "hcloud": "Hetzner",
}


def _harness(name: str) -> Any:
    if str(HARNESS) not in sys.path:
        sys.path.insert(0, str(HARNESS))
    return importlib.import_module(name)


def synthetic(n: int) -> dict[str, str]:
    """The N-node stack config as Pulumi hands it to the program."""
    config: dict[str, str] = _harness("synthetic_stacks").three_clouds(n)
    return config


def needs_of(n: int) -> list[Need]:
    raw = {key.removeprefix("wgmesh:"): json.loads(value) for key, value in synthetic(n).items()}
    return quota_needs(build_plan(parse(raw)))


def preview_refusal(n: int) -> str | None:
    """What `pulumi preview` says for the N-node stack on a new account (None: accepted)."""
    run = _harness("wgmesh_mocks").run_program(f"quota{n}", synthetic(n))
    return None if run.error is None else str(run.error)


def report(n: int) -> list[str]:
    needs = needs_of(n)
    result = budget(needs, {}, {})
    lines = [f"{n} nodes, full mesh with PSKs over three clouds:"]
    lines.append(f"  {'cloud':6} {'region':13} {'quota':74} {'needed':>6} {'default':>7}")
    for need in needs:
        default = "-" if need.quota.default is None else str(need.quota.default)
        over = need.quota.default is not None and need.count > need.quota.default
        tail = ("  OVER" if over else "") + (f"  ({need.note})" if need.note else "")
        where = f"{need.quota.cloud:6} {need.region or '-':13}"
        lines.append(f"  {where} {need.quota.name:74} {need.count:>6} {default:>7}{tail}")
    if not result.problems:
        lines.append("  within every default quota: preview accepts it")
        return lines
    lines.append(f"  {len(result.problems)} default quotas exceeded; pulumi preview refuses with:")
    message = preview_refusal(n)
    lines += [f"    {line}" for line in (message or "(accepted?!)").splitlines()]
    return lines


def markdown_table(sizes: Sequence[int] = TABLE_SIZES) -> str:
    """Markdown: per cloud, each quota's default and what each mesh size needs (largest region)."""
    needs = {n: needs_of(n) for n in sizes}
    header = "| Quota | Default | " + " | ".join(f"{n} nodes" for n in sizes) + " |"
    rule = "|---|---:|" + "---:|" * len(sizes)
    out: list[str] = []
    for cloud in ("aws", "gcp", "hcloud"):
        out += [f"**{CLOUD_NAMES[cloud]}**", "", header, rule]
        for quota in (q for q in ALL_QUOTAS if q.cloud == cloud):
            cells = [_cell(quota, needs[n]) for n in sizes]
            default = "none published" if quota.default is None else str(quota.default)
            out.append(f"| {quota.name} (`{quota.key}`) | {default} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _cell(quota: Quota, needs: list[Need]) -> str:
    """The largest need of `quota` over its regions; bold when it exceeds the default."""
    counts = [n.count for n in needs if n.quota == quota]
    most = max(counts, default=0)
    over = quota.default is not None and most > quota.default
    return f"**{most}**" if over else str(most)


def main(argv: Sequence[str] | None = None) -> int:
    summary = (__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m bench.quota", description=summary)
    parser.add_argument("nodes", nargs="*", type=int, default=list(SIZES))
    parser.add_argument("--markdown", action="store_true", help="print the docs/quotas.md table instead")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table(), end="")
        return 0
    print("quota budget per cloud and region next to each default quota (only what this stack creates):")
    for n in args.nodes:
        print("\n".join(report(n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
