"""A stack file's config exactly as the Pulumi CLI hands it to the program, without Pulumi.

What the CLI does (pulumi/pulumi, sdk/go/common/workspace/loaders.go LoadProjectStackBytes,
sdk/go/common/resource/config/{object,key}.go; gopkg.in/yaml.v3 v3.0.1 pinned in sdk/go.mod):
decode the file with yaml.v3 into untyped values; refuse any mapping key that is not a string
(SimplifyMarshalledValue); prefix a config key with no `:` with the project name; store each
value as a string: strings as they are, an empty value as "" (with a warning), anything else
as Go `encoding/json` text. The Python SDK's `Config.get_object` then `json.loads` that text.

yaml.v3 is neither PyYAML's YAML 1.1 nor strict YAML 1.2, so PyYAML only parses here and
`go_resolve` (a port of yaml.v3 resolve.go) types every plain scalar:
- `on off yes no y n` are strings; only `true/True/TRUE` and `false/False/FALSE` are booleans.
- integers go through Go's `strconv.ParseInt(s, 0, 64)` after dropping every `_`: `1_000` is
  1000, `0x1F` 31, `0o17` and (YAML 1.1 style, kept by v3) `017` are 15, `0b101` 5; `08` is
  no octal, so it falls through to the float rule and is 8.0.
- floats need YAML's shape (`1e3` is 1000.0, PyYAML would say string); `.inf`, `.nan` exist,
  but encoding/json refuses them, so the CLI fails on such a value.
- timestamps and base-60 numbers (`1:20`) stay strings.
- duplicate keys are an error; merge keys (`<<`) work as in YAML 1.1.
Go's JSON writes a whole float without a fraction (8.0 -> `8`), so the program sees an int.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

PROJECT = "wgmesh"  # Pulumi.yaml `name`: the namespace of a bare config key
_PLAIN = "tag:wgmesh,2026:plain"  # an untagged plain scalar, typed by go_resolve
_LONG = "tag:yaml.org,2002:"


class StackFileError(ValueError):
    """The CLI would refuse the file. `path` says where (config key path when inside config)."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


# ----------------------------------------------------------------------------- scalars (resolve.go)

_MAP: dict[str, Any] = {
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9_]*([eE][-+]?[0-9][0-9_]*)?")  # Go ParseFloat input starting with '.'
_INT64, _UINT64 = 2**63, 2**64


def go_resolve(text: str) -> Any:
    """The value yaml.v3 decodes an untagged plain scalar to (None, bool, int, float or str)."""
    if text in _MAP:
        return _MAP[text]
    first = text[0]
    if first == ".":
        return _go_float(text) if _DOT_FLOAT.fullmatch(text) and _underscore_ok(text) else text
    if first not in "+-0123456789":
        return text
    plain = text.replace("_", "")
    number = _go_int(plain)
    if number is None:
        number = _go_uint(plain)
    if number is not None:
        return number
    if _YAML_FLOAT.fullmatch(plain):
        f = _go_float(plain)
        return text if isinstance(f, str) else f
    return text


def _go_uint(s: str) -> int | None:
    """strconv.ParseUint(s, 0, 64): 0x/0o/0b prefixes, and a leading 0 means octal."""
    if not s or not s.isascii():
        return None
    base, digits = 10, s
    if s[0] == "0":
        prefixes = {"b": 2, "o": 8, "x": 16}
        if len(s) >= 3 and s[1].lower() in prefixes:
            base, digits = prefixes[s[1].lower()], s[2:]
        else:
            base, digits = 8, s[1:]
    n = 0
    for c in digits.lower():
        d = ord(c) - 48 if c.isdigit() else ord(c) - 87 if "a" <= c <= "z" else 99
        if d >= base:
            return None
        n = n * base + d
    return n if n < _UINT64 else None


def _go_int(s: str) -> int | None:
    """strconv.ParseInt(s, 0, 64)."""
    neg = s[:1] == "-"
    u = _go_uint(s[1:] if s[:1] in ("-", "+") else s)
    if u is None or u > (_INT64 if neg else _INT64 - 1):
        return None
    return -u if neg else u


def _go_float(s: str) -> float | str:
    """strconv.ParseFloat(s, 64) on a decimal YAML float; out of range is an error (kept a str)."""
    f = float(s.replace("_", ""))
    return s if math.isinf(f) else f


def _underscore_ok(s: str) -> bool:
    """Go strconv underscoreOK for a decimal number: each `_` sits between two digits."""
    saw = "^"
    for c in s:
        if c.isdigit():
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def _tagged(tag: str, text: str) -> Any:
    """A scalar with an explicit tag, as yaml.v3 decodes it into an untyped value."""
    short = "!!" + tag[len(_LONG) :] if tag.startswith(_LONG) else tag
    if short in {"!!str", "!!timestamp"}:
        return text
    if short == "!!binary":
        return base64.b64decode(text.encode(), validate=False).decode("utf-8", "replace")
    if short not in ("!!int", "!!float", "!!bool", "!!null"):
        return text  # a custom tag: yaml.v3 keeps the text
    value = go_resolve(text)
    kinds: dict[str, Callable[[Any], bool]] = {
        "!!int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "!!float": lambda v: isinstance(v, float | int) and not isinstance(v, bool),
        "!!bool": lambda v: isinstance(v, bool),
        "!!null": lambda v: v is None,
    }
    if not kinds[short](value):
        raise StackFileError((), f"cannot decode `{text}` as a {short}")
    return float(value) if short == "!!float" else value


# ----------------------------------------------------------------------------- documents (decode.go)


class _Loader(yaml.SafeLoader):
    """PyYAML's parser and composer; every untagged plain scalar is left for go_resolve."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


@dataclass
class _Decoder:
    """Node graph -> values, with yaml.v3's duplicate-key, merge and alias-expansion rules."""

    seen: set[int] = field(default_factory=set)
    active: set[int] = field(default_factory=set)
    decodes: int = 0
    aliases: int = 0

    def value(self, node: yaml.Node, path: tuple[str | int, ...], in_alias: bool = False) -> Any:
        again = id(node) in self.seen
        if id(node) in self.active:
            raise StackFileError(path, "anchor value contains itself")
        if again:  # an alias: yaml.v3 decodes the alias node, then its target again
            self._count(path, in_alias)
            in_alias = True
        self.seen.add(id(node))
        self._count(path, in_alias)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.ScalarNode):
                return self._scalar(node, path)
            if isinstance(node, yaml.SequenceNode):
                return [self.value(n, (*path, i), in_alias) for i, n in enumerate(node.value)]
            assert isinstance(node, yaml.MappingNode)
            return self._mapping(node, path, in_alias)
        finally:
            self.active.discard(id(node))

    def _count(self, path: tuple[str | int, ...], in_alias: bool) -> None:
        self.decodes += 1
        self.aliases += in_alias
        if (
            self.aliases > 100
            and self.decodes > 1000
            and self.aliases / self.decodes > _alias_ratio(self.decodes)
        ):
            raise StackFileError(path, "document contains excessive aliasing")

    def _scalar(self, node: yaml.ScalarNode, path: tuple[str | int, ...]) -> Any:
        if node.tag == _PLAIN:
            return go_resolve(node.value)
        try:
            return _tagged(node.tag, node.value)
        except StackFileError as e:
            raise StackFileError(path, e.message) from None

    def _mapping(self, node: yaml.MappingNode, path: tuple[str | int, ...], in_alias: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges: list[yaml.Node] = []
        lines: dict[tuple[type, str], int] = {}
        for key_node, value_node in node.value:
            raw = (type(key_node), key_node.value if isinstance(key_node, yaml.ScalarNode) else "")
            if raw in lines:
                line = key_node.start_mark.line + 1
                what = f"mapping key {json.dumps(raw[1])} already defined at line {lines[raw]}"
                raise StackFileError(path, f"{what} (line {line})")
            lines[raw] = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<" and key_node.tag == _PLAIN:
                merges.append(value_node)
                continue
            key = self.value(key_node, path, in_alias)
            if not isinstance(key, str):
                shown = repr(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "a collection"
                raise StackFileError(path, f"mapping key {shown} is not a string (the Pulumi CLI takes none)")
            out[key] = self.value(value_node, (*path, key), in_alias)
        for merge in merges:
            targets = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for target in targets:
                if not isinstance(target, yaml.MappingNode):
                    raise StackFileError(path, "map merge requires map or sequence of maps as the value")
                for k, v in self.value(target, path, in_alias).items():
                    out.setdefault(k, v)  # explicit keys, then earlier merges, win
        return out


def _alias_ratio(decodes: int) -> float:
    """yaml.v3 allowedAliasRatio: 99% of decodes may come from aliases, falling to 10% at 4M."""
    low, high = 400_000, 4_000_000
    if decodes <= low:
        return 0.99
    if decodes >= high:
        return 0.10
    return 0.99 - 0.89 * (decodes - low) / (high - low)


def decode(text: str) -> Any:
    """The first YAML document of `text` as yaml.v3 decodes it into an untyped value.

    Raises yaml.YAMLError on a syntax error, StackFileError on what yaml.v3 or the CLI refuse.
    """
    loader = _Loader(text)
    try:
        node = _first_node(loader)
    finally:
        loader.dispose()
    return None if node is None else _Decoder().value(node, ())


def _first_node(loader: _Loader) -> yaml.Node | None:
    """yaml.v3 Unmarshal reads the first document only."""
    loader.get_event()  # type: ignore[no-untyped-call]  # StreamStart
    if loader.check_event(yaml.StreamEndEvent):
        return None
    node: yaml.Node | None = loader.compose_document()
    return node


# ----------------------------------------------------------------------------- what the program gets


def program_value(value: Any, path: tuple[str | int, ...] = ()) -> Any:
    """`value` after Go encoding/json and Python json.loads: what `get_object` returns."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise StackFileError(path, f"{value} cannot be written as JSON (the CLI fails on it)")
        # Go writes abs < 1e21 in 'f' form, so a whole float has no fraction and json.loads gives an int.
        return int(value) if value == int(value) and abs(value) < 1e21 else value
    if isinstance(value, dict):
        return {k: program_value(value[k], (*path, k)) for k in sorted(value)}
    if isinstance(value, list):
        return [program_value(v, (*path, i)) for i, v in enumerate(value)]
    return value


def config_key(key: str) -> str | None:
    """config.ParseKey after namespacing: `ns:name`, `ns:config:name` -> `ns:name`; None if neither."""
    if ":" not in key:
        key = f"{PROJECT}:{key}"
    parts = key.split(":")
    if len(parts) == 2:
        return key
    if len(parts) == 3 and parts[1] == "config":
        return f"{parts[0]}:{parts[2]}"
    return None


@dataclass(frozen=True)
class EngineConfig:
    """A stack file's config as the engine hands it to the program: key -> string."""

    values: dict[str, str]
    secret_keys: tuple[str, ...]  # `{secure: ...}` values: their plaintext needs the secrets provider
    has_config: bool  # the file has a `config:` mapping


def engine_config(text: str) -> EngineConfig:
    """Raises yaml.YAMLError (syntax) or StackFileError (path: ("config", key, ...) inside config)."""
    doc = decode(text)
    config = doc.get("config") if isinstance(doc, dict) else None  # the CLI: not a stack either
    if not isinstance(config, dict):
        return EngineConfig({}, (), False)
    values: dict[str, str] = {}
    secrets: list[str] = []
    origin: dict[str, str] = {}
    for raw_key, value in config.items():
        key = config_key(raw_key)
        if key is None:
            raise StackFileError(("config", raw_key), "is not a config key (use `<namespace>:<name>`)")
        if key in origin:
            raise StackFileError(("config", raw_key), f"is the same config key as {origin[key]!r}")
        origin[key] = raw_key
        if isinstance(value, dict) and set(value) == {"secure"} and isinstance(value["secure"], str):
            secrets.append(key)
            continue
        values[key] = _config_text(value, ("config", raw_key))
    return EngineConfig(values, tuple(secrets), True)


def _config_text(value: Any, path: tuple[str | int, ...]) -> str:
    """config.Value's string: a string as is, null as "" (the CLI warns), the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(program_value(value, path), ensure_ascii=False, separators=(",", ":"))
