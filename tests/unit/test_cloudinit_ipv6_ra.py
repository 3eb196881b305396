"""The IPv6 RA guard (cloudinit/scripts/wgmesh-ra-guard.sh): its text, and runs against a fake `ip`.

Here it runs with WGMESH_ROOT pointing at a fake /proc tree and a fake `ip` on PATH naming
interfaces this host does not have: never against the host's own settings. Its behaviour on
real interfaces and Router Advertisements: tests/artifacts/test_artifacts_ipv6_ra.py (namespaces).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
from test_cloudinit_sync import shellcheck

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
    assert "= 1 ] || return 0" in script  # 0 (networkd) and 2 (ifupdown `inet6 auto`) untouched
    assert "echo 2 >" in script
    assert "-net.ipv6.conf." in script  # '-': an interface gone at boot is no error
    assert "route show default proto ra" in script  # only RA-learned defaults, never static ones


def test_what_the_node_runs_is_shellcheck_clean_posix_sh() -> None:
    proc = subprocess.run(
        [shellcheck(), "-s", "sh", "--severity=style", "-"],
        input=accept_ra_guard_step()[2],
        text=True,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout


def test_guard_script_parses_as_posix_sh() -> None:
    dash = shutil.which("dash") or shutil.which("sh")
    assert dash is not None
    result = subprocess.run(
        [dash, "-n", "-c", accept_ra_guard_step()[2]], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# ----------------------------------------------------------------------------- runs against fakes

FAKE_IP = r"""#!/bin/sh
printf '%s\n' "$*" >>"$FAKE/ip.log"
[ "$*" = "-6 -o route show default proto ra" ] || exit 2
[ -e "$FAKE/routes" ] || { echo "RTNETLINK answers: Address family not supported" >&2; exit 2; }
cat "$FAKE/routes"
"""


class FakeHost:
    """`ip` on PATH prints the test's RA default routes; /proc/sys/net/ipv6/conf lives under WGMESH_ROOT."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "root"
        (tmp / "bin").mkdir()
        (tmp / "bin" / "ip").write_text(FAKE_IP)
        (tmp / "bin" / "ip").chmod(0o755)
        self.kept = tmp / "89-wgmesh-accept-ra.conf"

    def interface(self, name: str, accept_ra: int) -> None:
        conf = self.root / "proc/sys/net/ipv6/conf" / name
        conf.mkdir(parents=True)
        (conf / "accept_ra").write_text(f"{accept_ra}\n")

    def accept_ra(self, name: str) -> str:
        return (self.root / "proc/sys/net/ipv6/conf" / name / "accept_ra").read_text().strip()

    def routes(self, *devs: str) -> None:
        lines = [
            f"default via fe80::1 dev {d} proto ra metric 1024 expires 1799sec pref medium" for d in devs
        ]
        (self.tmp / "routes").write_text("".join(line + "\n" for line in lines))

    def run(self) -> subprocess.CompletedProcess[str]:
        """The guard exactly as cloud-init's runcmd runs it: `sh -c <script> <sysctl file>`."""
        return subprocess.run(
            list(accept_ra_guard_step(str(self.kept))),
            capture_output=True,
            text=True,
            check=False,
            env={
                "PATH": f"{self.tmp / 'bin'}:/usr/bin:/bin",
                "FAKE": str(self.tmp),
                "WGMESH_ROOT": str(self.root),
            },
        )


@pytest.fixture
def fake_host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path)


def test_raises_kernel_ra_interfaces_to_two_and_keeps_them_for_later_boots(fake_host: FakeHost) -> None:
    fake_host.interface("fake-up0", 1)  # the kernel handles its RAs: raised
    fake_host.interface("fake-up1.100", 1)  # a VLAN: its key spells the dot as a slash
    fake_host.interface("fake-nd0", 0)  # networkd handles RAs itself: left alone
    fake_host.interface("fake-auto0", 2)  # already 2: left alone
    fake_host.interface("fake-static0", 1)  # no RA default route on it: left alone
    fake_host.routes("fake-up0", "fake-up0", "fake-nd0", "fake-up1.100", "fake-auto0")
    result = fake_host.run()
    assert result.returncode == 0, result.stderr
    assert [
        fake_host.accept_ra(n) for n in ("fake-up0", "fake-up1.100", "fake-nd0", "fake-auto0", "fake-static0")
    ] == [
        "2",
        "2",
        "0",
        "2",
        "1",
    ]
    assert fake_host.kept.read_text() == (
        "# wgmesh: keep RA default routes with forwarding on\n"
        "-net.ipv6.conf.fake-up0.accept_ra = 2\n"
        "-net.ipv6.conf.fake-up1/100.accept_ra = 2\n"
    )
    assert (fake_host.tmp / "ip.log").read_text() == "-6 -o route show default proto ra\n"


@pytest.mark.parametrize("routes", [True, False], ids=["no-ra-route", "no-ipv6"])
def test_writes_nothing_without_a_kernel_ra_route(fake_host: FakeHost, routes: bool) -> None:
    fake_host.interface("fake-up0", 1)
    fake_host.interface("fake-nd0", 0)
    if routes:
        fake_host.routes("fake-nd0")  # only networkd's: nothing for the guard to do
    result = fake_host.run()
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")  # ip's complaint is silenced
    assert not fake_host.kept.exists()
    assert (fake_host.accept_ra("fake-up0"), fake_host.accept_ra("fake-nd0")) == ("1", "0")


def test_a_route_on_an_interface_without_settings_is_skipped(fake_host: FakeHost) -> None:
    """An interface gone between `ip route` and the read: no error, no line for it."""
    fake_host.interface("fake-up0", 1)
    fake_host.routes("fake-gone0", "fake-up0")
    result = fake_host.run()
    assert result.returncode == 0, result.stderr
    assert fake_host.kept.read_text().splitlines()[1:] == ["-net.ipv6.conf.fake-up0.accept_ra = 2"]


def test_the_node_gets_the_script_file_without_its_header() -> None:
    text = (Path(__file__).resolve().parents[2] / "cloudinit/scripts/wgmesh-ra-guard.sh").read_text()
    body = accept_ra_guard_step()[2]
    assert text.startswith("#!/bin/sh\n") and text.endswith(body)
    assert "#!" not in body and "Usage:" not in body  # the header stays in the file
    assert body.startswith("# The interfaces holding an RA-learned IPv6 default route")  # comments go along
