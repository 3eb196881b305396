"""Fuzz the stack file as text: YAML the CLI reads its own way, wrong types, missing and unknown
keys, special and overlapping networks, odd names.

For every generated file: `load_spec` + `build_plan` either succeed or raise ConfigError (never
another exception); every problem names a `wgmesh:` key path that exists in the config (or the
file, for what is wrong with the file itself) and is one line; and a network known to be
special is always refused under its own key.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.errors import ConfigError
from mesh.plan import build_plan
from mesh.pulumi_yaml import StackFileError, engine_config
from mesh.spec import CLIENT_KEYS, MESH_KEYS, NODE_KEYS, unknown_config_keys
from mesh.stackfile import load_spec


class Raw(str):
    """A plain YAML token written as is (`off`, `017`, `.inf`), not quoted."""


# Plain scalars whose meaning differs between YAML 1.1, YAML 1.2 and yaml.v3, and plain junk.
TOKENS = [
    "off", "on", "yes", "no", "y", "n", "true", "True", "FALSE", "null", "~", "017", "0o17", "08",
    "0x1F", "0b101", "1_000", "1e3", "51820.0", ".5", ".inf", "-.Inf", ".nan", "1:20", "2001-12-14",
    "-1", "+5", "65536", "9223372036854775808", "1e999", "0", "[]", "{}",
]  # fmt: skip
# Independent of mesh.networks: ranges a host needs for itself, each to be refused where it is put.
SPECIAL = [
    "169.254.169.254/32", "169.254.0.0/16", "127.0.0.0/24", "0.0.0.0/8", "224.0.0.0/24",
    "240.0.0.0/24", "192.0.0.0/29", "0.0.0.0/0",
]  # fmt: skip
SPECIAL6 = ["fe80::/64", "ff02::/64", "::1/128", "fd00:ec2::254/128", "64:ff9b::/96", "::/0", "2001::/32"]
ORDINARY = ["10.0.0.0/8", "10.77.0.0/24", "10.77.0.0/25", "172.16.0.0/12", "100.64.0.0/10", "192.168.0.0/16"]
ORDINARY6 = ["fd77:77::/64", "fd77:77::/48", "2001:db8::/48"]
NETWORKS = st.sampled_from(SPECIAL + SPECIAL6 + ORDINARY + ORDINARY6)
NAMES = st.one_of(
    st.sampled_from(["a", "aws-fra", "gcp", "x-", "A", "1a", "a" * 32, "sg-1", "lab", ""]),
    st.text(alphabet="abz09-_.", min_size=1, max_size=6),
)
KNOWN = sorted({*MESH_KEYS, *NODE_KEYS, *CLIENT_KEYS})
SCALAR = st.one_of(
    st.sampled_from(TOKENS).map(Raw),
    st.integers(-3, 70000),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    NETWORKS,
)
ANY = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(KNOWN) | st.text(max_size=5), inner, max_size=3), max_leaves=8)  # fmt: skip


def emit(value: Any) -> str:
    """Flow YAML: Raw tokens plain, every other string double-quoted (JSON), keys likewise."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{emit(k)}: {emit(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(emit(v) for v in value) + "]"
    return json.dumps(value)


@st.composite
def stack_files(draw: st.DrawFn) -> tuple[str, set[str]]:
    """(stack file text, keys that must be refused because they hold a special network)."""
    must_fail: set[str] = set()
    mesh: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        cidr = draw(NETWORKS)
        mesh["cidr"] = cidr
        if cidr in SPECIAL:
            must_fail.add("wgmesh:mesh.cidr")
    if draw(st.booleans()):
        cidr6 = draw(NETWORKS)
        mesh["cidr6"] = cidr6
        if cidr6 in SPECIAL6 and cidr6 != "::1/128":  # /128 is too small for an overlay anyway
            must_fail.add("wgmesh:mesh.cidr6")
    for key in draw(st.lists(st.sampled_from([*MESH_KEYS, "bogus"]), max_size=3)):
        mesh[key] = draw(ANY)
    nodes: list[Any] = []
    for i in range(draw(st.integers(0, 4))):
        if not draw(st.integers(0, 9)):
            nodes.append(draw(ANY))  # not a node at all
            continue
        cloud = draw(st.sampled_from(["aws", "gcp", "hcloud", "lab", Raw("off"), "azure"]))
        node: dict[str, Any] = {"name": draw(NAMES), "cloud": cloud}
        region = {"aws": "eu-central-1", "gcp": "europe-west3", "hcloud": "nbg1"}.get(str(cloud))
        if region:
            node["region"] = region
        if cloud == "lab":
            node["publicIp"] = draw(st.sampled_from(["198.51.100.1", "10.77.0.9", "169.254.1.1"]))
        for key in draw(st.lists(st.sampled_from([*NODE_KEYS, "bogus"]), max_size=2)):
            node[key] = draw(ANY)  # wrong types, unknown keys
        for key in draw(st.lists(st.sampled_from(["name", "cloud", "region"]), max_size=1)):
            node.pop(key, None)  # missing keys
        subnets = draw(st.lists(NETWORKS, max_size=2))
        if subnets:
            node["subnets"] = subnets
            must_fail.update(
                f"wgmesh:nodes[{i}].subnets[{j}]" for j, n in enumerate(subnets) if n in SPECIAL + SPECIAL6
            )
        nodes.append(node)
    clients = [{"name": draw(NAMES)} for _ in range(draw(st.integers(0, 2)))]
    lines = ["config:"]
    if bool(mesh) or draw(st.booleans()):
        lines.append(f"  wgmesh:mesh: {emit(mesh)}")
    lines.append(f"  wgmesh:nodes: {emit(nodes)}")
    if clients:
        lines.append(
            f"  {draw(st.sampled_from(['wgmesh:clients', 'clients', 'wgmesh:client']))}: {emit(clients)}"
        )
    if draw(st.integers(0, 5)) == 0:
        lines.append(f"  {emit(draw(st.sampled_from([Raw('mesh'), Raw('1'), 'wgmesh:nodes', 'a:b:c'])))}: x")
    return "\n".join(lines) + "\n", must_fail


def file_refused(text: str) -> bool:
    """The CLI would not run the program (bad YAML, keys), or a config key is not ours."""
    try:
        config = engine_config(text)
    except (yaml.YAMLError, StackFileError):
        return True
    return bool(unknown_config_keys(config.values)) or not config.has_config


def key_exists(key: str, text: str) -> bool:
    """The key's top-level section is in the file (its deeper path was checked by the parser)."""
    section = re.match(r"wgmesh:(\w+)", key)
    return section is not None and (section.group(1) in text)


@given(stack_files())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_fuzzed_stack_files_fail_only_with_keyed_one_line_problems(case: tuple[str, set[str]]) -> None:
    text, must_fail = case
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "Pulumi.fuzz.yaml"
        path.write_text(text)
        try:
            build_plan(load_spec(path))
        except ConfigError as e:
            keys = [p.key for p in e.problems]
            for p in e.problems:
                assert "\n" not in str(p), p
                assert p.key.startswith(str(path)) or key_exists(p.key, text), (p, text)
            if file_refused(text):
                assert len(keys) == 1, keys  # the CLI refuses the file: nothing else is read
                return
            for k in must_fail - set(keys):
                # Only a mesh or a node that failed to parse hides its networks' checks.
                owner = "wgmesh:mesh" if k.startswith("wgmesh:mesh") else k.split(".")[0]
                assert any(x.startswith(("wgmesh:mesh", owner)) for x in keys), (k, keys, text)
            return
        assert not must_fail, (must_fail, text)
