"""The IPv6 RA guard as rendered text (behaviour in namespaces: tests/artifacts/test_artifacts_ipv6_ra.py).

Never run the guard here: outside a throwaway namespace it would change the host's settings.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import PurePosixPath

import pytest

from cloudinit.host import ACCEPT_RA_PATH, SYSCTL_PATH, accept_ra_guard_step, sysctl_conf


@pytest.mark.parametrize("ipv6", [True, False])
def test_sysctl_file_leaves_accept_ra_to_the_network_stack(ipv6: bool) -> None:
    """No blanket accept_ra: on networkd links (accept_ra=0, RAs in userspace) 2 would start a
    second, kernel RA client beside networkd."""
    text = sysctl_conf(ipv6=ipv6)
    assert "accept_ra" not in text
    assert ("net.ipv6.conf.all.forwarding = 1" in text) is ipv6


def test_guard_is_one_sh_step_writing_its_own_sysctl_file() -> None:
    step = accept_ra_guard_step()
    assert step[:2] == ("sh", "-c")
    assert step[3] == ACCEPT_RA_PATH  # $0 of the script
    assert len(step) == 4


def test_kept_keys_sort_before_the_forwarding_file() -> None:
    """At boot systemd-sysctl applies files by name: accept_ra=2 before forwarding turns on."""
    kept, forwarding = PurePosixPath(ACCEPT_RA_PATH), PurePosixPath(SYSCTL_PATH)
    assert kept.parent == forwarding.parent
    assert sorted([forwarding.name, kept.name]) == [kept.name, forwarding.name]


def test_guard_only_raises_interfaces_at_one_and_keeps_them_optional() -> None:
    script = accept_ra_guard_step()[2]
    assert "= 1 ] || continue" in script  # 0 (networkd) and 2 (ifupdown `inet6 auto`) untouched
    assert "echo 2 >" in script
    assert "-net.ipv6.conf." in script  # '-': an interface gone at boot is no error
    assert "route show default proto ra" in script  # only RA-learned defaults, never static ones


def test_guard_script_parses_as_posix_sh() -> None:
    dash = shutil.which("dash") or shutil.which("sh")
    assert dash is not None
    result = subprocess.run(
        [dash, "-n", "-c", accept_ra_guard_step()[2]], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
