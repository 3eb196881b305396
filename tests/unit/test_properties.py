"""Properties of the planner over random meshes, and a fuzzer for the config parser.

The random meshes are valid by construction (unique names and addresses, disjoint subnets), so
every property below must hold for each one; the fuzzer feeds broken configs and demands a
ConfigError naming `wgmesh:` keys, never another exception.
"""

from __future__ import annotations

import copy
import ipaddress
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from mesh.contracts import node_name_problems
from mesh.errors import ConfigError
from mesh.keys import derive_psk
from mesh.plan import build_plan, hashed_host
from mesh.plan_types import ClientPlan, InterfacePlan, MeshPlan, NodePlan
from mesh.spec import CLIENT_KEYS, MESH_KEYS, NODE_KEYS, ClientSpec, IPNetwork, MeshSpec, NodeSpec, parse
from mesh.stackfile import load_spec

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
NAMES = st.builds(
    str.__add__,
    st.sampled_from("abcdefghijklmnopqrstuvwxyz"),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", max_size=30),
).filter(lambda n: not any(node_name_problems(n, c) for c in ("aws", "gcp", "hcloud")))  # clouds' rules
REGIONS = {"aws": "eu-central-1", "gcp": "europe-west3", "hcloud": "nbg1"}
CLOUDS = ["aws", "gcp", "hcloud", "lab"]
WG_OVERHEAD = 80


# ----------------------------------------------------------------------------- random valid meshes


@st.composite
def meshes(draw: st.DrawFn, max_nodes: int = 7, max_clients: int = 4) -> dict[str, Any]:
    """A valid stack config: random topology, hubs, clouds, disjoint subnets, clients, dual stack."""
    names = draw(st.lists(NAMES, min_size=1, max_size=max_nodes + max_clients, unique=True))
    n_nodes = draw(st.integers(1, min(len(names), max_nodes)))
    node_names, client_names = names[:n_nodes], names[n_nodes:][:max_clients]
    topology = draw(st.sampled_from(["mesh", "hub"]))
    mesh: dict[str, Any] = {
        "cidr": "10.77.0.0/24",
        "topology": topology,
        "keepalive": draw(st.sampled_from([0, 25])),
    }
    if draw(st.booleans()):
        mesh["cidr6"] = "fd77:77::/64"
    # IPv6 in wg0 needs MTU 1280 (RFC 8200), so with cidr6 underlays start at 1280 + 80.
    low_mtu = 1360 if "cidr6" in mesh else 1280
    order = draw(st.permutations(range(n_nodes)))
    hubs = set(order[: draw(st.integers(1, min(3, n_nodes)))]) if topology == "hub" else set()
    gateways = set(draw(st.lists(st.integers(0, n_nodes - 1), max_size=2)))
    blocks = draw(st.lists(st.integers(0, 255).filter(lambda b: b != 77), max_size=2 * n_nodes, unique=True))
    subnets: dict[int, list[str]] = {}
    for b in blocks:
        kind = draw(st.sampled_from(["172.16.{b}.0/24", "10.{b}.0.0/16", "2001:db8:{b:x}::/48"]))
        subnets.setdefault(draw(st.integers(0, n_nodes - 1)), []).append(kind.format(b=b))
    nodes = []
    for i, name in enumerate(node_names):
        cloud = draw(st.sampled_from(CLOUDS))
        n: dict[str, Any] = {"name": name, "cloud": cloud, "address": f"10.77.0.{i + 1}"}
        if cloud == "lab":
            n["publicIp"] = f"198.51.100.{i + 1}"
        else:
            n["region"] = REGIONS[cloud]
        if i in hubs:
            n["hub"] = True
        if i in gateways:
            n["gateway"] = True
        if i in subnets:
            n["subnets"] = subnets[i]
            n["masquerade"] = draw(st.booleans())
        if draw(st.booleans()):
            n["underlayMtu"] = draw(st.integers(low_mtu, 9216))
        nodes.append(n)
    clients = []
    for j, name in enumerate(client_names):
        c: dict[str, Any] = {"name": name, "address": f"10.77.0.{100 + j}"}
        if len(gateways) > 0 and draw(st.booleans()):
            c["fullTunnel"] = True
        if draw(st.booleans()):
            c["underlayMtu"] = draw(st.integers(low_mtu, 1500))
        clients.append(c)
    return {"mesh": mesh, "nodes": nodes, "clients": clients}


def members(plan: MeshPlan) -> list[NodePlan | ClientPlan]:
    return [*plan.nodes, *plan.clients]


def spec_members(spec: MeshSpec) -> list[NodeSpec | ClientSpec]:
    return [*spec.nodes, *spec.clients]


def own_networks(plan: MeshPlan, name: str) -> list[IPNetwork]:
    iface = plan.interface(name)
    out: list[IPNetwork] = [ipaddress.ip_network(iface.address.ip)]
    if iface.address6 is not None:
        out.append(ipaddress.ip_network(iface.address6.ip))
    if iface.kind == "node":
        out.extend(plan.spec.node(name).subnets)
    return out


def covered(net: IPNetwork, by: list[IPNetwork]) -> bool:
    return any(net.version == o.version and net.subnet_of(o) for o in by)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- AllowedIPs, routing, MTU


def check_no_overlap(plan: MeshPlan) -> None:
    """No two AllowedIPs of one config overlap (containment included), across or within peers."""
    for m in members(plan):
        entries = [(p.name, net) for p in m.iface.peers for net in p.allowed_ips]
        for i, (a, na) in enumerate(entries):
            for b, nb in entries[i + 1 :]:
                assert not (na.version == nb.version and na.overlaps(nb)), f"{m.name}: {a} {na} vs {b} {nb}"


def check_only_forwarders_carry_foreign_networks(plan: MeshPlan) -> None:
    """A peer whose AllowedIPs reach past its own networks must forward, and only nodes do."""
    for m in members(plan):
        for p in m.iface.peers:
            foreign = [n for n in p.allowed_ips if not covered(n, own_networks(plan, p.name))]
            if foreign:
                assert p.kind == "node", f"{m.name} routes {foreign} through client {p.name}"
                assert plan.node(p.name).forwards, f"{m.name} routes {foreign} through {p.name}"
            else:
                assert set(p.allowed_ips) == set(own_networks(plan, p.name))


def check_mtu_fits_every_peers_underlay(plan: MeshPlan) -> None:
    spec = plan.spec
    underlay = {m.name: m.underlay_mtu for m in spec_members(spec)}
    for m in members(plan):
        assert m.iface.mtu <= underlay[m.name] - WG_OVERHEAD
        for p in m.iface.peers:
            assert m.iface.mtu <= underlay[p.name] - WG_OVERHEAD, f"{m.name} -> {p.name}"


def check_peering_is_symmetric(plan: MeshPlan) -> None:
    """If A lists B then B lists A, with the same PSK epoch; Endpoint exactly on node entries."""
    for m in members(plan):
        for p in m.iface.peers:
            back = [q for q in plan.interface(p.name).peers if q.name == m.name]
            assert len(back) == 1, f"{m.name} lists {p.name} but not the other way round"
            assert back[0].psk_epoch == p.psk_epoch
            assert p.endpoint == (p.kind == "node") and back[0].endpoint == (m.iface.kind == "node")
        names = [p.name for p in m.iface.peers]
        assert len(names) == len(set(names)) and m.name not in names


def check_spokes_peer_only_with_hubs(plan: MeshPlan) -> None:
    if plan.spec.mesh.topology != "hub":
        return
    hubs = {n.name for n in plan.spec.nodes if n.hub}
    for n in plan.nodes:
        if n.name not in hubs:
            assert set(n.peer_nodes) == hubs, n.name


@given(meshes())
def test_plan_invariants_on_random_meshes(config: dict[str, Any]) -> None:
    plan = build_plan(parse(config))
    check_no_overlap(plan)
    check_only_forwarders_carry_foreign_networks(plan)
    check_mtu_fits_every_peers_underlay(plan)
    check_peering_is_symmetric(plan)
    check_spokes_peer_only_with_hubs(plan)


def route(iface: InterfacePlan, dest: Address) -> str | None:
    hops = [p.name for p in iface.peers if any(dest in net for net in p.allowed_ips)]
    assert len(hops) <= 1, f"{iface.name}: {dest} matches {hops}"
    return hops[0] if hops else None


def deliver(plan: MeshPlan, src: str, src_addr: Address, dest: str, dest_addr: Address) -> list[str]:
    """Follow a packet hop by hop as WireGuard would: out by AllowedIPs, in only if the source is allowed."""
    at, path = src, [src]
    for _ in range(len(members(plan)) + 1):
        if at == dest:
            return path
        nxt = route(plan.interface(at), dest_addr)
        assert nxt is not None, f"{path}: no route to {dest} {dest_addr}"
        if at != src:
            assert plan.node(at).forwards, f"{path}: {at} does not forward"
        inbound = [p for p in plan.interface(nxt).peers if p.name == at]
        assert inbound and any(src_addr in net for net in inbound[0].allowed_ips), (
            f"{path} -> {nxt}: {nxt} drops {src_addr} arriving from {at}"
        )
        at = nxt
        path.append(at)
    raise AssertionError(f"routing loop: {path}")


def endpoints(plan: MeshPlan, name: str) -> Iterator[Address]:
    """Addresses that terminate at a member: overlay addresses and a host in each routed subnet."""
    for net in own_networks(plan, name):
        yield net.network_address if net.num_addresses == 1 else net.network_address + 1


def all_paths(plan: MeshPlan) -> Iterator[list[str]]:
    """The hop-by-hop path of every packet that must (or, by the plan, can) be delivered.

    Every node reaches every member and every member every node, in each address family and to
    each routed subnet; a pair with no route at all (two split clients of a full mesh) is skipped.
    """
    node_names = {n.name for n in plan.nodes}
    for src in members(plan):
        for dest in members(plan):
            if src.name == dest.name:
                continue
            required = src.name in node_names or dest.name in node_names
            for s in endpoints(plan, src.name):
                for d in endpoints(plan, dest.name):
                    if s.version != d.version or (route(src.iface, d) is None and not required):
                        continue
                    note(f"{src.name} {s} -> {dest.name} {d}")
                    yield deliver(plan, src.name, s, dest.name, d)


@given(meshes())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_packets_reach_their_destination_and_are_accepted_on_every_hop(config: dict[str, Any]) -> None:
    plan = build_plan(parse(config))
    for path in all_paths(plan):
        assert path[0] != path[-1]


@given(meshes())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_full_size_packets_fit_every_hop_of_their_path(config: dict[str, Any]) -> None:
    """What a member sends at its MTU crosses each underlay on the way (spoke -> hub -> spoke
    traverses both) and fits the wg0 MTU of every node that forwards it, so nothing fragments."""
    plan = build_plan(parse(config))
    underlay = {m.name: m.underlay_mtu for m in spec_members(plan.spec)}
    for path in all_paths(plan):
        mtu = plan.interface(path[0]).mtu
        assert mtu <= min(underlay[n] for n in path) - WG_OVERHEAD, path
        for hop in path[1:-1]:
            assert plan.interface(hop).mtu >= mtu, (
                f"{path}: {hop} forwards at MTU {plan.interface(hop).mtu} < {mtu}"
            )


# ----------------------------------------------------------------------------- stable addresses


@st.composite
def membership_changes(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(base, base minus some members, base plus some members), automatic addresses only."""
    names = draw(st.lists(NAMES, min_size=2, max_size=30, unique=True))
    split = draw(st.integers(1, len(names) - 1))
    base_names, extra = names[:split], names[split:]
    is_node = {n: draw(st.booleans()) for n in names}
    is_node[base_names[0]] = True  # a mesh needs a node
    cidr = draw(st.sampled_from(["10.77.0.0/16", "10.77.0.0/26"]))  # the small one makes clashes common
    cidr6 = draw(st.sampled_from([None, "fd77:77::/64", "fd77:77::/120"]))
    removed = (
        set(draw(st.lists(st.sampled_from(base_names[1:]), unique=True))) if len(base_names) > 1 else set()
    )

    def build(member_names: list[str]) -> dict[str, Any]:
        mesh: dict[str, Any] = {"cidr": cidr} | ({"cidr6": cidr6} if cidr6 else {})
        nodes = [
            {"name": n, "cloud": "lab", "publicIp": f"192.0.2.{i + 1}"}
            for i, n in enumerate(member_names)
            if is_node[n]
        ]
        clients = [{"name": n} for n in member_names if not is_node[n]]
        return {"mesh": mesh, "nodes": nodes, "clients": clients}

    kept = [n for n in base_names if n not in removed]
    return build(base_names), build(kept), build(base_names + extra)


def expected_clashes(config: dict[str, Any]) -> set[str]:
    """Keys a correct planner must report: each later member whose hashed address is already taken."""
    spec = parse(config)
    out = set()
    for attr, net in (("address", spec.mesh.cidr), ("address6", spec.mesh.cidr6)):
        if net is None:
            continue
        seen: set[object] = set()
        for m in spec_members(spec):
            addr = hashed_host(m.name, net)
            if addr in seen:
                out.add(f"{m.key}.{attr}")
            seen.add(addr)
    return out


@given(membership_changes())
def test_adding_or_removing_members_never_moves_anyone(
    change: tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
) -> None:
    addresses: list[dict[str, tuple[object, object]]] = []
    for config in change:
        clashes = expected_clashes(config)
        try:
            plan = build_plan(parse(config))
        except ConfigError as e:
            assert {p.key for p in e.problems} == clashes
            assert all("is taken by" in p.message for p in e.problems)
            continue
        assert clashes == set()
        cidr, cidr6 = plan.spec.mesh.cidr, plan.spec.mesh.cidr6
        got: dict[str, tuple[object, object]] = {}
        for m in members(plan):
            v6 = m.iface.address6.ip if m.iface.address6 else None
            assert m.iface.address.ip == hashed_host(m.name, cidr)
            assert v6 == (hashed_host(m.name, cidr6) if cidr6 else None)
            got[m.name] = (m.iface.address.ip, v6)
        addresses.append(got)
    for a in addresses:
        for b in addresses:
            assert all(a[n] == b[n] for n in a.keys() & b.keys())


# ----------------------------------------------------------------------------- PSKs

SECRETS = st.binary(min_size=32, max_size=32)


@given(SECRETS, NAMES, NAMES, st.text(max_size=12))
def test_psk_is_symmetric(secret: bytes, a: str, b: str, epoch: str) -> None:
    assume(a != b)
    assert derive_psk(secret, a, b, epoch) == derive_psk(secret, b, a, epoch)


def psks(plan: MeshPlan, secret: bytes) -> dict[frozenset[str], str]:
    """Every pair's PSK, checked to be the same from both ends."""
    out: dict[frozenset[str], str] = {}
    for m in members(plan):
        for p in m.iface.peers:
            assert p.psk_epoch is not None
            psk = derive_psk(secret, m.name, p.name, p.psk_epoch)
            assert out.setdefault(frozenset((m.name, p.name)), psk) == psk
    return out


@given(meshes(), st.lists(NAMES, min_size=1, max_size=3, unique=True), SECRETS, st.data())
def test_adding_nodes_changes_no_existing_psk(
    config: dict[str, Any], new_names: list[str], secret: bytes, data: st.DataObject
) -> None:
    existing = {m["name"] for m in [*config["nodes"], *config["clients"]]}
    new_names = [n for n in new_names if n not in existing]
    assume(new_names)
    grown = copy.deepcopy(config)
    for k, name in enumerate(new_names):
        extra = {"hub": True} if config["mesh"]["topology"] == "hub" and data.draw(st.booleans()) else {}
        grown["nodes"].append(
            {
                "name": name,
                "cloud": "lab",
                "publicIp": f"203.0.113.{k + 1}",
                "address": f"10.77.0.{60 + k}",
                **extra,
            }
        )
    before = build_plan(parse(config))
    after = build_plan(parse(grown))
    epochs_before = {(m.name, p.name): p.psk_epoch for m in members(before) for p in m.iface.peers}
    epochs_after = {(m.name, p.name): p.psk_epoch for m in members(after) for p in m.iface.peers}
    for pair, epoch in epochs_before.items():
        if pair in epochs_after:
            assert epochs_after[pair] == epoch
    old, new = psks(before, secret), psks(after, secret)
    assert all(new[pair] == psk for pair, psk in old.items() if pair in new)


@given(meshes(), SECRETS, st.data())
def test_key_epoch_bump_changes_exactly_the_psks_of_that_member(
    config: dict[str, Any], secret: bytes, data: st.DataObject
) -> None:
    section = data.draw(st.sampled_from(["nodes", "clients"] if config["clients"] else ["nodes"]))
    i = data.draw(st.integers(0, len(config[section]) - 1))
    bumped = copy.deepcopy(config)
    bumped[section][i]["keyEpoch"] = data.draw(st.integers(1, 2**31))
    who = config[section][i]["name"]
    old = psks(build_plan(parse(config)), secret)
    new = psks(build_plan(parse(bumped)), secret)
    assert old.keys() == new.keys()
    for pair in old:
        assert (old[pair] != new[pair]) == (who in pair), sorted(pair)


@given(meshes(), SECRETS)
def test_mesh_key_epoch_bump_changes_every_psk(config: dict[str, Any], secret: bytes) -> None:
    bumped = copy.deepcopy(config)
    bumped["mesh"]["keyEpoch"] = 1
    old = psks(build_plan(parse(config)), secret)
    new = psks(build_plan(parse(bumped)), secret)
    assert all(old[pair] != new[pair] for pair in old)


# ----------------------------------------------------------------------------- fuzzing the parser

# Every key the parser knows (so mutations hit real keys), plus the section names.
KNOWN_KEYS = sorted({"mesh", "nodes", "clients", *MESH_KEYS, *NODE_KEYS, *CLIENT_KEYS})
JUNK = [
    "", " ", "\n", "a\nb", "10.77.0.0/24", "10.77.0.1", "10.77.0.0/31", "fd77::/64", "fd77::1%eth0",
    "0.0.0.0/0", "::/0", "198.51.100.1", "aws", "gcp", "lab", "hub", "mesh", "debian-12", "nbg1",
    "eu-central-1", "europe-west3", "a[1]2", "a[1]²", "é", "ssh-ed25519 AAAA", "wgmesh:nodes[0]",
    "1e309", "-1", "true", "null",
]  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats()
    | st.sampled_from(JUNK)
    | st.text(max_size=12)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def valid_config() -> dict[str, Any]:
    return {
        "mesh": {
            "cidr": "10.77.0.0/24",
            "cidr6": "fd77:77::/64",
            "topology": "hub",
            "adminCidrs": ["203.0.113.0/24"],
        },
        "nodes": [
            {"name": "hub", "cloud": "aws", "region": "eu-central-1", "hub": True, "address": "10.77.0.1"},
            {
                "name": "g",
                "cloud": "gcp",
                "region": "europe-west3",
                "zone": "europe-west3-b",
                "gateway": True,
            },
            {
                "name": "h",
                "cloud": "hcloud",
                "region": "nbg1",
                "subnets": ["10.0.4.0/24"],
                "masquerade": True,
            },
            {"name": "lab", "cloud": "lab", "publicIp": "198.51.100.1", "address6": "fd77:77::9"},
        ],
        "clients": [{"name": "laptop", "dns": ["10.77.0.1"]}, {"name": "phone", "fullTunnel": True}],
    }


def containers(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths of every dict and list inside `value`, the root included."""
    if isinstance(value, dict | list):
        yield path
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            yield from containers(v, (*path, k))


def at(value: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        value = value[k]
    return value


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid config with 1-4 random edits: replace, delete, add a key, or swap in a junk string."""
    config = valid_config()
    for _ in range(draw(st.integers(1, 4))):
        target = at(config, draw(st.sampled_from(list(containers(config)))))
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        op = draw(st.sampled_from(["replace", "delete", "add", "junk"]))
        if op == "add" and isinstance(target, dict):
            target[draw(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8))] = draw(JSON)
        elif op == "add":
            target.append(draw(JSON))
        elif not keys:
            continue
        elif op == "delete":
            del target[draw(st.sampled_from(keys))]
        elif op == "junk":
            target[draw(st.sampled_from(keys))] = draw(st.sampled_from(JUNK) | st.text(max_size=12))
        else:
            target[draw(st.sampled_from(keys))] = draw(JSON)
    return config


def assert_well_formed(error: ConfigError, key_prefixes: tuple[str, ...] = ("wgmesh:",)) -> None:
    assert error.problems
    for p in error.problems:
        assert p.key.startswith(key_prefixes), p
    lines = str(error).splitlines()
    if len(error.problems) == 1:
        assert lines == [str(error.problems[0])]
    else:
        assert lines[0] == f"{len(error.problems)} problems in the wgmesh stack config:"
        assert len(lines) == len(error.problems) + 1
        assert all(line.startswith(tuple(f"  {k}" for k in key_prefixes)) for line in lines[1:]), lines


def parse_and_plan(config: Any) -> MeshPlan | None:
    """parse + build_plan; a ConfigError is checked and swallowed, anything else fails the test."""
    try:
        return build_plan(parse(config))
    except ConfigError as e:
        assert_well_formed(e)
        return None


@given(st.fixed_dictionaries({}, optional={"mesh": JSON, "nodes": JSON, "clients": JSON}))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_random_sections(config: dict[str, Any]) -> None:
    parse_and_plan(config)


@given(mutated_configs())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_mutated_valid_config(config: dict[str, Any]) -> None:
    plan = parse_and_plan(config)
    if plan is not None:  # whatever survives validation still plans into non-overlapping configs
        for m in members(plan):
            nets = [n for p in m.iface.peers for n in p.allowed_ips]
            assert not any(
                a.version == b.version and a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :]
            )


def test_the_fuzz_base_config_is_valid() -> None:
    """Mutations start from a config that plans, so a mutation is what breaks it."""
    assert parse_and_plan(valid_config()) is not None


STACK_TEXT = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.builds(
        lambda doc: ("config:\n" + "".join(f"  {k}: {v!r}\n" for k, v in doc.items())).encode(),
        st.dictionaries(
            st.sampled_from(["wgmesh:mesh", "wgmesh:nodes", "wgmesh:clients", "other"]), JSON, max_size=3
        ),
    ),
)


@given(STACK_TEXT)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_stack_files(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "Pulumi.fuzz.yaml"
        path.write_bytes(content)
        try:
            plan = build_plan(load_spec(path))
        except ConfigError as e:
            assert_well_formed(e, (str(path), "wgmesh:"))
            return
        assert plan.nodes
