"""Run the real `__main__.py` under `pulumi.runtime.set_mocks` and capture what it would create.

Shared by the program tests and `bench/program.py`. Each run gets a fresh `contextvars.Context`
so several stacks can run in one process (Pulumi keeps its settings, root stack and config in
context variables). The mocks echo inputs back as outputs, add the few computed outputs the
program reads (static IPs, ids, random bytes), and raise on any invoke they do not know, so a
new lookup cannot silently return nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import ipaddress
import json
import runpy
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pulumi
from cloud_catalog import CloudCatalog
from contract_mocks import ContractChecker
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks
from pulumi.runtime.settings import SETTINGS, get_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

REPO = Path(__file__).resolve().parents[2]
PROGRAM = REPO / "__main__.py"
PROJECT = "wgmesh"
# How secrets travel in mock inputs (pulumi/sdk/go/common/resource/properties.go).
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
MOCK_IP_NET = ipaddress.IPv4Network("100.64.0.0/10")  # shared address space: never a real endpoint
MOCK_IP6_NET = ipaddress.IPv6Network("2001:db8::/32")  # documentation prefix, for clouds' IPv6

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# An invoke the provider refused: no result, and (property, reason) failures.
CallFailed = tuple[dict[str, Any], list[tuple[str, str]]]


class UnmockedInvoke(AssertionError):
    """The program called a provider function these mocks do not model."""


def is_secret(value: object) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def reveal(value: Any) -> Any:
    """The value with every secret wrapper removed (for assertions that need the content)."""
    if is_secret(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def digest(*parts: str) -> bytes:
    return hashlib.sha256("\0".join(parts).encode()).digest()


def mock_ip(name: str) -> str:
    offset = int.from_bytes(digest("ip", name)[:4], "big") % (MOCK_IP_NET.num_addresses - 2)
    return str(MOCK_IP_NET.network_address + 1 + offset)


def mock_ip6_net(name: str, prefix: int) -> ipaddress.IPv6Network:
    """A /`prefix` inside the documentation prefix, picked by name (a VPC's /56, a Hetzner /64)."""
    index = int.from_bytes(digest("ip6", name)[:8], "big") % 2 ** (prefix - MOCK_IP6_NET.prefixlen)
    size = 2 ** (128 - prefix)
    return ipaddress.IPv6Network((int(MOCK_IP6_NET.network_address) + index * size, prefix))


def _gcp_nic(name: str, nic: dict[str, Any]) -> dict[str, Any]:
    """GCP hands a VM with an ipv6 access config the first address of a /96 as `externalIpv6`
    (the reserved address it was given, else an ephemeral one)."""
    configs = [
        {
            **c,
            "externalIpv6": c.get("externalIpv6") or str(mock_ip6_net(name, 96)[0]),
            "externalIpv6PrefixLength": "96",
        }
        for c in nic.get("ipv6AccessConfigs", [])
    ]
    return {**nic, "ipv6AccessConfigs": configs} if configs else nic


def mock_random_bytes(name: str, length: int, keepers: Mapping[str, Any]) -> bytes:
    """Deterministic 'random' bytes: a pure function of the resource name and keepers."""
    seed = digest("random", name, json.dumps(keepers, sort_keys=True))
    return (seed * (length // len(seed) + 1))[:length]


@dataclass
class Captured:
    """One registered resource: inputs as the engine would see them (secrets still wrapped)."""

    urn: str
    id: str
    type: str
    name: str
    parent: str  # parent URN ("" for the stack's direct children)
    custom: bool
    provider: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    ignore_changes: tuple[str, ...]
    delete_before_replace: bool
    dependencies: tuple[str, ...] = ()  # URNs from depends_on (and inputs' resources)
    replace_on_changes: tuple[str, ...] = ()  # property paths (`triggers[*]`) that replace it


@dataclass
class Invoke:
    token: str
    args: dict[str, Any]
    provider: str


class WgmeshMocks(Mocks):
    """Echo inputs; add the outputs the program reads; refuse unknown invokes."""

    def __init__(self, catalog: CloudCatalog | None = None) -> None:
        self.catalog = catalog or CloudCatalog()  # what the clouds offer (sizes, zones)
        self.invokes: list[Invoke] = []
        self.resources: dict[tuple[str, str], tuple[str, dict[str, Any], dict[str, Any], str, bool]] = {}
        self.lock = threading.Lock()
        self.contracts = ContractChecker()  # refuses what the cloud's API would refuse
        self.monitor: RecordingMonitor | None = None  # set by run_program: the URN and options per name

    def physical_name(self, typ: str, name: str) -> str:
        """What ids, IPs and random bytes are hashed from: the name (the engine simulator salts
        it for a replaced resource, which gets a new id and new computed outputs)."""
        return name

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.contracts.check(args.typ, args.name, dict(args.inputs), args.provider)
        outputs = dict(args.inputs)
        name = self.physical_name(args.typ, args.name)
        rid = f"{name}-id"
        h = digest("id", args.typ, name).hex()
        if args.typ == "random:index/randomBytes:RandomBytes":
            keepers = reveal(args.inputs.get("keepers", {}))
            raw = mock_random_bytes(name, int(args.inputs["length"]), keepers)
            outputs["base64"] = _b64(raw)
            outputs["hex"] = raw.hex()
        elif args.typ == "aws:ec2/eip:Eip":
            rid = f"eipalloc-{h[:17]}"
            outputs.update(publicIp=mock_ip(name), allocationId=rid)
        elif args.typ == "aws:ec2/instance:Instance":
            rid = f"i-{h[:17]}"
            outputs["primaryNetworkInterfaceId"] = f"eni-{h[:17]}"
            if args.inputs.get("ipv6AddressCount"):
                outputs["ipv6Addresses"] = [str(mock_ip6_net(name, 64)[0x10])]
        elif args.typ == "aws:ec2/vpc:Vpc":
            rid = f"vpc-{h[:17]}"
            if args.inputs.get("assignGeneratedIpv6CidrBlock"):
                outputs["ipv6CidrBlock"] = str(mock_ip6_net(name, 56))
        elif args.typ.startswith("aws:ec2/"):
            rid = f"{args.typ.rsplit(':', 1)[-1].lower()}-{h[:17]}"
        elif args.typ == "gcp:compute/address:Address" and args.inputs.get("ipVersion") == "IPV6":
            # A reserved external IPv6 for a VM: the first address of a /96 from the subnetwork.
            outputs.update(address=str(mock_ip6_net(name, 96)[0]), prefixLength=96)
        elif args.typ == "gcp:compute/address:Address":
            outputs["address"] = mock_ip(name)
        elif args.typ.startswith("hcloud:"):
            rid = str(int(h[:12], 16) % 10**8)  # Hetzner ids are numbers
            if args.typ == "hcloud:index/primaryIp:PrimaryIp" and args.inputs.get("type") == "ipv6":
                # As the provider reports an IPv6 primary IP: the /64, and its network address.
                net = mock_ip6_net(name, 64)
                outputs.update(ipNetwork=str(net), ipAddress=str(net.network_address))
            elif args.typ == "hcloud:index/primaryIp:PrimaryIp":
                outputs["ipAddress"] = mock_ip(name)
            elif args.typ == "hcloud:index/server:Server" and args.inputs.get("networks"):
                # Hetzner picks the private IP from the network's subnet: here the .0.10+ of 10.20/16.
                n = int.from_bytes(digest("private", name)[:2], "big") % 200 + 10
                outputs["networks"] = [{**net, "ip": f"10.20.0.{n}"} for net in args.inputs["networks"]]
        elif args.typ == "gcp:compute/instance:Instance":
            outputs["instanceId"] = str(int(h[:15], 16))  # GCP's server-assigned numeric id
            outputs["networkInterfaces"] = [_gcp_nic(name, nic) for nic in args.inputs["networkInterfaces"]]
        if args.typ == "command:remote:Command":
            # What a remote command prints; the program exports the health commands' stdout.
            outputs.update(stdout=f"(mocked stdout of {args.name})", stderr="")
        if args.typ.startswith("gcp:compute/"):
            kind = args.typ.rsplit(":", 1)[-1].lower()
            outputs.setdefault("selfLink", f"https://compute.googleapis.com/mock/{kind}s/{name}")
        with self.lock:
            key = (args.typ, args.name)
            assert key not in self.resources, f"two resources named {args.name} of type {args.typ}"
            self.resources[key] = (rid, dict(args.inputs), outputs, args.provider or "", bool(args.custom))
        return rid, outputs

    def call(self, args: MockCallArgs) -> dict[str, Any] | CallFailed:  # type: ignore[override]
        with self.lock:
            self.invokes.append(Invoke(args.token, dict(args.args), args.provider))
        if args.token == "aws:ec2/getAmi:getAmi":
            pattern = args.args["filters"][0]["values"][0]
            ami = "ami-" + digest("ami", pattern, args.provider).hex()[:17]
            return {"id": ami, "imageId": ami, "name": pattern.replace("*", "20250101")}
        if args.token == "gcp:compute/getImage:getImage":
            family = args.args["family"]
            link = f"https://www.googleapis.com/compute/v1/projects/{args.args['project']}/global/images/{family}-v20250101"
            return {"selfLink": link, "name": f"{family}-v20250101", "family": family}
        if args.token == "aws:servicequotas/getServiceQuota:getServiceQuota":
            return self.service_quota(args.args)
        offered = self.catalog.answer(args.token, dict(args.args), args.provider)
        if offered is not None:
            return offered
        raise UnmockedInvoke(f"no mock for invoke {args.token}")

    # A test sets this to answer as AWS does for credentials without servicequotas:GetServiceQuota.
    deny_service_quotas = False

    def service_quota(self, args: dict[str, Any]) -> dict[str, Any] | CallFailed:
        """A new account's quota: the documented default (components/quota_catalog), or AWS's refusal."""
        from components.quota_catalog import AWS_QUOTAS

        if self.deny_service_quotas:
            reason = "AccessDeniedException: not authorized to perform: servicequotas:GetServiceQuota"
            return {}, [("", reason)]
        code = (args["serviceCode"], args["quotaCode"])
        quota = next((q for q in AWS_QUOTAS if q.aws_code == code), None)
        if quota is None or quota.default is None:
            raise UnmockedInvoke(f"NoSuchResourceException: no quota {code}")
        value = float(quota.default)
        return {"value": value, "defaultValue": value, "serviceCode": code[0], "quotaCode": code[1]}


class RecordingMonitor(MockMonitor):
    """MockMonitor that also keeps what the mocks do not see: parent, ignoreChanges, deleteBeforeReplace."""

    def __init__(self, mocks: WgmeshMocks) -> None:
        super().__init__(mocks)
        self.options: dict[tuple[str, str], tuple[str, str, tuple[str, ...], bool]] = {}
        self.component_outputs: dict[str, dict[str, Any]] = {}
        self.dependencies: dict[tuple[str, str], tuple[str, ...]] = {}
        self.replace_on_changes: dict[tuple[str, str], tuple[str, ...]] = {}

    def RegisterResource(self, request: Any) -> Any:
        if request.type != "pulumi:pulumi:Stack":
            urn = self.make_urn(request.parent, request.type, request.name)
            self.options[(request.type, request.name)] = (
                urn,
                request.parent,
                tuple(request.ignoreChanges),
                bool(request.deleteBeforeReplace),
            )
            self.dependencies[(request.type, request.name)] = tuple(request.dependencies)
            self.replace_on_changes[(request.type, request.name)] = tuple(request.replaceOnChanges)
        return super().RegisterResource(request)  # type: ignore[no-untyped-call]

    def RegisterResourceOutputs(self, request: Any) -> Any:
        """Keep what components register (secrets stay wrapped), e.g. a lab node's user data."""
        _ensure_event_loop()  # type: ignore[no-untyped-call]
        self.component_outputs[request.urn] = rpc.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


@dataclass
class Resolved:
    """A stack output leaf: its value and whether Pulumi would store it as a secret."""

    value: Any
    secret: bool


@dataclass
class ProgramRun:
    stack: str
    resources: list[Captured] = field(default_factory=list)
    invokes: list[Invoke] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)  # name -> nested dict/list of Resolved
    component_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # urn -> outputs
    error: BaseException | None = None
    created_in_apply: list[str] = field(default_factory=list)  # "type::name" of each such resource

    def of_type(self, typ: str, *, allow_empty: bool = False) -> list[Captured]:
        """Every resource of `typ`; none fails (a loop over zero resources checks nothing).

        `allow_empty=True` only where the test means "none of these" or copes with none itself.
        """
        found = [r for r in self.resources if r.type == typ]
        assert found or allow_empty, f"{self.stack}: no {typ} resource (allow_empty=True if none is right)"
        return found

    def one(self, typ: str, name: str) -> Captured:
        found = [r for r in self.resources if r.type == typ and r.name == name]
        assert len(found) == 1, f"expected one {typ} named {name}, found {len(found)}"
        return found[0]

    def by_urn(self) -> dict[str, Captured]:
        return {r.urn: r for r in self.resources}


def stack_config(stack_file: Path) -> dict[str, str]:
    """The stack file's config as Pulumi hands it to a program: fully qualified keys, JSON values.

    Read with the CLI's YAML rules (mesh.pulumi_yaml); encrypted values need the stack's
    secrets provider and are left out.
    """
    from mesh.pulumi_yaml import engine_config

    return engine_config(stack_file.read_text(encoding="utf-8-sig")).values


_IN_APPLY: contextvars.ContextVar[bool] = contextvars.ContextVar("wgmesh_in_apply", default=False)


@contextlib.contextmanager
def _watch_resources_created_in_applies(found: list[str]) -> Iterator[None]:
    """Record every resource constructed while an `apply` callback runs.

    Such a resource is invisible to `pulumi preview` whenever the value is unknown, so the
    program must never do it; the program tests assert the list stays empty.
    """
    original_apply = pulumi.Output.apply
    original_init = pulumi.Resource.__init__

    def apply(self: pulumi.Output[Any], func: Any, run_with_unknowns: bool = False) -> Any:
        def flagged(value: Any) -> Any:
            token = _IN_APPLY.set(True)
            try:
                return func(value)
            finally:
                _IN_APPLY.reset(token)

        return original_apply(self, flagged, run_with_unknowns)

    def init(self: pulumi.Resource, t: str, name: str, *args: Any, **kwargs: Any) -> None:
        if _IN_APPLY.get():
            found.append(f"{t}::{name}")
        original_init(self, t, name, *args, **kwargs)

    pulumi.Output.apply = apply  # type: ignore[method-assign]
    pulumi.Resource.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        pulumi.Output.apply = original_apply  # type: ignore[method-assign]
        pulumi.Resource.__init__ = original_init  # type: ignore[method-assign]


def run_program(
    stack: str,
    config: Mapping[str, str],
    program: Path = PROGRAM,
    secret_keys: tuple[str, ...] = (),
    catalog: CloudCatalog | None = None,
    mocks: Callable[[CloudCatalog | None], WgmeshMocks] | None = None,
) -> ProgramRun:
    """Run `program` for `stack` with `config`; never raises for the program's own errors.

    `mocks` builds the run's mocks (tests/program/engine_sim.py passes the engine's view of
    stored state)."""
    return contextvars.Context().run(_run, stack, dict(config), program, secret_keys, catalog, mocks)


def _run(
    stack: str,
    config: dict[str, str],
    program: Path,
    secret_keys: tuple[str, ...] = (),
    catalog: CloudCatalog | None = None,
    make_mocks: Callable[[CloudCatalog | None], WgmeshMocks] | None = None,
) -> ProgramRun:
    mocks = (make_mocks or WgmeshMocks)(catalog)  # looked up per run: tests patch WgmeshMocks
    monitor = RecordingMonitor(mocks)
    mocks.monitor = monitor
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    # set_mocks leaves these two to a process-wide default; a failed run would leak its pending
    # outputs into the next run (which would then report the old error), so make them per run.
    SETTINGS.outputs = set()
    SETTINGS.lock = threading.Lock()
    pulumi.runtime.set_all_config(config, list(secret_keys))  # keys set with `config set --secret`
    run = ProgramRun(stack=stack)
    _ensure_event_loop().set_exception_handler(_quiet_expected_errors)  # type: ignore[no-untyped-call]
    try:
        with _watch_resources_created_in_applies(run.created_in_apply):
            _sync_await(run_pulumi_func(partial(_exec, program)))
    except Exception as e:  # the test decides whether an error was expected
        run.error = e
        _sync_await(_drain())
    root = get_root_resource()
    exported = dict(getattr(root, "outputs", {}) or {})
    if run.error is None:  # after a failed registration, outputs depending on it cannot resolve
        try:
            run.outputs = {k: _sync_await(_resolve(v, False)) for k, v in exported.items()}
        except pulumi.RunError as e:  # an apply failed (e.g. a render refusal): the run's error
            run.error = e
    for key, (urn, parent, ignore, dbr) in monitor.options.items():
        if key not in mocks.resources:
            continue  # registration failed before reaching the mocks
        rid, inputs, outputs, provider, custom = mocks.resources[key]
        deps = monitor.dependencies.get(key, ())
        roc = monitor.replace_on_changes.get(key, ())
        run.resources.append(
            Captured(
                urn, rid, key[0], key[1], parent, custom, provider, inputs, outputs, ignore, dbr, deps, roc
            )
        )
    run.resources.sort(key=lambda r: r.urn)
    run.invokes = list(mocks.invokes)
    run.component_outputs = dict(monitor.component_outputs)
    return run


def _quiet_expected_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Drop "exception was never retrieved" for a program's own RunError (the run reports it once)."""
    if isinstance(context.get("exception"), pulumi.RunError):
        return
    loop.default_exception_handler(context)


async def _drain(timeout: float = 10.0) -> None:
    """After a failed run: let its remaining tasks finish (their errors are the same failure)."""
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)
    for task in pending:
        if task.done() and not task.cancelled():
            task.exception()  # mark retrieved: no "exception was never retrieved" noise


def _exec(program: Path) -> None:
    runpy.run_path(str(program), run_name="__main__")


async def _resolve(value: Any, secret: bool) -> Any:
    if isinstance(value, pulumi.Output):
        inner = await value.future()
        return await _resolve(inner, secret or await value.is_secret())
    if isinstance(value, dict):
        return {k: await _resolve(v, secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [await _resolve(v, secret) for v in value]
    return Resolved(value, secret)


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()
