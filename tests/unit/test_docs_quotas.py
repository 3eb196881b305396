"""docs/quotas.md's quota table is the planner's output, so it cannot go stale."""

from __future__ import annotations

import re
from pathlib import Path

from bench.quota import markdown_table

QUOTAS_DOC = Path(__file__).resolve().parents[2] / "docs" / "quotas.md"
BLOCK = re.compile(r"<!-- quota-table:[^\n]*-->\n(?P<table>.*?)<!-- /quota-table -->", re.S)


def test_the_documented_quota_table_is_what_the_planner_says() -> None:
    match = BLOCK.search(QUOTAS_DOC.read_text(encoding="utf-8"))
    assert match is not None, "docs/quotas.md lost its <!-- quota-table --> block"
    assert match.group("table") == markdown_table(), (
        "docs/quotas.md's quota table is stale: replace the block with `python -m bench.quota --markdown`"
    )


def test_the_table_marks_what_exceeds_a_default() -> None:
    # Counted by hand: every third node is on AWS, AWS nodes rotate over 3 regions, so 10 nodes
    # put 2 in eu-central-1, 50 put 6 (17 AWS nodes: 6, 6, 5) and 150 put 17: one EIP each.
    table = markdown_table()
    assert "| Elastic IP addresses per Region (`elasticIps`) | 5 | 2 | **6** | **17** |" in table
