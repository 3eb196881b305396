"""Read a Pulumi stack file (stacks/Pulumi.<stack>.yaml) without Pulumi, for offline tools.

`make render`, the lab and the tests use this; the Pulumi program reads the same keys
through `pulumi.Config` instead, and mesh.pulumi_yaml makes both see the same values (the
CLI's YAML rules: `off` is a string, `017` is 15, a key given twice is an error).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from mesh.errors import ConfigError, Problem
from mesh.pulumi_yaml import StackFileError, config_key, engine_config
from mesh.spec import CONFIG_SECTIONS, MeshSpec, parse, unknown_config_keys

STACKS_DIR = Path(__file__).resolve().parent.parent / "stacks"


def stack_path(stack: str | Path) -> Path:
    """A stack name ('dev') means stacks/Pulumi.dev.yaml; anything with a slash or .yaml is a path."""
    text = str(stack)
    if "/" in text or text.endswith((".yaml", ".yml")):
        return Path(text)
    return STACKS_DIR / f"Pulumi.{text}.yaml"


def stack_name(stack: str | Path) -> str:
    name = stack_path(stack).name
    return name.removeprefix("Pulumi.").rsplit(".", 1)[0]


def load_config(stack: str | Path) -> dict[str, Any]:
    """The `wgmesh:*` values of a stack file, keyed mesh/nodes/clients, as `get_object` returns them."""
    path = stack_path(stack)
    try:
        text = path.read_text(encoding="utf-8-sig")  # the CLI strips a UTF-8 BOM too
        config = engine_config(text)
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), "no such stack file")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([Problem(str(path), f"cannot be read ({type(e).__name__})")]) from None
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError([Problem(str(path), f"is not valid YAML ({_first_line(e)})")]) from None
    except StackFileError as e:
        raise ConfigError([Problem(_error_key(path, e.path), e.message)]) from None
    if not config.has_config:
        raise ConfigError([Problem(f"{path}: config", "the stack file has no `config:` mapping")])
    problems = unknown_config_keys([*config.values, *config.secret_keys])
    out: dict[str, Any] = {}
    for s in CONFIG_SECTIONS:
        key = f"wgmesh:{s}"
        if key in config.secret_keys:
            problems.append(Problem(key, "is encrypted: the offline tools cannot decrypt it"))
            continue
        try:
            out[s] = None if key not in config.values else json.loads(config.values[key])
        except ValueError:  # what pulumi.Config.get_object fails on; components.config says the same
            problems.append(Problem(key, "is not valid YAML/JSON structured config"))
    if problems:
        raise ConfigError(problems)
    return out


def _error_key(path: Path, where: tuple[str | int, ...]) -> str:
    """A config key path (`wgmesh:nodes[0].name`) inside `config:`, else the file and YAML path."""
    head = config_key(str(where[1])) if len(where) >= 2 and where[0] == "config" else None
    if head is not None and head.startswith("wgmesh:"):
        return head + "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" if re.fullmatch(r"\w+", p) else f"[{p!r}]"
            for p in where[2:]
        )
    return f"{path}: {'.'.join(str(p) for p in where)}" if where else str(path)


def load_spec(stack: str | Path) -> MeshSpec:
    return parse(load_config(stack))


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
