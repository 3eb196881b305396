"""docs/changes.md's change table: what `pulumi up` does for each stack change, measured under mocks.

    python -m bench.changes            print the table (markdown)
    python -m bench.changes --write    replace the docs/changes.md block between <!-- change-table --> markers
    python -m bench.changes --sets     each row's measured sets and node effects (to update the
                                       test's TODAY after a behaviour change)
    make change-table                  the same as --write

Each row of tests/program/change_rows.py runs the real program for its config before and after
through the engine simulator (tests/program/engine_sim.py: ignoreChanges, ForceNew, cascades);
tests/program/test_program_changes.py asserts every row and that docs/changes.md holds this output.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO / "tests" / "program"
CHANGES_DOC = REPO / "docs" / "changes.md"
BLOCK = re.compile(r"(<!-- change-table -->\n)(.*?)(<!-- /change-table -->)", re.S)

# What a reader calls each resource type (cloud objects, keys, commands).
LABELS = {
    "aws:ec2/instance:Instance": "VM",
    "gcp:compute/instance:Instance": "VM",
    "hcloud:index/server:Server": "VM",
    "aws:ec2/eip:Eip": "IP",
    "gcp:compute/address:Address": "IP",
    "hcloud:index/primaryIp:PrimaryIp": "IP",
    "aws:ec2/eipAssociation:EipAssociation": "EIP association",
    "aws:ec2/securityGroup:SecurityGroup": "firewall",
    "gcp:compute/firewall:Firewall": "firewall",
    "hcloud:index/firewall:Firewall": "firewall",
    "aws:ec2/vpc:Vpc": "VPC",
    "gcp:compute/network:Network": "VPC",
    "aws:ec2/subnet:Subnet": "subnet",
    "gcp:compute/subnetwork:Subnetwork": "subnet",
    "aws:ec2/routeTable:RouteTable": "route table",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "route table association",
    "aws:ec2/route:Route": "route",
    "gcp:compute/route:Route": "route",
    "aws:ec2/internetGateway:InternetGateway": "internet gateway",
    "random:index/randomBytes:RandomBytes": "key",
    "hcloud:index/sshKey:SshKey": "SSH key",
    "command:remote:Command": "command",
}
NAMED = 4  # up to this many resources in a cell are named, more are counted by kind
HEADER = (
    "| Change | Creates | Updates | Replaces | Deletes | What running nodes do |\n|---|---|---|---|---|---|\n"
)


def _harness(name: str) -> Any:
    sys.path[:0] = [str(REPO), str(HARNESS)]
    return importlib.import_module(name)


def _label(typ: str) -> str:
    return LABELS.get(typ, typ.rsplit(":", 1)[-1])


def _plural(label: str, n: int) -> str:
    return label if n == 1 else (label + "es" if label.endswith("ss") else label + "s")


def cell(resources: list[Any]) -> str:
    """`0`, `2: VM gcp-fra, IP gcp-fra-ip`, or `12: 9 commands, 3 firewalls` (cloud objects only)."""
    custom = [r for r in resources if r.custom]
    if not custom:
        return "0"
    if len(custom) <= NAMED:
        return f"{len(custom)}: " + ", ".join(f"{_label(r.type)} `{r.name}`" for r in custom)
    kinds = Counter(_label(r.type) for r in custom)
    return f"{len(custom)}: " + ", ".join(f"{n} {_plural(k, n)}" for k, n in kinds.most_common())


def nodes_cell(effects: dict[str, str]) -> str:
    """Nodes grouped by what they do: `all 3: runs peers+sync+health`, `gcp-fra: ...; others: -`."""
    groups: dict[str, list[str]] = {}
    for node, effect in effects.items():
        groups.setdefault(effect, []).append(node)
    if len(groups) == 1:
        ((effect, names),) = groups.items()
        return f"all {len(names)}: {effect}" if effect != "-" else "nothing"
    parts = [
        f"{', '.join(f'`{n}`' for n in names)}: {effect}" for effect, names in groups.items() if effect != "-"
    ]
    rest = groups.get("-", [])
    if rest:
        parts.append(f"{'others' if len(rest) > 1 else f'`{rest[0]}`'}: nothing")
    return "; ".join(parts)


def row_line(row: Any, outcome: Any) -> str:
    d = outcome.diff
    updated, replaced = list(outcome.updated_resources), list(outcome.replaced_resources)
    cells = [
        row.change,
        cell(d.created),
        cell(updated),
        cell(replaced),
        cell(d.deleted),
        nodes_cell(outcome.nodes),
    ]
    return "| " + " | ".join(cells) + " |"


def change_table() -> str:
    """The whole block: the table and the notes on its cloud-required replacements."""
    rows = _harness("change_rows")
    lines = [row_line(r, rows.outcome(r.key)) for r in rows.ROWS]
    notes = sorted({why for r in rows.ROWS for why in r.allowed.values()})
    notes_head = (
        "Why each replacement above happens (the tests refuse a VM or network replaced for any other reason):"
    )
    text = HEADER + "\n".join(lines) + f"\n\n{notes_head}\n\n"
    return text + "".join(f"- {why}\n" for why in notes)


def print_sets() -> None:
    """Each row as tests/program/test_program_changes.py's TODAY states it."""
    rows = _harness("change_rows")
    for r in rows.ROWS:
        o = rows.outcome(r.key)
        print(f"{r.key}:")
        for kind in ("created", "updated", "replaced", "deleted"):
            if o.of(kind):
                print(f"    {kind}={sorted(o.of(kind))}")
        print(f"    nodes={o.nodes}")


def write_table(table: str) -> bool:
    """Replace the block in docs/changes.md; True when it changed."""
    text = CHANGES_DOC.read_text(encoding="utf-8")
    match = BLOCK.search(text)
    if match is None:
        raise SystemExit("docs/changes.md has no <!-- change-table --> ... <!-- /change-table --> block")
    new = text[: match.start(2)] + table + text[match.end(2) :]
    if new != text:
        CHANGES_DOC.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", action="store_true", help="update docs/changes.md's change table")
    parser.add_argument("--sets", action="store_true", help="print each row's measured sets")
    args = parser.parse_args(argv)
    if args.sets:
        print_sets()
        return
    table = change_table()
    if args.write:
        print("docs/changes.md updated" if write_table(table) else "docs/changes.md already up to date")
    else:
        print(table, end="")


if __name__ == "__main__":
    main()
