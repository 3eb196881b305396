"""Configuration errors that name the offending config key.

Kept free of Pulumi so `mesh/` stays pure; `components/config.py` re-raises a
`ConfigError` as a `pulumi.RunError` subclass so `pulumi preview` prints the
message instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the config: the fully qualified key and what is wrong."""

    key: str
    message: str

    def __str__(self) -> str:
        # User text can carry newlines or escapes; one problem must stay one line.
        return _one_line(f"{self.key}: {self.message}")


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ConfigError(ValueError):
    """All problems found in a stack config, one line each."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("ConfigError needs at least one problem")
        super().__init__(self._format())

    def _format(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = [f"{len(self.problems)} problems in the wgmesh stack config:"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


class RenderError(ValueError):
    """A rendered artifact cannot be used as is (e.g. user data over a cloud's size limit)."""
