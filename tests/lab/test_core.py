"""lab.core and the day-2 mesh view without root: the wg0.conf reader, the mount reader, the
process identity check, and what a day-2 change keeps of the rendered mesh."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from lab.core import mounts
from lab.core.manifest import load_mesh
from lab.core.processes import alive, process_record, process_start
from lab.core.state import ProcessRecord
from lab.core.wgconf import conf_peers, rendered_wg_conf
from lab.netns.day2 import booted_mesh
from tools.render import main as render_main


@pytest.fixture(scope="module")
def lab_render(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("render") / "lab"
    assert render_main(["--stack", "lab", "--out", str(out)]) == 0
    return out


def test_booted_mesh_keeps_every_rendered_field_but_the_nodes(lab_render: Path) -> None:
    """A day-2 change must not drop `endpoints` (the IPv6-endpoint check reads it) or anything else."""
    mesh = load_mesh(lab_render)
    assert len(mesh.nodes) == 3
    ipv6 = dataclasses.replace(mesh, endpoints="ipv6", topology="hub")
    booted = booted_mesh(ipv6, ["lab-a", "lab-c"])
    assert [n.name for n in booted.nodes] == ["lab-a", "lab-c"]
    assert booted == dataclasses.replace(ipv6, nodes=(mesh.nodes[0], mesh.nodes[2]))
    assert booted.endpoints == "ipv6"


def test_conf_peers_reads_each_peer_and_its_allowed_ips() -> None:
    conf = (
        "[Interface]\nAddress = 10.77.0.1/24\nPrivateKey = notakey\n\n"
        "[Peer]  # lab-b\nPublicKey = b=\nAllowedIPs = 10.77.0.2/32, 10.0.4.0/24\n"
        "Endpoint = 192.0.2.2:51820\n"
        "[Peer]\nPublicKey = c=\nAllowedIPs = 10.77.0.3/32\nAllowedIPs = fd00::3/128\n"
    )
    assert conf_peers(conf) == {"b=": {"10.77.0.2/32", "10.0.4.0/24"}, "c=": {"10.77.0.3/32", "fd00::3/128"}}


def test_rendered_wg_conf_lists_the_other_nodes(lab_render: Path) -> None:
    peers = conf_peers(rendered_wg_conf(lab_render, "lab-a"))
    mesh = load_mesh(lab_render)
    others = {f"{n.address}/32" for n in mesh.nodes if n.name != "lab-a"}
    assert len(peers) >= 2
    assert others <= set().union(*peers.values())


def test_mount_reader_unescapes_and_orders_deepest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:21 / /tmp/lab rw - tmpfs t rw\n"
        "23 22 0:22 / /tmp/lab/my\\040dir rw - tmpfs t rw\n"
        "24 1 0:23 / /tmp/labx rw - tmpfs t rw\n"
    )
    monkeypatch.setattr(mounts, "MOUNTINFO", info)
    assert mounts.mounts_under(Path("/tmp/lab")) == ["/tmp/lab/my dir", "/tmp/lab"]


def test_a_process_is_ours_only_while_pid_and_start_time_match() -> None:
    me = process_record(os.getpid(), "pytest")
    assert me.start == process_start(os.getpid())
    assert alive(me)
    assert not alive(ProcessRecord(me.pid, me.start + 1, "reused PID"))
