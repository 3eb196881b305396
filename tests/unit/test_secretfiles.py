"""tools/secretfiles.py: the one way files holding keys are written (render, client, lab)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tools.secretfiles import append_private, private_dir, write_private


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_write_private_is_0600_under_a_loose_umask_and_tightens_an_existing_file(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        loose = tmp_path / "loose"
        loose.write_text("old")
        loose.chmod(0o644)
        write_private(loose, "key")
        fresh = tmp_path / "fresh"
        write_private(fresh, "key")
    finally:
        os.umask(old)
    assert (mode(loose), loose.read_text()) == (0o600, "key")
    assert mode(fresh) == 0o600


def test_secret_writers_refuse_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(OSError) as e:
        write_private(link, "key")
    assert e.value.errno == errno.ELOOP
    with pytest.raises(OSError) as e, append_private(link):
        pass
    assert e.value.errno == errno.ELOOP
    assert target.read_text() == "untouched"


def test_append_private_appends_and_tightens(tmp_path: Path) -> None:
    log = tmp_path / "boot.log"
    log.write_text("first\n")
    log.chmod(0o644)
    with append_private(log) as f:
        f.write("second\n")
    assert (log.read_text(), mode(log)) == ("first\nsecond\n", 0o600)


def test_private_dir_tightens_an_existing_directory(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    private_dir(d)
    assert mode(d) == 0o700
