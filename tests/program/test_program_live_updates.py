"""Day-2 under mocks: add, remove and re-key nodes of the dev stack with live updates on.

The dev stack runs with `wgmesh:mesh.liveUpdates: true` and a secret `wgmesh:sshPrivateKey` (a
real OpenSSH ed25519 key, its public half in `sshPublicKeys`), as a user would set them. Each
scenario runs the program before and after the change and diffs every resource's inputs by URN:
an input that forces replacement for its type (from the providers' docs) may not change on any
existing resource unless the program ignores it, and existing nodes may change only through
their peers, sync and health commands and in-place firewall updates. The add-node diff is
committed as snapshots/dev-add-node.diff (regenerate with WGMESH_UPDATE_SNAPSHOTS=1).

    .venv/bin/python tests/program/test_program_live_updates.py    # prints the add-node snapshot diff
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pulumi
import pytest
from conftest import Figure
from pulumi.runtime.mocks import MockResourceArgs

sys.path.insert(0, str(Path(__file__).resolve().parent))

import wgmesh_mocks
from engine_sim import COMMAND, Diff, diff
from engine_sim import top as _top
from plan_snapshot import SNAPSHOT_DIR, UPDATE_ENV
from ssh_test_keys import ADMIN_KEY, ADMIN_PUB
from wgmesh_mocks import (
    REPO,
    SECRET_SIG,
    SIG_KEY,
    Captured,
    ProgramRun,
    is_secret,
    reveal,
    run_program,
    stack_config,
)

from cloudinit.bundle import parse_bundle
from cloudinit.remote_apply import remote_apply_command
from components.sync import DIAL_ERROR_LIMIT, PER_DIAL_TIMEOUT, vm_command
from policy.rules import MANDATORY_RULES, STACK_RULES, wireguard_world_only_for_roaming

SECRET_KEYS = ("wgmesh:sshPrivateKey",)


# A run of the key's base64 body: must never appear outside a secret.
ADMIN_KEY_BODY = ADMIN_KEY.splitlines()[2]
VM_TYPES = {
    "aws-fra": "aws:ec2/instance:Instance",
    "gcp-fra": "gcp:compute/instance:Instance",
    "hetzner-nbg": "hcloud:index/server:Server",
}


def vm_id_of(r: ProgramRun, node: str) -> str:
    """The id a cloud gives the node's VM: GCP's numeric instance id, else the resource id."""
    vm = r.one(VM_TYPES[node], node)
    return str(vm.outputs["instanceId"]) if node.startswith("gcp") else vm.id


HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

# What may change on an existing node's resources when another node joins or leaves.
IN_PLACE: dict[str, frozenset[str]] = {
    "aws:ec2/securityGroup:SecurityGroup": frozenset({"ingress"}),
    "gcp:compute/firewall:Firewall": frozenset({"sourceRanges"}),
    "hcloud:index/firewall:Firewall": frozenset({"rules"}),
}
SYNC_INPUTS = frozenset({"stdin"})  # the peers and sync commands: the new conf
HEALTH_INPUTS = frozenset({"create", "update"})  # the mesh digest and the peers in the health script


def wg_of(stdin: Any) -> str:
    """The wg0.conf inside an apply command's stdin (the node's bundle, cloudinit/bundle.py)."""
    _, files = parse_bundle(reveal(stdin))
    (conf,) = [f.content for f in files if f.part == "wg"]
    return conf


def dev_config(
    nodes: list[dict[str, Any]] | None = None,
    live: bool = True,
    key: str | None = ADMIN_KEY,
    public_keys: tuple[str, ...] = (ADMIN_PUB,),
    **mesh_settings: Any,
) -> dict[str, str]:
    """The dev stack's config with liveUpdates and the SSH key set (as `config set --secret` would)."""
    config = stack_config(REPO / "stacks" / "Pulumi.dev.yaml")
    mesh = json.loads(config["wgmesh:mesh"])
    mesh["liveUpdates"] = live
    mesh["sshPublicKeys"] = list(public_keys)
    mesh.update(mesh_settings)
    config["wgmesh:mesh"] = json.dumps(mesh)
    if nodes is not None:
        config["wgmesh:nodes"] = json.dumps(nodes)
    if key is not None:
        config["wgmesh:sshPrivateKey"] = key
    return config


def dev_nodes() -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = json.loads(dev_config()["wgmesh:nodes"])
    return nodes


NEW_NODE = {"name": "aws-fra2", "cloud": "aws", "region": "eu-central-1", "address": "10.77.0.4"}
LIVE = ("aws-fra", "gcp-fra", "hetzner-nbg")
ADD_NODE_DIFF = SNAPSHOT_DIR / "dev-add-node.diff"


def scenario_nodes(name: str) -> list[dict[str, Any]]:
    nodes = dev_nodes()
    if name == "add":
        return [*nodes, NEW_NODE]
    if name == "remove":
        return [n for n in nodes if n["name"] != "hetzner-nbg"]
    if name == "rotate":
        return [{**n, "keyEpoch": 1} if n["name"] == "gcp-fra" else n for n in nodes]
    if name == "rotated-earlier":  # aws-fra was rotated twice before: its epoch is the highest
        return [{**n, "keyEpoch": 2} if n["name"] == "aws-fra" else n for n in nodes]
    if name == "rotate-after-history":  # ... and now gcp-fra goes 0 -> 1, below aws-fra's 2
        return [{**n, "keyEpoch": {"aws-fra": 2, "gcp-fra": 1}.get(n["name"], 0)} for n in nodes]
    if name == "pinned":
        return [{**n, "sshHostKey": HOST_KEY} if n["name"] == "aws-fra" else n for n in nodes]
    return nodes


@cache
def run(name: str) -> ProgramRun:
    """One mocked `pulumi up` per scenario, shared by the tests (runs are deterministic)."""
    result = run_program("dev", dev_config(scenario_nodes(name)), secret_keys=SECRET_KEYS)
    assert result.error is None, result.error
    return result


# ----------------------------------------------------------------------------- the diff
# (engine_sim: the engine's replace / update / ignoreChanges rules, shared with the change table)


def _show(value: Any) -> str:
    if is_secret(value):
        return "[secret]"
    text = json.dumps(reveal(value), sort_keys=True)
    return text if len(text) <= 100 else text[:97] + "..."


def _change(old: Any, new: Any) -> list[str]:
    """One value's change: items added/removed for lists, changed lines for scripts."""
    if is_secret(old) or is_secret(new):
        return ["[secret] changed"]
    if isinstance(old, list) and isinstance(new, list):
        removed = [f"- {_show(v)}" for v in old if v not in new]
        added = [f"+ {_show(v)}" for v in new if v not in old]
        return [*removed, *added] or ["reordered"]
    if isinstance(old, str) and isinstance(new, str) and "\n" in old + new:
        delta = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
        return [f"script line {d}" for d in delta if d[:1] in "+-" and d[:3] not in ("+++", "---")]
    return [f"{_show(old)} -> {_show(new)}"]


def describe(d: Diff) -> str:
    """The snapshot diff, readable: + created, - deleted, ~ updated in place, = ignored by the program."""
    lines = []
    for r in d.created:
        lines.append(f"+ {r.type} {r.name}")
    for r in d.deleted:
        lines.append(f"- {r.type} {r.name}")
    for c in d.changed:
        mark = "~" if c.effective else "="
        lines.append(f"{mark} {c.before.type} {c.before.name}")
        for p in c.paths:
            note = "" if p in c.effective else "   (ignoreChanges: the VM keeps its first-boot value)"
            top = _top(p)
            old, new = c.before.inputs.get(top), c.after.inputs.get(top)
            lines += [f"    {p}: {line}{note}" for line in _change(old, new)]
    replacements = sum(1 for c in d.changed if c.replacing)
    lines.append(
        f"{len(d.created)} to create, {len(d.deleted)} to delete, "
        f"{sum(1 for c in d.changed if c.effective)} to update in place, {replacements} to replace"
    )
    return "\n".join(lines)


def _node_of(r: Captured) -> str:
    """The node a resource belongs to, from its name (`aws-fra`, `aws-fra-sg`, `aws-fra-sync`, ...)."""
    names = sorted({n["name"] for n in [*dev_nodes(), NEW_NODE]}, key=len, reverse=True)
    return next((n for n in names if r.name == n or r.name.startswith(n + "-")), "")


# ----------------------------------------------------------------------------- adding a node


def test_adding_a_node_replaces_nothing(figure: Figure) -> None:
    d = diff(run("base"), run("add"))
    text = describe(d) + "\n"
    assert d.deleted == []
    assert [f"{c.before.type} {c.before.name}: {c.replacing}" for c in d.changed if c.replacing] == []
    assert {_node_of(r) for r in d.created} == {"aws-fra2"}
    summary = text.splitlines()[-1]
    assert re.fullmatch(
        r"[1-9]\d* to create, 0 to delete, [1-9]\d* to update in place, 0 to replace", summary
    )
    figure(f"dev stack + aws-fra2 (mocked pulumi up, live updates): {summary}")
    if os.environ.get(UPDATE_ENV) == "1":
        ADD_NODE_DIFF.write_text(text)
    assert ADD_NODE_DIFF.exists(), f"no {ADD_NODE_DIFF.name}: run with {UPDATE_ENV}=1 and commit it"
    committed = ADD_NODE_DIFF.read_text()
    shown = "\n".join(
        difflib.unified_diff(committed.splitlines(), text.splitlines(), "committed", "program", lineterm="")
    )
    assert text == committed, (
        f"adding a node now plans differently; if intended, regenerate with {UPDATE_ENV}=1 "
        f".venv/bin/pytest tests/program/test_program_live_updates.py and commit it:\n{shown}"
    )


def test_existing_nodes_change_only_through_their_commands_and_firewalls() -> None:
    d = diff(run("base"), run("add"))
    unexpected = []
    touched: dict[str, set[str]] = {}
    for c in d.changed:
        allowed = IN_PLACE.get(c.before.type, frozenset())
        if c.before.type == COMMAND:
            allowed = SYNC_INPUTS if c.before.name.endswith(("-sync", "-peers")) else HEALTH_INPUTS
        extra = {_top(p) for p in c.effective} - allowed
        if extra:
            unexpected.append(f"{c.before.type} {c.before.name}: {sorted(extra)}")
        touched.setdefault(_node_of(c.before), set()).add(c.before.type)
    assert unexpected == []
    # Every existing node got its new conf through its peers and sync commands (nothing else ran).
    applies = {
        c.before.name
        for c in d.changed
        if c.before.type == COMMAND and c.before.name.endswith(("-sync", "-peers"))
    }
    assert applies == {f"{n}-{step}" for n in LIVE for step in ("peers", "sync")}
    for c in d.changed:
        if c.before.type == COMMAND and c.before.name.endswith(("-sync", "-peers")):
            assert set(c.effective) == {"stdin"}
            assert "# aws-fra2\n" in wg_of(c.after.inputs["stdin"])


def test_unchanged_nodes_run_nothing() -> None:
    """Same config twice: no input of any resource differs, so no command runs again."""
    again = run_program("dev", dev_config(scenario_nodes("base")), secret_keys=SECRET_KEYS)
    d = diff(run("base"), again)
    assert (d.created, d.deleted, d.changed) == ([], [], [])


# ----------------------------------------------------------------------------- removing a node


def test_removing_a_node_removes_its_peer_everywhere() -> None:
    before, after = run("base"), run("remove")
    gone_key = before.outputs["nodes"]["hetzner-nbg"]["publicKey"].value
    gone_ip = before.outputs["nodes"]["hetzner-nbg"]["publicIp"].value
    d = diff(before, after)
    # The node's own resources, and the Hetzner project's shared ones (SSH keys, firewalls): it
    # was the last Hetzner node.
    project = "wgmesh-hcloud"
    shared = {project if r.name.startswith(project) else _node_of(r) for r in d.deleted}
    assert shared == {"hetzner-nbg", project}
    assert d.created == []
    assert [c.replacing for c in d.changed if c.replacing] == []
    for name in ("aws-fra", "gcp-fra"):
        for step in ("peers", "sync"):
            conf = wg_of(after.one(COMMAND, f"{name}-{step}").inputs["stdin"])
            assert gone_key not in conf and "# hetzner-nbg" not in conf and "10.77.0.3/32" not in conf
            assert gone_key in wg_of(before.one(COMMAND, f"{name}-{step}").inputs["stdin"])
    firewall_inputs = json.dumps(
        [reveal(r.inputs) for r in after.resources if "irewall" in r.type or "Group" in r.type]
    )
    assert gone_ip not in firewall_inputs


# ----------------------------------------------------------------------------- key rotation


def _deps(r: Captured) -> set[str]:
    return {u.rsplit("::", 1)[-1] for u in r.dependencies}


def test_rotation_changes_only_the_key_and_the_confs() -> None:
    d = diff(run("base"), run("rotate"))
    assert (d.created, d.deleted) == ([], [])
    replaced = [(c.before.name, c.replacing) for c in d.changed if c.replacing]
    assert replaced == [("gcp-fra-key", ("keepers.keyEpoch",))]
    commands = {c.before.name for c in d.changed if c.before.type == COMMAND and c.effective}
    assert commands == {f"{n}-{k}" for n in LIVE for k in ("peers", "sync", "health")}
    assert [c.before.name for c in d.changed if c.before.type == COMMAND and c.replacing] == []
    others = [
        c for c in d.changed if c.before.type != COMMAND and c.effective and c.before.name != "gcp-fra-key"
    ]
    assert others == []


def command_graph(r: ProgramRun) -> dict[str, set[str]]:
    """Each live-update command's command dependencies (by name)."""
    commands = {c.name for c in r.of_type(COMMAND)}
    return {c.name: _deps(c) & commands for c in r.of_type(COMMAND)}


@pytest.mark.parametrize("scenario", ["base", "rotate", "rotated-earlier", "rotate-after-history", "add"])
def test_every_node_switches_after_all_its_peers_learned_its_conf(scenario: str) -> None:
    """Peers phase, then sync phase, then health, from the topology alone (whatever the epochs)."""
    r = run(scenario)
    names = sorted({_node_of(c) for c in r.of_type(COMMAND)})
    assert names == sorted([*LIVE, *(["aws-fra2"] if scenario == "add" else [])])
    graph = command_graph(r)
    for node in names:
        peers = {p for p in names if p != node}  # the dev stack is a full mesh
        assert graph[f"{node}-peers"] == set(), "the peers phase waits for no other command"
        assert node in _deps(r.one(COMMAND, f"{node}-peers"))  # ... only for its VM
        assert graph[f"{node}-sync"] == {f"{p}-peers" for p in {node, *peers}}
        assert graph[f"{node}-health"] == {f"{p}-sync" for p in names}


def test_command_order_does_not_depend_on_key_epochs() -> None:
    """The old order (lower keyEpoch first) made a node rotated earlier wait for one rotated now."""
    graphs = [command_graph(run(s)) for s in ("base", "rotate", "rotated-earlier", "rotate-after-history")]
    assert all(g == graphs[0] for g in graphs)


def test_rotation_after_an_earlier_rotation_pushes_the_new_key_first() -> None:
    """gcp-fra 0 -> 1 while aws-fra sits at 2: aws-fra learns gcp-fra's key before gcp-fra switches."""
    before, after = run("rotated-earlier"), run("rotate-after-history")
    old_key = before.outputs["nodes"]["gcp-fra"]["publicKey"].value
    new_key = after.outputs["nodes"]["gcp-fra"]["publicKey"].value
    assert old_key != new_key
    d = diff(before, after)
    changed = {c.before.name for c in d.changed if c.before.type == COMMAND and c.effective}
    assert {"aws-fra-peers", "hetzner-nbg-peers", "gcp-fra-sync"} <= changed
    for peer in ("aws-fra", "hetzner-nbg"):
        conf = wg_of(after.one(COMMAND, f"{peer}-peers").inputs["stdin"])
        assert new_key in conf and old_key not in conf
        assert f"{peer}-peers" in _deps(after.one(COMMAND, "gcp-fra-sync"))
    assert after.one(COMMAND, "aws-fra-peers").inputs["create"].endswith(" wgmesh-apply --peers-only")
    assert after.one(COMMAND, "gcp-fra-sync").inputs["create"].endswith(" wgmesh-apply")  # the full apply


# ----------------------------------------------------------------------------- the commands


def test_sync_command_per_cloud_node_after_its_vm() -> None:
    base = run("base")
    users = {"aws-fra": "ubuntu", "gcp-fra": "ubuntu", "hetzner-nbg": "root"}
    ips = {n: base.outputs["nodes"][n]["publicIp"].value for n in users}
    for node, user in users.items():
        for step in ("peers", "sync"):
            sync = base.one(COMMAND, f"{node}-{step}")
            connection = reveal(sync.inputs["connection"])
            assert (connection["host"], connection["user"]) == (ips[node], user)
            assert connection["privateKey"] == ADMIN_KEY
            assert "hostKey" not in connection
            # A new VM's sshd answers within 24 dials of at most 10 s each.
            assert (connection["dialErrorLimit"], connection["perDialTimeout"]) == (
                DIAL_ERROR_LIMIT,
                PER_DIAL_TIMEOUT,
            )
            assert (DIAL_ERROR_LIMIT, PER_DIAL_TIMEOUT) == (24, 10)
            assert sync.inputs["create"] == sync.inputs["update"]
            # A no-op naming the VM (a replaced VM re-runs it), then a new VM finishes first boot.
            vm_id = vm_id_of(base, node)
            assert sync.inputs["create"].startswith(f": wgmesh-vm={vm_id}; if command -v cloud-init")
            assert ("sudo -n" in sync.inputs["create"]) == (user != "root")
            assert sync.inputs["create"].endswith(
                " wgmesh-apply --peers-only" if step == "peers" else " wgmesh-apply"
            )
            # The exact string the VM lab runs over real SSH (lab.vm.live.sync_command), after the no-op.
            command = remote_apply_command(user != "root", peers_only=step == "peers")
            assert sync.inputs["create"] == vm_command(vm_id, command)
            assert sync.inputs["logging"] == "stdoutAndStderr"
            assert node in _deps(sync)  # the VM (and its firewall) exist before the first apply
            # The node's whole host config, around the wg0.conf the wgConfigs output shows.
            assert reveal(sync.inputs["stdin"]) == reveal(base.outputs["nodePayloads"][node].value)
            assert wg_of(sync.inputs["stdin"]) == reveal(base.outputs["wgConfigs"][node].value)
            assert "triggers" not in sync.inputs  # a trigger change would replace the command


def test_pinned_host_key_reaches_the_connection() -> None:
    connection = reveal(run("pinned").one(COMMAND, "aws-fra-sync").inputs["connection"])
    assert connection["hostKey"] == HOST_KEY


def test_health_commands_and_outputs() -> None:
    base = run("base")
    health = {r.name: r for r in base.of_type(COMMAND) if r.name.endswith("-health")}
    assert sorted(health) == ["aws-fra-health", "gcp-fra-health", "hetzner-nbg-health"]
    script = health["aws-fra-health"].inputs["create"]
    assert script == health["aws-fra-health"].inputs["update"]
    confs = reveal([base.outputs["nodePayloads"][n].value for n in sorted(LIVE)])
    joined = "\0".join(f"{n}\0{c}" for n, c in zip(sorted(LIVE), confs, strict=True))
    digest = hashlib.sha256(joined.encode()).hexdigest()
    vm_id = vm_id_of(base, "aws-fra")
    assert script.startswith(f": wgmesh-vm={vm_id}; : wgmesh-mesh-sha256={digest}; sudo -n -- bash -c ")
    for peer in ("gcp-fra", "hetzner-nbg"):
        assert base.outputs["nodes"][peer]["publicKey"].value in script
    assert "laptop" not in script  # roaming clients are not expected to be online
    tables = base.outputs["meshHealth"]
    assert {n: t.value for n, t in tables.items()} == {n: f"(mocked stdout of {n}-health)" for n in (
        "aws-fra", "gcp-fra", "hetzner-nbg")}  # fmt: skip
    assert base.outputs["diagram"].value.startswith("flowchart LR\n")


def test_without_live_updates_there_are_no_commands() -> None:
    plain = run_program("dev", dev_config(live=False, key=None))
    assert plain.error is None
    assert plain.of_type(COMMAND, allow_empty=True) == [] and "meshHealth" not in plain.outputs
    assert "diagram" in plain.outputs


# ----------------------------------------------------------------------------- secrets and policy


def _strings(value: Any, secret: bool = False) -> Iterator[tuple[str, bool]]:
    if is_secret(value):
        yield from _strings(value["value"], True)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v, secret)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, secret)
    elif isinstance(value, str):
        yield value, secret


def test_ssh_key_and_wireguard_keys_only_in_secrets() -> None:
    base = run("base")
    private = {
        m.group(1)
        for r in base.of_type(COMMAND)
        if r.name.endswith("-sync")
        for m in re.finditer(r"^PrivateKey = (\S+)$", wg_of(r.inputs["stdin"]), re.M)
    }
    assert len(private) == 3
    needles = {*private, ADMIN_KEY_BODY}
    for r in base.resources:
        for text, secret in _strings(r.inputs):
            leaked = {n for n in needles if n in text}
            assert secret or not leaked, f"{r.type} {r.name}: key material in a non-secret input"
    for r in base.of_type(COMMAND):
        assert is_secret(r.inputs["connection"]) or is_secret(r.inputs["connection"]["privateKey"])
        if r.name.endswith(("-sync", "-peers")):
            assert is_secret(r.inputs["stdin"])
        else:
            assert "stdin" not in r.inputs


def test_live_stack_passes_the_policy_pack() -> None:
    base = run("base")
    found = []
    for r in base.resources:
        for name, rule in MANDATORY_RULES.items():
            messages = rule(r.type, r.inputs) if rule is not wireguard_world_only_for_roaming else []
            found += [f"{r.type} {r.name}: {name}: {m}" for m in messages]
    resources = [(r.type, r.inputs) for r in base.resources]
    found += [f"{name}: {m}" for name, rule in STACK_RULES.items() for m in rule(resources)]
    assert found == []
    assert base.of_type(COMMAND)  # the stack rule had something to judge


@pytest.mark.parametrize(
    ("key", "secret", "expected"),
    [
        (None, False, "wgmesh:sshPrivateKey: is required with wgmesh:mesh.liveUpdates: set it with "
                      "`pulumi config set --secret wgmesh:sshPrivateKey < ~/.ssh/id_ed25519`"),
        (ADMIN_KEY, False, "wgmesh:sshPrivateKey: must be a secret, not plain text in the stack file"),
        ("hunter2-not-a-key", True, "wgmesh:sshPrivateKey: is not a PEM/OpenSSH private key"),
    ],
)  # fmt: skip
def test_ssh_private_key_problems_name_the_key_never_the_value(
    key: str | None, secret: bool, expected: str
) -> None:
    result = run_program("dev", dev_config(key=key), secret_keys=SECRET_KEYS if secret else ())
    assert result.error is not None
    message = str(result.error)
    assert message.startswith(expected) and "\n" not in message.strip()
    assert "hunter2" not in message and ADMIN_KEY_BODY not in message
    assert result.resources == []


if __name__ == "__main__":
    print(describe(diff(run("base"), run("add"))))


# ------------------------------------------------------- outputs as the real engine marks them


@dataclass(frozen=True)
class Options:
    """What a resource asked the engine for, beyond its inputs (the shared mocks do not keep it)."""

    additional_secret_outputs: tuple[str, ...]
    replace_on_changes: tuple[str, ...]


def _has_secret(value: Any) -> bool:
    if is_secret(value):
        return True
    if isinstance(value, dict):
        return any(_has_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secret(v) for v in value)
    return False


def _as_secret(value: Any) -> Any:
    return value if is_secret(value) else {SIG_KEY: SECRET_SIG, "value": value}


@cache
def engine_like_run(unsecret: bool = True) -> tuple[ProgramRun, dict[tuple[str, str], Options]]:
    """The base dev run with command outputs secret the way `pulumi up` returns them.

    pulumi-command returns every output of a command with a secret input (the SSH key) as a
    secret; the shared mocks echo plain values. Also records each resource's
    `additional_secret_outputs` and `replace_on_changes`. `unsecret=False`: the control run,
    with `Output.unsecret` doing nothing.
    """
    options: dict[tuple[str, str], Options] = {}

    class EngineLikeMocks(wgmesh_mocks.WgmeshMocks):
        def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
            rid, outputs = super().new_resource(args)
            if args.typ == COMMAND and _has_secret(args.inputs):
                outputs = {k: _as_secret(v) for k, v in outputs.items()}
            return rid, outputs

    class EngineLikeMonitor(wgmesh_mocks.RecordingMonitor):
        def RegisterResource(self, request: Any) -> Any:
            options[(request.type, request.name)] = Options(
                tuple(request.additionalSecretOutputs), tuple(request.replaceOnChanges)
            )
            return super().RegisterResource(request)

    with pytest.MonkeyPatch.context() as patch:
        if not unsecret:
            patch.setattr(pulumi.Output, "unsecret", staticmethod(lambda value: value))
        patch.setattr(wgmesh_mocks, "WgmeshMocks", EngineLikeMocks)
        patch.setattr(wgmesh_mocks, "RecordingMonitor", EngineLikeMonitor)
        result = run_program("dev", dev_config(scenario_nodes("base")), secret_keys=SECRET_KEYS)
    assert result.error is None, result.error
    return result, options


def test_mesh_health_is_readable_while_the_configs_stay_secret() -> None:
    """`pulumi stack output meshHealth` shows the tables; they hold names, addresses and ages only."""
    control, _ = engine_like_run(unsecret=False)
    assert all(t.secret for t in control.outputs["meshHealth"].values())  # what `pulumi up` would show ...
    run_, _ = engine_like_run()
    tables = run_.outputs["meshHealth"]
    assert sorted(tables) == sorted(LIVE)
    for node, table in tables.items():
        assert not table.secret, f"meshHealth.{node} would print as [secret]"  # ... without unsecret()
        assert table.value == f"(mocked stdout of {node}-health)"
    configs = run_.outputs["wgConfigs"]
    assert sorted(configs) == sorted(LIVE) and all(c.secret for c in configs.values())


def test_apply_commands_keep_stdin_secret_in_their_outputs() -> None:
    _, options = engine_like_run()
    applies = {n: o for (t, n), o in options.items() if t == COMMAND and n.endswith(("-peers", "-sync"))}
    assert sorted(applies) == sorted(f"{n}-{s}" for n in LIVE for s in ("peers", "sync"))
    assert all("stdin" in o.additional_secret_outputs for o in applies.values())


def test_no_resource_is_replaced_on_changes() -> None:
    """`replace_on_changes` would turn a conf change into a replacement instead of an update.

    The program sets it nowhere; pulumi-command's SDK adds `triggers[*]` to every command, which
    never fires because no command has triggers.
    """
    run_, options = engine_like_run()
    assert len(options) > 20
    program_set = {
        f"{t} {n}": o.replace_on_changes
        for (t, n), o in options.items()
        if o.replace_on_changes and not (t == COMMAND and o.replace_on_changes == ("triggers[*]",))
    }
    assert program_set == {}
    commands = run_.of_type(COMMAND)
    assert len(commands) == 3 * len(LIVE) and [c.name for c in commands if "triggers" in c.inputs] == []
