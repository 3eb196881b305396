"""What `pulumi up` would do between two configs, measured by running the real program twice.

The mocks accept anything and know no state, so a plain before/after diff of inputs says
nothing about replacements, ignored inputs or cascades. This module adds the part of Pulumi's
engine that decides them (pulumi/pulumi pkg/resource/deploy/step_generator.go):

- `ignoreChanges`: before diffing, every ignored path of the new inputs is reset to its value in
  the stored (old) inputs, or deleted when the old inputs have none (`processIgnoreChanges`,
  `PropertyPath.Reset` in sdk/go/common/resource/properties_path.go). This happens for updates
  and replacements alike, so a replacement is created from the stored value: a replaced VM boots
  its first user data. The second run's mocks therefore echo the stored values for ignored paths,
  as the provider would return them.
- replacement: an effective change of a path the provider marks ForceNew (`FORCES_REPLACEMENT`,
  from the providers' schemas) or of a path in the resource's `replaceOnChanges`
  (`applyReplaceOnChanges`) replaces the resource; any other effective change updates it.
- cascades: a replaced resource gets a new id and new computed outputs. Dependents whose inputs
  hold them update or are replaced in turn (`calculateDependentReplacements`; in `up`, the new
  values). The after-program is rerun with the mocks giving every replaced URN a new generation
  (fresh ids and addresses) until the set of replaced resources is a fixpoint.

`simulate(...)` returns the created / updated / replaced / deleted sets and what the live nodes
do: which remote commands run, which nodes' running config goes stale.
"""

from __future__ import annotations

import base64
import copy
import gzip
import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from cloud_catalog import CloudCatalog
from pulumi.runtime.mocks import MockResourceArgs
from wgmesh_mocks import (
    Captured,
    ProgramRun,
    WgmeshMocks,
    is_secret,
    reveal,
    run_program,
)

from mesh.contracts import label_value

COMMAND = "command:remote:Command"

# Inputs whose change replaces the resource, per type: the providers' ForceNew fields (schemas
# of terraform-provider-aws / -google / -hcloud as bridged by pulumi-aws 7, pulumi-gcp 8+,
# pulumi-hcloud 1; pulumi-random; pulumi-command). Keys are the engine's camelCase input names;
# an entry with a dot or `[*]` is a nested ForceNew field (its block itself updates in place).
FORCES_REPLACEMENT: dict[str, frozenset[str]] = {
    # user data: replaced with userDataReplaceOnChange, else a stop/start; both break day-2.
    # ipv6Addresses: "Specify one or more IPv6 addresses ... (forces new resource)" (aws_instance).
    "aws:ec2/instance:Instance": frozenset(
        {"ami", "availabilityZone", "subnetId", "privateIp", "keyName", "associatePublicIpAddress",
         "userData", "userDataBase64", "placementGroup", "tenancy", "hostId", "ipv6AddressCount",
         "ipv6Addresses"}
    ),
    "aws:ec2/eip:Eip": frozenset({"domain", "address", "networkBorderGroup", "publicIpv4Pool"}),
    "aws:ec2/eipAssociation:EipAssociation": frozenset(
        {"allocationId", "instanceId", "networkInterfaceId", "privateIpAddress", "publicIp"}
    ),
    "aws:ec2/securityGroup:SecurityGroup": frozenset({"name", "namePrefix", "description", "vpcId"}),
    "aws:ec2/vpc:Vpc": frozenset({"cidrBlock", "instanceTenancy"}),
    "aws:ec2/subnet:Subnet": frozenset({"vpcId", "cidrBlock", "availabilityZone", "availabilityZoneId"}),
    "aws:ec2/internetGateway:InternetGateway": frozenset(),  # vpc_id attaches/detaches in place
    "aws:ec2/routeTable:RouteTable": frozenset({"vpcId"}),
    "aws:ec2/route:Route": frozenset(
        {"routeTableId", "destinationCidrBlock", "destinationIpv6CidrBlock", "destinationPrefixListId"}
    ),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": frozenset({"subnetId", "gatewayId"}),
    "aws:ec2/mainRouteTableAssociation:MainRouteTableAssociation": frozenset({"vpcId"}),
    # google_compute_instance: network_interface is ForceNew as a list (count), and inside it
    # nic_type, queue_count and the IPv6 access config's external_ipv6 (+ prefix length, name);
    # network, subnetwork, access_config and stack_type update in place (stopping the VM).
    "gcp:compute/instance:Instance": frozenset(
        {"name", "zone", "project", "bootDisk", "metadataStartupScript", "hostname", "scratchDisks",
         "reservationAffinity", "confidentialInstanceConfig", "description", "guestAccelerators",
         "networkInterfaces[*].nicType", "networkInterfaces[*].queueCount",
         "networkInterfaces[*].ipv6AccessConfigs[*].externalIpv6",
         "networkInterfaces[*].ipv6AccessConfigs[*].externalIpv6PrefixLength",
         "networkInterfaces[*].ipv6AccessConfigs[*].name"}
    ),
    "gcp:compute/address:Address": frozenset(
        {"name", "address", "addressType", "region", "networkTier", "project", "subnetwork", "purpose",
         "ipVersion", "ipv6EndpointType", "description"}
    ),
    "gcp:compute/firewall:Firewall": frozenset({"name", "network", "project", "direction"}),
    "gcp:compute/network:Network": frozenset(
        {"name", "autoCreateSubnetworks", "project", "description"}
    ),  # mtu and routing_mode update in place
    "gcp:compute/subnetwork:Subnetwork": frozenset({"name", "network", "region", "project"}),
    "gcp:compute/route:Route": frozenset(
        {"name", "destRange", "network", "nextHopInstance", "nextHopInstanceZone", "nextHopIp",
         "nextHopGateway", "priority", "tags", "project", "description"}
    ),
    "gcp:compute/router:Router": frozenset({"name", "network", "region", "project"}),
    "gcp:compute/routerNat:RouterNat": frozenset({"name", "router", "region", "project"}),
    # hcloud_server: user_data, image, location, datacenter, ssh_keys force a new server;
    # server_type (resize), firewall_ids, labels and public_net update in place.
    "hcloud:index/server:Server": frozenset({"userData", "image", "location", "datacenter", "sshKeys"}),
    "hcloud:index/primaryIp:PrimaryIp": frozenset({"type", "datacenter", "location", "assigneeType"}),
    "hcloud:index/sshKey:SshKey": frozenset({"publicKey"}),
    "hcloud:index/firewall:Firewall": frozenset(),
    # hcloud_network_route: network_id, destination and gateway are all ForceNew (a route has no
    # update action in the Cloud API, only add_route and delete_route).
    "hcloud:index/networkRoute:NetworkRoute": frozenset({"networkId", "destination", "gateway"}),
    "random:index/randomBytes:RandomBytes": frozenset({"length", "keepers"}),
    COMMAND: frozenset({"triggers"}),  # the SDK marks triggers replace_on_changes; the rest updates
}  # fmt: skip

# ForceNew decided by the provider from the values (CustomizeDiff), per (type, input).
# google_compute_subnetwork ip_cidr_range: `customdiff.ForceNewIfChange("ip_cidr_range",
# isShrinkageIpCidr)`: growing the range updates in place, any other change replaces it
# (terraform-provider-google, services/compute/resource_compute_subnetwork.go).
CUSTOM_FORCE_NEW: dict[tuple[str, str], Callable[[Any, Any], bool]] = {}


def _shrinks_or_moves(old: Any, new: Any) -> bool:
    if not isinstance(old, str) or not isinstance(new, str):
        return bool(old != new)
    before, after = ipaddress.ip_network(old), ipaddress.ip_network(new)
    grows = before.version == after.version and before.subnet_of(after)  # type: ignore[arg-type]
    return not grows


CUSTOM_FORCE_NEW[("gcp:compute/subnetwork:Subnetwork", "ipCidrRange")] = _shrinks_or_moves

# In-place updates the cloud performs by stopping the VM (the node restarts; its disk stays):
# AWS ModifyInstanceAttribute needs a stopped instance for the type; GCP setMachineType needs a
# TERMINATED instance (allow_stopping_for_update); Hetzner's change_type action needs the server
# powered off (the provider shuts it down), and so does assigning a primary IP (docs.hetzner.cloud,
# "Assign a Primary IP": "A Server must be powered off").
RESTARTS: dict[str, frozenset[str]] = {
    "aws:ec2/instance:Instance": frozenset({"instanceType"}),
    "gcp:compute/instance:Instance": frozenset({"machineType", "canIpForward", "networkInterfaces"}),
    "hcloud:index/server:Server": frozenset({"serverType", "publicNets"}),
}
# Where each VM type keeps its cloud-init user data (always in ignoreChanges).
USER_DATA = {
    "aws:ec2/instance:Instance": "userDataBase64",
    "gcp:compute/instance:Instance": 'metadata["user-data"]',
    "hcloud:index/server:Server": "userData",
}
VM_TYPES = frozenset(USER_DATA)
STEP_ORDER = {"peers": 0, "sync": 1, "health": 2}  # the order live updates run a node's commands
NETWORK_TYPES = frozenset(
    {"aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/routeTable:RouteTable",
     "aws:ec2/internetGateway:InternetGateway", "gcp:compute/network:Network",
     "gcp:compute/subnetwork:Subnetwork"}
)  # fmt: skip


# ----------------------------------------------------------------------------- property paths


def parse_path(path: str) -> list[str | int]:
    """Pulumi's property-path syntax: `a.b`, `a["x-y"]`, `a[0]`, `a[*]`."""
    out: list[str | int] = []
    for m in re.finditer(r'\["((?:[^"\\]|\\.)*)"\]|\[(\d+|\*)\]|\.?([^.\[\]]+)', path):
        quoted, index, plain = m.groups()
        if quoted is not None:
            out.append(quoted.replace('\\"', '"'))
        elif index is not None:
            out.append("*" if index == "*" else int(index))
        else:
            out.append(plain)
    return out


def top(path: str) -> str:
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def covers(ignore: str, path: str) -> bool:
    return path == ignore or path.startswith((ignore + ".", ignore + "["))


def _unwrap(value: Any) -> Any:
    while is_secret(value):
        value = value["value"]
    return value


def _reset(path: list[str | int], old: Any, new: Any) -> None:
    """`PropertyPath.reset`: set `new` at `path` to `old`'s value there, or delete it when `old`
    has none; never creates intermediate locations or array slots. Secrets are walked through."""
    old, new = _unwrap(old), _unwrap(new)
    key, rest = path[0], path[1:]
    if key == "*":
        keys: list[Any] = []
        if isinstance(old, dict) and isinstance(new, dict):
            keys = sorted(set(old) & set(new))
        elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
            keys = list(range(len(old)))
        for k in keys:
            if rest:
                _reset(rest, old[k], new[k])
            else:
                new[k] = copy.deepcopy(old[k])
        return
    if isinstance(key, int):
        if not (isinstance(old, list) and isinstance(new, list)) or key >= min(len(old), len(new)):
            return
        if rest:
            _reset(rest, old[key], new[key])
        else:
            new[key] = copy.deepcopy(old[key])
        return
    if not isinstance(new, dict):
        return
    has_old = isinstance(old, dict) and key in old
    if not rest:
        if has_old:
            new[key] = copy.deepcopy(old[key])
        else:
            new.pop(key, None)
        return
    if has_old and key in new:
        _reset(rest, old[key], new[key])


def process_ignore_changes(
    inputs: Mapping[str, Any], old: Mapping[str, Any], ignore: tuple[str, ...]
) -> dict[str, Any]:
    """The inputs the engine diffs and sends to the provider: ignored paths reset to `old`."""
    out = copy.deepcopy(dict(inputs))
    for path in ignore:
        _reset(parse_path(path), dict(old), out)
    return out


def values_at(value: Any, path: list[str | int]) -> list[Any]:
    """Every value a (wildcard) path reaches, in order; a missing step reaches None."""
    value = reveal(value)
    if not path:
        return [value]
    key, rest = path[0], path[1:]
    if key == "*":
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
        return [v for item in items for v in values_at(item, rest)]
    if isinstance(key, int):
        return values_at(value[key], rest) if isinstance(value, list) and key < len(value) else [None]
    return values_at(value.get(key), rest) if isinstance(value, dict) else [None]


def changed_paths(a: Any, b: Any, prefix: str = "") -> Iterator[str]:
    """Changed paths in Pulumi's property-path syntax (`metadata["user-data"]`, `a.b`): objects are
    walked, any other changed value (list, scalar, secret) is one path."""
    a, b = reveal(a), reveal(b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in sorted(set(a) | set(b)):
            sub = k if not prefix else (f"{prefix}.{k}" if re.fullmatch(r"\w+", k) else f'{prefix}["{k}"]')
            if a.get(k) != b.get(k):
                yield from changed_paths(a.get(k), b.get(k), sub)
    elif a != b:
        yield prefix


# ----------------------------------------------------------------------------- one resource's change


@dataclass(frozen=True)
class Change:
    """One existing resource whose inputs differ: which paths, and which of them Pulumi ignores."""

    before: Captured
    after: Captured
    paths: tuple[str, ...]

    @property
    def ignore(self) -> tuple[str, ...]:
        return self.after.ignore_changes or self.before.ignore_changes

    @property
    def sent(self) -> dict[str, Any]:
        """The new inputs as the engine diffs them (ignored paths hold the stored values)."""
        return process_ignore_changes(self.after.inputs, self.before.inputs, self.ignore)

    @property
    def effective(self) -> tuple[str, ...]:
        """Changed paths the engine acts on (ignoreChanges drops the rest)."""
        return tuple(p for p in self.paths if not any(covers(i, p) for i in self.ignore))

    @property
    def replacing(self) -> tuple[str, ...]:
        """The effective changes that make the engine replace the resource."""
        forcing = FORCES_REPLACEMENT.get(self.before.type)
        assert forcing is not None, (
            f"no replacement list for {self.before.type}: add it from the provider docs"
        )
        found = [p for p in self.effective if top(p) in forcing]
        found += [
            p
            for p in self.effective
            if any(r == "*" or covers(r.removesuffix("[*]"), p) for r in self.after.replace_on_changes)
        ]
        for entry in sorted(forcing - {top(p) for p in found}):
            if ("." in entry or "[" in entry) and top(entry) in {top(p) for p in self.effective}:
                steps = parse_path(entry)
                old_values = [v for v in values_at(self.before.inputs, steps) if v is not None]
                if old_values != [v for v in values_at(self.sent, steps) if v is not None]:
                    found.append(entry)
        for (typ, name), forces in CUSTOM_FORCE_NEW.items():
            changed = typ == self.before.type and name in {top(p) for p in self.effective}
            if changed and forces(reveal(self.before.inputs.get(name)), reveal(self.sent.get(name))):
                found.append(name)
        return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class Diff:
    created: list[Captured]
    deleted: list[Captured]
    changed: list[Change]


def diff(before: ProgramRun, after: ProgramRun) -> Diff:
    old, new = before.by_urn(), after.by_urn()
    changed = []
    for urn in sorted(set(old) & set(new)):
        paths = tuple(changed_paths(old[urn].inputs, new[urn].inputs))
        if paths:
            changed.append(Change(old[urn], new[urn], paths))
    return Diff(
        created=[new[u] for u in sorted(set(new) - set(old))],
        deleted=[old[u] for u in sorted(set(old) - set(new))],
        changed=changed,
    )


# ----------------------------------------------------------------------------- the engine's mocks


class EngineMocks(WgmeshMocks):
    """Mocks that answer as the provider would for a stack with `state` stored.

    Ignored paths echo the stored values (the engine sent those); a resource in `replaced` gets
    the next generation's id and computed outputs (a new VM, a new address, ...).
    """

    def __init__(
        self, catalog: CloudCatalog | None, state: Mapping[str, Captured], replaced: frozenset[str]
    ) -> None:
        super().__init__(catalog)
        self.state = state
        self.replaced = replaced

    def _urn(self, typ: str, name: str) -> str:
        assert self.monitor is not None
        return self.monitor.options[(typ, name)][0]

    def physical_name(self, typ: str, name: str) -> str:
        return f"{name}~g1" if self._urn(typ, name) in self.replaced else name

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        assert self.monitor is not None
        _, _, ignore, _ = self.monitor.options[(args.typ, args.name)]
        old = self.state.get(self._urn(args.typ, args.name))
        if old is None or not ignore:
            return super().new_resource(args)
        raw = dict(args.inputs)
        sent = process_ignore_changes(raw, old.inputs, ignore)
        rid, outputs = super().new_resource(
            MockResourceArgs(args.typ, args.name, sent, args.provider, args.resource_id, args.custom)
        )
        with self.lock:  # keep what the program asked for: the diff reports the ignored change
            entry = self.resources[(args.typ, args.name)]
            self.resources[(args.typ, args.name)] = (entry[0], raw, *entry[2:])
        return rid, outputs


# ----------------------------------------------------------------------------- the outcome


def short(r: Captured) -> str:
    """`aws:Instance aws-fra`: the package and class of the type, and the name."""
    return f"{r.type.split(':', 1)[0]}:{r.type.rsplit(':', 1)[-1]} {r.name}"


@dataclass(frozen=True)
class Outcome:
    """What `pulumi up` from `before` to `after` does, per resource (`short` names) and per node."""

    before: ProgramRun
    after: ProgramRun
    diff: Diff
    rounds: int  # program runs until the replaced set was a fixpoint
    updated_resources: tuple[Captured, ...]
    replaced_resources: tuple[Captured, ...]
    created: frozenset[str]
    updated: frozenset[str]
    replaced: frozenset[str]
    deleted: frozenset[str]
    commands: dict[str, str] = field(default_factory=dict)  # command name -> create/update/replace
    nodes: dict[str, str] = field(default_factory=dict)  # node -> what it does (see node_effects)

    def of(self, kind: str) -> frozenset[str]:
        return frozenset(getattr(self, kind))


def simulate(
    stack: str,
    before: Mapping[str, str],
    after: Mapping[str, str],
    secret_keys: tuple[str, ...] = (),
    max_rounds: int = 5,
    first: ProgramRun | None = None,
    force: frozenset[str] = frozenset(),
) -> Outcome:
    """Run the program for `before` (or take `first`), then for `after` until replacements settle.

    `force`: resources (`short` names) replaced whatever their inputs, as `pulumi up --replace`.
    """
    old = first or run_program(stack, before, secret_keys=secret_keys)
    assert old.error is None, old.error
    state = old.by_urn()
    forced = frozenset(r.urn for r in old.resources if short(r) in force)
    assert len(forced) == len(force), f"--replace names no resource: {sorted(force)}"
    replaced: frozenset[str] = forced
    # The next preview finds the networks the first `up` made (site networks stay put).
    labels = {"wgmesh-mesh": label_value("wgmesh"), "wgmesh-stack": label_value(stack)}
    clouds = CloudCatalog().remember_networks(old.resources, labels)
    rounds = 0
    while True:
        rounds += 1

        def make(catalog: CloudCatalog | None, done: frozenset[str] = replaced) -> WgmeshMocks:
            return EngineMocks(catalog, state, done)

        new = run_program(stack, after, secret_keys=secret_keys, catalog=clouds, mocks=make)
        assert new.error is None, new.error
        d = diff(old, new)
        now = forced | {c.before.urn for c in d.changed if c.replacing}
        if now == replaced:
            break
        assert rounds < max_rounds, f"replacements did not settle in {max_rounds} runs: {sorted(now)}"
        replaced = now
    updated = [c.after for c in d.changed if c.effective and c.before.urn not in replaced]
    swapped = [r for r in new.resources if r.urn in replaced]
    commands = {r.name: "create" for r in d.created if r.type == COMMAND}
    commands |= {r.name: "update" for r in updated if r.type == COMMAND}
    commands |= {r.name: "replace" for r in swapped if r.type == COMMAND}
    outcome = Outcome(
        before=old,
        after=new,
        diff=d,
        rounds=rounds,
        updated_resources=tuple(updated),
        replaced_resources=tuple(swapped),
        created=frozenset(short(r) for r in d.created),
        updated=frozenset(short(r) for r in updated),
        replaced=frozenset(short(r) for r in swapped),
        deleted=frozenset(short(r) for r in d.deleted),
        commands=dict(sorted(commands.items())),
    )
    object.__setattr__(outcome, "nodes", node_effects(outcome))
    return outcome


# ----------------------------------------------------------------------------- what a running node does


def _vm(run: ProgramRun, node: str) -> Captured | None:
    return next((r for r in run.resources if r.type in VM_TYPES and r.name == node), None)


def _user_data(r: Captured) -> str:
    """The VM's user data as cloud-init reads it (AWS sends base64, gzip when large)."""
    (value,) = values_at(r.inputs, parse_path(USER_DATA[r.type]))
    if value is None or r.type != "aws:ec2/instance:Instance":
        return str(value)
    raw = base64.b64decode(value)
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()


def host_config(user_data: str) -> str:
    """The user data without wg0.conf: the host's own config (nft, sysctl, keys, guards, users)."""
    try:
        doc = yaml.safe_load(user_data)
    except yaml.YAMLError:
        return user_data
    if not isinstance(doc, dict):
        return user_data
    files = [f for f in doc.get("write_files", []) if not str(f.get("path", "")).endswith("/wg0.conf")]
    return json.dumps({**doc, "write_files": files}, sort_keys=True, default=str)


def _conf(run: ProgramRun, node: str) -> Any:
    confs = run.outputs.get("wgConfigs", {})
    return confs[node].value if node in confs else None


def _carries_host_config(run: ProgramRun, node: str) -> bool:
    """Whether the node's full apply sends more than wg0.conf (today's apply installs wg0.conf only)."""
    sync = next((r for r in run.of_type(COMMAND) if r.name == f"{node}-sync"), None)
    return sync is not None and reveal(sync.inputs.get("stdin")) != _conf(run, node)


def node_effects(o: Outcome) -> dict[str, str]:
    """Per node that exists before or after: one of

    - `new`: created, boots the current config;
    - `gone`: deleted;
    - `replaced, boots stored user data` (+ `, stale` when the program's user data differs from
      the stored one, i.e. the new VM starts with an old config), and whether an apply runs;
    - `applies (peers, sync)` etc.: the commands that run on it;
    - `stale: wg0.conf` / `stale: host config`: what changed for it that nothing applies;
    - `restarts (<input>)`: an in-place update the cloud does by stopping the VM;
    - `-`: nothing.
    """
    out: dict[str, str] = {}
    names = sorted({r.name for run in (o.before, o.after) for r in run.resources if r.type in VM_TYPES})
    changes = {c.before.name: c for c in o.diff.changed if c.before.type in VM_TYPES}
    for node in names:
        old, new = _vm(o.before, node), _vm(o.after, node)
        if old is None:
            out[node] = "new"
            continue
        if new is None:
            out[node] = "gone"
            continue
        parts: list[str] = []
        runs = sorted(
            (name.removeprefix(node + "-") for name in o.commands if name.startswith(node + "-")),
            key=lambda step: (STEP_ORDER.get(step, len(STEP_ORDER)), step),
        )
        applied = any(step in ("peers", "sync") for step in runs)
        change = changes.get(node)
        old_data, new_data = _user_data(old), _user_data(new)
        if short(new) in o.replaced:
            stale_boot = " (outdated)" if old_data != new_data else ""
            parts.append(f"replaced: boots its first user data{stale_boot}")
        elif change is not None:
            restarts = sorted({top(p) for p in change.effective} & RESTARTS[new.type])
            if restarts:
                parts.append(f"restarts ({', '.join(restarts)})")
        if runs:
            parts.append("runs " + "+".join(runs))
        stale = []
        if _conf(o.before, node) != _conf(o.after, node) and not applied:
            stale.append("wg0.conf")
        if host_config(old_data) != host_config(new_data) and not (
            applied and _carries_host_config(o.after, node)
        ):
            stale.append("host config")
        if stale:
            parts.append("stale " + " + ".join(stale))
        out[node] = "; ".join(parts) or "-"
    return out
