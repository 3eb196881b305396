"""Every relative link in README.md and docs/*.md leads somewhere: an existing file, and for a
`#anchor` a heading of that file (GitHub's slugs). README is a landing page: the two commands
are on its first screen and every docs page is one link away.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

REPO = Path(__file__).resolve().parents[2]
FIRST_SCREEN = 25  # lines a newcomer sees before scrolling
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, ...


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def prose_lines(text: str, keep_code: bool = False) -> list[str]:
    """The lines outside fenced code blocks; inline code removed (a link there is only text)
    unless `keep_code` (a heading's code is part of its anchor)."""
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line if keep_code else re.sub(r"`[^`]*`", "", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text, lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: Counter[str] = Counter()
    out: set[str] = set()
    for line in prose_lines(text, keep_code=True):
        m = HEADING.match(line)
        if m is None:
            continue
        base = slug(m.group(1))
        out.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
        seen[base] += 1
    return out


def links(doc: Path) -> list[str]:
    return [m.group(1) for line in prose_lines(doc.read_text(encoding="utf-8")) for m in LINK.finditer(line)]


def broken_links(doc: Path) -> list[str]:
    """Each relative link of `doc` that names no file, or no heading of the file it names."""
    broken: list[str] = []
    for target in links(doc):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        dest = doc if not path_part else (doc.parent / unquote(path_part)).resolve()
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (dest.is_dir() or anchor not in anchors(dest.read_text(encoding="utf-8"))):
            broken.append(f"{target}: no heading with that anchor")
    return broken


def test_slugs_follow_github() -> None:
    assert slug("Preview, deploy") == "preview-deploy"
    assert slug("Roaming clients (laptops, phones)") == "roaming-clients-laptops-phones"
    assert slug("The `cloudinit` name") == "the-cloudinit-name"
    assert slug("Sizes and zones: asked at preview") == "sizes-and-zones-asked-at-preview"
    assert slug("Internet gateway (exit node)") == "internet-gateway-exit-node"
    assert slug("Step-by-step **now**") == "step-by-step-now"


def test_repeated_headings_get_numbered_anchors_and_code_blocks_hold_none() -> None:
    text = "# A\n## Notes\n```sh\n# not a heading\n```\n## Notes\n"
    assert anchors(text) == {"a", "notes", "notes-1"}


def test_the_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n## Real part\n", encoding="utf-8")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Doc\n[ok](other.md) [ok](other.md#real-part) [ok](#doc) [web](https://example.com/x)\n"
        "[gone](missing.md) [bad](other.md#no-part) [bad](#nowhere)\n"
        "`[code](missing-too.md)`\n```\n[fenced](missing-three.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(doc) == [
        "missing.md: no such file",
        "other.md#no-part: no heading with that anchor",
        "#nowhere: no heading with that anchor",
    ]


def test_every_relative_link_in_the_docs_resolves() -> None:
    docs = documents()
    assert len(docs) >= 9, [d.name for d in docs]
    relative = [t for d in docs for t in links(d) if not EXTERNAL.match(t)]
    assert len(relative) >= 30, "the link reader found too few links to mean anything"
    broken = {d.relative_to(REPO).as_posix(): broken_links(d) for d in docs}
    assert {name: b for name, b in broken.items() if b} == {}


def test_the_readme_opens_with_the_two_commands() -> None:
    first_screen = "\n".join((REPO / "README.md").read_text(encoding="utf-8").splitlines()[:FIRST_SCREEN])
    assert re.search(r"^make lab\b", first_screen, re.M), "make lab is not on README's first screen"
    assert re.search(r"^make test\b", first_screen, re.M), "make test is not on README's first screen"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {
        (REPO / t.partition("#")[0]).resolve()
        for t in links(REPO / "README.md")
        if not EXTERNAL.match(t) and t.partition("#")[0]
    }
    pages = set((REPO / "docs").glob("*.md"))
    assert pages, "docs/ holds no pages"
    assert {p.name for p in pages - linked} == set()
