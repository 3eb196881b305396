"""An independent reader of wg-quick files, shared by the tests so none trusts the renderer's view."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Section:
    """One `[Interface]`/`[Peer]` block: its `#` comments and key -> values."""

    kind: str
    comments: list[str] = field(default_factory=list)
    values: dict[str, list[str]] = field(default_factory=dict)

    def one(self, key: str) -> str:
        (value,) = self.values[key]
        return value

    def get(self, key: str) -> str | None:
        values = self.values.get(key)
        if values is None:
            return None
        (value,) = values
        return value


def parse_wg_conf(text: str) -> list[Section]:
    """An independent reader of wg-quick files (the tests do not reuse the renderer's view)."""
    sections: list[Section] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            sections.append(Section(stripped[1:-1]))
        elif stripped.startswith("#"):
            sections[-1].comments.append(stripped[1:].strip())
        else:
            key, sep, value = stripped.partition("=")
            assert sep, f"not a key = value line: {stripped!r}"
            sections[-1].values.setdefault(key.strip(), []).append(value.strip())
    return sections
