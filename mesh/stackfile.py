"""Read a Pulumi stack file (stacks/Pulumi.<stack>.yaml) without Pulumi, for offline tools.

`make render`, the lab and the tests use this; the Pulumi program reads the same keys
through `pulumi.Config` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mesh.errors import ConfigError, Problem
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
    """The raw `wgmesh:*` values of a stack file, keyed mesh/nodes/clients."""
    path = stack_path(stack)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), "no such stack file")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([Problem(str(path), f"cannot be read ({type(e).__name__})")]) from None
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError([Problem(str(path), f"is not valid YAML ({_first_line(e)})")]) from None
    config = (doc or {}).get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise ConfigError([Problem(f"{path}: config", "the stack file has no `config:` mapping")])
    unknown = unknown_config_keys(str(k) for k in config)
    if unknown:
        raise ConfigError(unknown)
    return {s: config.get(f"wgmesh:{s}") for s in CONFIG_SECTIONS}


def load_spec(stack: str | Path) -> MeshSpec:
    return parse(load_config(stack))


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
