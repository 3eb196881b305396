"""No Python file holds a shell script longer than 15 lines in a string: shell lives in script files.

Longer scripts live in script files, where `make lint` shellchecks them (scripts/lint-shell).
Every .py file git tracks (or holds untracked and not ignored) is parsed; each string literal
and f-string over MAX_LINES lines that is not a docstring is judged by `looks_like_shell`:

- a sh/bash shebang on its first line, or a `set -e...`/`set -u...` line, is shell at once;
- otherwise shell when at least SHELL_SHARE of its code lines (not blank, not `#` comments)
  are shell-ish: they open with a shell keyword that Python lacks (then, fi, do, done, esac,
  elif ...; then), a `[ `/`[[ ` test, a `name() {` function, a `name=value` assignment with no
  space around `=` (a lower- or upper-case name: not a CamelCase systemd or INI
  key), a common command (`ip`, `echo`, `mount`, ... in COMMANDS) as its first word, or they
  hold a `$name`/`${`/`$(` expansion, a `&&`/`||`, or a pipe `| `. A line that is only a
  `{placeholder}` counts neither way.

Python code (`x = 1`, `if x:`, `def f():`) matches none of these, nor does a docstring (skipped)
or prose; YAML, nft or wg-quick text in a string stays under the share.
"""

from __future__ import annotations

import ast
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_LINES = 15
SHELL_SHARE = 0.5
SHEBANG = re.compile(r"^#!\s*\S*/(env\s+)?(ba|da)?sh(\s|$)")
SET_OPTIONS = re.compile(r"^\s*set -[a-z]*[eu]")
# Commands a shell script line opens with (never `return`, `print`, `import`: Python's words).
COMMANDS = (
    "awk|cat|cd|chmod|chown|cp|curl|cut|echo|eval|exec|exit|export|grep|head|id|ip|kill|ln|local|mkdir"
    "|mount|mv|nft|nsenter|printf|read|rm|sed|seq|shift|sleep|sort|ssh|ssh-keygen|sysctl|systemctl|tail"
    "|tee|touch|tr|trap|umount|unshare|useradd|wait|wc|wg|wg-quick"
)
SHELL_LINE = re.compile(
    r"""^\s*(then|fi|do|done|esac|else|elif\b.*;\s*then)\s*(;|$|\#)"""  # keywords Python lacks
    r"""|^\s*(if|while|until|for)\b.*;\s*(then|do)\b"""  # if ...; then / for ...; do
    r"""|^\s*\[\[?\s"""  # a test: [ ... ] or [[ ... ]]
    r"""|^\s*[A-Za-z_][A-Za-z0-9_-]*\(\)\s*\{"""  # a function: name() {
    r"""|^\s*(export\s+|local\s+)?([a-z_][a-z0-9_]*|[A-Z_][A-Z0-9_]*)=[^=\s]"""  # name=value, no spaces
    r"""|\$[A-Za-z_{(@#?*0-9]"""  # an expansion: $x ${x} $(cmd) $@ $1
    r"""|&&|\|\|"""  # command lists
    r"""|\S\s\|\s"""  # a pipe between commands
    rf"""|^\s*({COMMANDS})(\s+(?![=(.])|$)"""  # a command line: `ip link set lo up`
)
# Lines that are only a `{placeholder}` of str.format or an f-string count neither way.
PLACEHOLDER = re.compile(r"^\s*\{[^{}]*\}\s*$")


@dataclass(frozen=True)
class Hit:
    path: str
    line: int
    lines: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line} ({self.lines} lines)"


def looks_like_shell(text: str) -> bool:
    lines = text.splitlines()
    code = [
        ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#") and not PLACEHOLDER.match(ln)
    ]
    first = next((ln for ln in lines if ln.strip()), "")
    if SHEBANG.match(first.strip()) or any(SET_OPTIONS.match(ln) for ln in code):
        return True
    return bool(code) and sum(1 for ln in code if SHELL_LINE.search(ln)) >= SHELL_SHARE * len(code)


def string_text(node: ast.AST) -> str | None:
    """A str constant's value, or an f-string's literal parts with `{}` where the values go."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}" for v in node.values
        )
    return None


def docstrings(tree: ast.Module) -> set[int]:
    """ids of the module, class and function docstring nodes."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and string_text(body[0].value) is not None:
                found.add(id(body[0].value))
    return found


def shell_strings(path: Path, source: str) -> list[Hit]:
    tree = ast.parse(source, filename=str(path))
    # Docstrings are skipped; an f-string's literal parts are judged with their f-string.
    skip = docstrings(tree) | {
        id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values
    }
    hits = []
    for node in ast.walk(tree):
        text = None if id(node) in skip else string_text(node)
        if text is None:
            continue
        count = len(text.strip("\n").splitlines())
        if count > MAX_LINES and looks_like_shell(text):
            hits.append(Hit(str(path), getattr(node, "lineno", 0), count))
    return sorted(hits, key=lambda h: h.line)


def python_files() -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted({p for p in out.splitlines() if (REPO / p).is_file()})


# ----------------------------------------------------------------------------- the heuristic

BASH = "\n".join(["#!/bin/bash", *[f"echo {i}" for i in range(20)]])
SET_E = "\n".join(["set -eu", *[f"run_step {i}" for i in range(20)]])
SHELLISH = "\n".join(
    ["W=$1", "for f in a b; do", '  [ -e "$f" ] || continue', '  cat "$f" | wc -l', "done"] * 4
)
COMMAND_LINES = "\n".join(["ip link set lo up", "sysctl -qw net.x=1", "{learn}", "mount -t tmpfs x /run"] * 5)
PYTHON = "\n".join(
    [
        "import os",
        "def f(x):",
        "    if id(x):",
        "        return x + 1",
        "    cat = echo = os.sep",
        "    exit(0)",
    ]
    * 4
)
YAML = "\n".join(
    ["runcmd:", "  - [sh, -c, 'echo hi']", "write_files:", "  - path: /etc/x", "    content: y"] * 4
)
WG_CONF = "\n".join(["[Interface]", "PrivateKey = abc", "Address = 10.0.0.1/24", "", "[Peer]"] * 4)
UNIT = "\n".join(
    ["[Service]", "Type=oneshot", "ExecStart=/usr/sbin/nft -f /etc/x.nft", "RemainAfterExit=yes"] * 5
)
PROSE = "\n".join(["Each node runs the script over SSH; its output goes to the log."] * 20)


@pytest.mark.parametrize(
    ("text", "shell"),
    [
        (BASH, True),
        (SET_E, True),
        (SHELLISH, True),
        (COMMAND_LINES, True),
        (PYTHON, False),
        (YAML, False),
        (WG_CONF, False),
        (UNIT, False),
        (PROSE, False),
    ],
    ids=[
        "shebang",
        "set-e",
        "shell-lines",
        "command-lines",
        "python",
        "yaml",
        "wg-conf",
        "systemd-unit",
        "prose",
    ],
)
def test_the_heuristic(text: str, shell: bool) -> None:
    assert looks_like_shell(text) is shell


def test_finds_long_shell_strings_and_f_strings_but_not_docstrings_or_short_ones(tmp_path: Path) -> None:
    short = "\n".join(BASH.splitlines()[:MAX_LINES])
    fstring = "f" + repr(SHELLISH.replace("W=$1", "W={w}"))
    source = "\n".join(
        [
            f"A = {BASH!r}",  # line 1: a plain string
            "def f(w: str) -> str:",
            f"    {BASH!r}",  # line 3: a docstring
            f"    return {fstring}",  # line 4: an f-string
            f"B = {PYTHON!r}",
            f"C = {short!r}",
            f"D = {UNIT!r}",
        ]
    )
    hits = shell_strings(tmp_path / "m.py", source)
    assert [(h.line, h.lines) for h in hits] == [(1, 21), (4, 20)]
    assert str(hits[0]) == f"{tmp_path / 'm.py'}:1 (21 lines)"


# ----------------------------------------------------------------------------- the repository


def test_the_walk_covers_the_repository() -> None:
    files = python_files()
    assert "cloudinit/healthcheck.py" in files and "tests/unit/test_no_shell_in_python.py" in files
    assert len(files) > 50


def repository_hits() -> list[Hit]:
    return [h for p in python_files() for h in shell_strings(Path(p), (REPO / p).read_text(encoding="utf-8"))]


def test_no_python_file_holds_a_long_shell_script() -> None:
    hits = repository_hits()
    assert not hits, (
        "shell scripts over 15 lines in Python strings (move them to script files):\n"
        + "\n".join(map(str, hits))
    )
