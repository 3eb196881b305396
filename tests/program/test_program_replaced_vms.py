"""A replaced VM boots with its first user data: the program must bring it to the current config.

The engine creates a replacement VM from the user data stored in state (ignore_changes), so:
- with liveUpdates on, the node's `-peers`, `-sync` and `-health` commands name the VM's id in
  their command line and re-run (update in place) on the new VM;
- with liveUpdates off, preview and up warn, one line per node, naming every node whose
  running config would be stale and `make push STACK=<s> NODE=<n>`; a push recorded for that
  VM in `wgmesh:pushed` silences it, for that VM only.

Each test runs the real program twice (before, after) under mocks that give a replaced VM a
new id and keep each VM's stored boot digest (tests/program/vm_replace_mocks.py).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from engine_sim import COMMAND, diff
from test_program_live_updates import (
    LIVE,
    NEW_NODE,
    SECRET_KEYS,
    dev_config,
    dev_nodes,
    vm_id_of,
)
from vm_replace_mocks import engine_run
from wgmesh_mocks import ProgramRun, reveal

from components.stale import BOOT_TAG, boot_digest

GCP_ZONES = ("europe-west3-a", "europe-west3-b", "europe-west3-c")


def moved_gcp(nodes: list[dict[str, Any]], before: ProgramRun) -> list[dict[str, Any]]:
    """gcp-fra moved to another zone of its region (GCP: `zone` forces a new instance)."""
    zone = before.one("gcp:compute/instance:Instance", "gcp-fra").inputs["zone"]
    other = next(z for z in GCP_ZONES if z != zone)
    return [{**n, "zone": other} if n["name"] == "gcp-fra" else n for n in nodes]


# ----------------------------------------------------------------------------- liveUpdates on


def live_run(nodes: list[dict[str, Any]], previous: ProgramRun | None = None) -> ProgramRun:
    result = engine_run(dev_config(nodes), previous, secret_keys=SECRET_KEYS)
    assert result.error is None, result.error
    return result


def test_a_replaced_vm_reruns_its_peers_sync_and_health_commands() -> None:
    before = live_run(dev_nodes())
    after = live_run(moved_gcp(dev_nodes(), before), before)
    assert vm_id_of(before, "gcp-fra") != vm_id_of(after, "gcp-fra")  # the cloud's new VM
    d = diff(before, after)
    rerun = {c.before.name: c for c in d.changed if c.before.type == COMMAND and c.effective}
    # Exactly the moved node's commands, updated in place (pulumi-command runs `update` again).
    assert sorted(rerun) == ["gcp-fra-health", "gcp-fra-peers", "gcp-fra-sync"]
    for c in rerun.values():
        assert set(c.effective) == {"create", "update"} and c.replacing == ()
        assert c.after.inputs["create"].startswith(f": wgmesh-vm={vm_id_of(after, 'gcp-fra')}; ")
    # Its payload did not change: the re-run is the VM's id, nothing else.
    assert reveal(after.one(COMMAND, "gcp-fra-sync").inputs["stdin"]) == reveal(
        before.one(COMMAND, "gcp-fra-sync").inputs["stdin"]
    )


def test_vm_id_is_an_input_of_every_command_not_a_trigger() -> None:
    run = live_run(dev_nodes())
    for node in LIVE:
        for step in ("peers", "sync", "health"):
            command = run.one(COMMAND, f"{node}-{step}")
            assert command.inputs["create"].startswith(f": wgmesh-vm={vm_id_of(run, node)}; ")
            assert "triggers" not in command.inputs  # triggers would replace the command


# ----------------------------------------------------------------------------- liveUpdates off


def off_config(nodes: list[dict[str, Any]], pushed: dict[str, str] | None = None) -> dict[str, str]:
    config = dev_config(nodes, live=False, key=None)
    if pushed is not None:
        config["wgmesh:pushed"] = json.dumps(pushed)
    return config


def off_run(
    caplog: pytest.LogCaptureFixture, config: dict[str, str], previous: ProgramRun | None = None
) -> tuple[ProgramRun, dict[str, str]]:
    """One run; the stale-node warnings it logged, by node."""
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        result = engine_run(config, previous)
    assert result.error is None, result.error
    warned = {}
    for record in caplog.records:
        found = re.match(r"wgmesh: node (\S+) will run a stale config", record.getMessage())
        if found:
            assert found.group(1) not in warned, "one line per node"
            warned[found.group(1)] = record.getMessage()
    return result, warned


def private_keys(run: ProgramRun) -> set[str]:
    confs = [reveal(v.value) for v in run.outputs["wgConfigs"].values()]
    return {m for c in confs for m in re.findall(r"^PrivateKey = (\S+)$", c, re.M)}


def test_a_fresh_stack_and_an_unchanged_one_warn_nothing(caplog: pytest.LogCaptureFixture) -> None:
    base, warned = off_run(caplog, off_config(dev_nodes()))
    assert warned == {}
    again, warned = off_run(caplog, off_config(dev_nodes()), base)
    assert warned == {}
    for node in LIVE:  # each VM carries the digest of the payload it booted with
        target = again.outputs["pushTargets"][node]
        assert target["digest"].value == boot_digest(reveal(again.outputs["nodePayloads"][node].value))


def test_every_node_left_stale_is_named_with_the_command_that_fixes_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    base, _ = off_run(caplog, off_config(dev_nodes()))
    after, warned = off_run(caplog, off_config([*dev_nodes(), NEW_NODE]), base)
    # Every existing node's peers changed; the new node boots with the current config.
    assert sorted(warned) == sorted(LIVE)
    for node, line in warned.items():
        assert line.endswith(f"run `make push STACK=dev NODE={node}`")
        assert "\n" not in line
        assert not any(k in line for k in private_keys(after) | private_keys(base))


def test_a_replaced_vm_is_stale_when_the_config_moved_on_since_it_was_created(
    caplog: pytest.LogCaptureFixture,
) -> None:
    base, _ = off_run(caplog, off_config(dev_nodes()))
    grown = [*dev_nodes(), NEW_NODE]
    pushed_all, _ = off_run(caplog, off_config(grown), base)
    record = {
        n: f"{t['vmId'].value}:{t['digest'].value}" for n, t in pushed_all.outputs["pushTargets"].items()
    }
    # After `make push` for every node, nothing is stale ...
    pushed, warned = off_run(caplog, off_config(grown, record), pushed_all)
    assert warned == {}
    # ... until gcp-fra's VM is replaced: the new VM boots with its first payload, and the push
    # recorded for the old VM does not count for it.
    moved, warned = off_run(caplog, off_config(moved_gcp(grown, pushed), record), pushed)
    assert vm_id_of(moved, "gcp-fra") != vm_id_of(pushed, "gcp-fra")
    assert sorted(warned) == ["gcp-fra"]


def test_a_replaced_vm_with_an_unchanged_config_is_not_stale(caplog: pytest.LogCaptureFixture) -> None:
    base, _ = off_run(caplog, off_config(dev_nodes()))
    _, warned = off_run(caplog, off_config(moved_gcp(dev_nodes(), base)), base)
    assert warned == {}


def test_a_push_counts_only_for_the_node_and_digest_it_recorded(caplog: pytest.LogCaptureFixture) -> None:
    base, _ = off_run(caplog, off_config(dev_nodes()))
    grown = [*dev_nodes(), NEW_NODE]
    after, _ = off_run(caplog, off_config(grown), base)
    target = after.outputs["pushTargets"]["aws-fra"]
    good = f"{target['vmId'].value}:{target['digest'].value}"
    stale_digest = f"{target['vmId'].value}:{'0' * 32}"
    _, warned = off_run(caplog, off_config(grown, {"aws-fra": good, "gcp-fra": stale_digest}), base)
    assert sorted(warned) == ["gcp-fra", "hetzner-nbg"]


def test_boot_digest_is_ignored_like_the_user_data() -> None:
    run = engine_run(off_config(dev_nodes()))
    for typ, prop in (
        ("aws:ec2/instance:Instance", "tags"),
        ("gcp:compute/instance:Instance", "labels"),
        ("hcloud:index/server:Server", "labels"),
    ):
        (vm,) = run.of_type(typ)
        assert f'{prop}["{BOOT_TAG}"]' in vm.ignore_changes
        assert re.fullmatch(r"[0-9a-f]{32}", reveal(vm.inputs[prop])[BOOT_TAG])


@pytest.mark.parametrize("pushed", [["not", "a", "map"], {"aws-fra": "no digest"}])
def test_a_bad_pushed_record_is_one_keyed_line(caplog: pytest.LogCaptureFixture, pushed: Any) -> None:
    config = dev_config(dev_nodes(), live=False, key=None)
    config["wgmesh:pushed"] = json.dumps(pushed)
    result = engine_run(config)
    assert result.error is not None and result.resources == []
    message = str(result.error)
    assert message.startswith("wgmesh:pushed") and "make push" in message  # a known key, checked
    assert "unknown config key" not in message and "\n" not in message.strip()
