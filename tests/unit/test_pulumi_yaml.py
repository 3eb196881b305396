"""The offline reader sees a stack file as the Pulumi CLI does (gopkg.in/yaml.v3, Go JSON).

The expected values come from yaml.v3 v3.0.1 resolve.go and the CLI's config code
(pulumi/pulumi sdk/go/common/resource/config/object.go); each row where PyYAML's YAML 1.1
answer differs says so, so a reader that falls back to yaml.safe_load fails here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh.errors import ConfigError
from mesh.pulumi_yaml import decode, engine_config, go_resolve
from mesh.stackfile import load_config, load_spec

# (plain scalar, what yaml.v3 decodes it to); comments: what PyYAML (YAML 1.1) says instead.
SCALARS: list[tuple[str, Any]] = [
    ("off", "off"),  # False
    ("on", "on"),  # True
    ("yes", "yes"),  # True
    ("no", "no"),  # False
    ("y", "y"),
    ("True", True),
    ("FALSE", False),
    ("tRUE", "tRUE"),
    ("017", 15),  # 15 too (YAML 1.2 core would say 17)
    ("0o17", 15),  # "0o17"
    ("-017", -15),
    ("0x1F", 31),
    ("0b101", 5),
    ("1_000", 1000),
    ("08", 8.0),  # "08": no octal, so yaml.v3's float rule takes it
    ("1e3", 1000.0),  # "1e3"
    ("+12", 12),
    (".5", 0.5),
    ("1:20", "1:20"),  # 80 (base 60)
    ("2001-12-14", "2001-12-14"),  # a date
    ("~", None),
    ("Null", None),
    ("9223372036854775808", 2**63),  # uint64
    ("1e999", "1e999"),  # inf: Go's ParseFloat calls it out of range
    ("0x", "0x"),
]


@pytest.mark.parametrize(("text", "expected"), SCALARS)
def test_plain_scalars_resolve_as_yaml_v3_does(text: str, expected: Any) -> None:
    got = go_resolve(text)
    assert got == expected and type(got) is type(expected)
    assert decode(f"k: {text}\n") == {"k": expected}


def test_infinity_and_nan_are_floats() -> None:
    assert go_resolve(".inf") == math.inf and go_resolve("-.Inf") == -math.inf
    assert math.isnan(go_resolve(".NaN"))


def test_quoted_and_tagged_scalars_stay_what_they_say() -> None:
    assert decode("a: 'off'\nb: \"017\"\nc: !!str 1\nd: !!float 1\ne: !custom 5\n") == {
        "a": "off",
        "b": "017",
        "c": "1",
        "d": 1.0,
        "e": "5",
    }


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(text)
    return path


def one_problem(path: Path) -> tuple[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (p,) = info.value.problems
    return p.key, p.message


def test_off_is_a_string_to_the_program(tmp_path: Path) -> None:
    path = write(tmp_path, "config:\n  wgmesh:mesh: {cidr: 10.1.0.0/24, presharedKeys: off}\n")
    assert load_config(path)["mesh"] == {"cidr": "10.1.0.0/24", "presharedKeys": "off"}
    with pytest.raises(ConfigError, match=r"wgmesh:mesh.presharedKeys: must be true or false, got a string"):
        load_spec(path)


def test_a_whole_float_reaches_the_program_as_an_int(tmp_path: Path) -> None:
    """Go's encoding/json writes 51820.0 as `51820`; get_object gives the program an int."""
    path = write(tmp_path, "config:\n  wgmesh:mesh: {cidr: 10.1.0.0/24, port: 51820.0, keepalive: 1e1}\n")
    assert load_config(path)["mesh"] == {"cidr": "10.1.0.0/24", "port": 51820, "keepalive": 10}


def test_an_octal_looking_number_is_octal(tmp_path: Path) -> None:
    path = write(tmp_path, "config:\n  wgmesh:mesh: {cidr: 10.1.0.0/24, keyEpoch: 017, port: 0o777}\n")
    assert load_config(path)["mesh"] == {"cidr": "10.1.0.0/24", "keyEpoch": 15, "port": 511}


def test_a_key_given_twice_is_refused_and_named(tmp_path: Path) -> None:
    path = write(tmp_path, "config:\n  wgmesh:mesh:\n    cidr: 10.1.0.0/24\n    cidr: 10.2.0.0/24\n")
    assert yaml.safe_load(path.read_text())["config"]["wgmesh:mesh"] == {"cidr": "10.2.0.0/24"}  # PyYAML
    assert one_problem(path) == ("wgmesh:mesh", 'mapping key "cidr" already defined at line 3 (line 4)')


def test_a_non_string_key_is_refused_where_it_is(tmp_path: Path) -> None:
    path = write(tmp_path, "config:\n  wgmesh:nodes:\n    - {name: a, 1: b}\n")
    assert one_problem(path) == (
        "wgmesh:nodes[0]",
        "mapping key '1' is not a string (the Pulumi CLI takes none)",
    )


def test_infinity_cannot_become_json(tmp_path: Path) -> None:
    path = write(tmp_path, "config:\n  wgmesh:mesh: {cidr: 10.1.0.0/24, port: .inf}\n")
    assert one_problem(path) == ("wgmesh:mesh.port", "inf cannot be written as JSON (the CLI fails on it)")


def test_bare_keys_are_in_the_project_namespace(tmp_path: Path) -> None:
    path = write(tmp_path, "config:\n  mesh: {cidr: 10.1.0.0/24}\n  wgmesh:config:nodes: []\n")
    assert load_config(path) == {
        "mesh": {"cidr": "10.1.0.0/24"},
        "nodes": [],
        "clients": None,
        "quotas": None,
    }
    path = write(tmp_path, "config:\n  mesh: {cidr: 10.1.0.0/24}\n  wgmesh:mesh: {cidr: 10.2.0.0/24}\n")
    assert one_problem(path) == ("wgmesh:mesh", "is the same config key as 'mesh'")


def test_an_empty_value_is_the_empty_string_the_program_cannot_parse(tmp_path: Path) -> None:
    path = write(tmp_path, "config:\n  wgmesh:mesh: {cidr: 10.1.0.0/24}\n  wgmesh:clients:\n")
    assert engine_config(path.read_text()).values["wgmesh:clients"] == ""
    assert one_problem(path) == ("wgmesh:clients", "is not valid YAML/JSON structured config")


def test_merge_keys_and_aliases_work_and_explicit_keys_win(tmp_path: Path) -> None:
    text = (
        "base: &aws {cloud: aws, region: eu-central-1}\n"
        "config:\n  wgmesh:nodes:\n    - {<<: *aws, name: a}\n    - {<<: *aws, name: b, region: us-east-1}\n"
    )
    nodes = load_config(write(tmp_path, text))["nodes"]
    assert nodes == [
        {"cloud": "aws", "name": "a", "region": "eu-central-1"},
        {"cloud": "aws", "name": "b", "region": "us-east-1"},
    ]


def test_exponential_aliasing_is_refused_like_yaml_v3() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    with pytest.raises(ValueError, match="excessive aliasing"):
        decode("\n".join(lines) + "\n")
