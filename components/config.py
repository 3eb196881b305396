"""Read the stack config through Pulumi and turn it into a plan, or fail before any resource.

The same parser as the offline tools (`mesh.spec.parse`) runs on the same keys; only the
error type differs: a `pulumi.RunError` subclass, so `pulumi preview` prints the one-line-per-
problem message instead of a Python traceback.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pulumi.runtime.config

from components.quota_config import parse_quotas
from components.quota_plan import QuotaKey
from mesh.errors import ConfigError, Problem
from mesh.plan import build_plan
from mesh.plan_types import MeshPlan
from mesh.spec import CONFIG_SECTIONS, SSH_PRIVATE_KEY_CONFIG, MeshSpec, parse, unknown_config_keys


class StackConfigError(ConfigError, pulumi.RunError):
    """A ConfigError that Pulumi reports as a plain message."""


def read_config() -> dict[str, Any]:
    """The raw `wgmesh:mesh`, `wgmesh:nodes`, `wgmesh:clients` values (None when unset)."""
    config = pulumi.Config("wgmesh")
    raw: dict[str, Any] = {}
    problems: list[Problem] = unknown_config_keys(_config_keys())
    for section in CONFIG_SECTIONS:
        try:
            raw[section] = config.get_object(section)
        except pulumi.ConfigTypeError:
            problems.append(Problem(f"wgmesh:{section}", "is not valid YAML/JSON structured config"))
    if problems:
        raise StackConfigError(problems)
    return raw


def _config_keys() -> set[str]:
    """Every stack config key the engine handed the program (explicit, then PULUMI_CONFIG)."""
    runtime = pulumi.runtime.config
    return set(runtime.CONFIG.get()) | set(runtime.get_config_env() or {})


def load_plan() -> MeshPlan:
    """Parse, validate and plan the stack config; raise StackConfigError on any problem."""
    try:
        return build_plan(parse(read_config()))
    except StackConfigError:
        raise
    except ConfigError as e:
        raise StackConfigError(e.problems) from None


def load_quotas() -> dict[QuotaKey, int]:
    """`wgmesh:quotas`: the quotas the user raised; raise StackConfigError on a bad key or value."""
    try:
        return parse_quotas(pulumi.Config("wgmesh").get_object("quotas"))
    except pulumi.ConfigTypeError:
        problem = Problem("wgmesh:quotas", "is not valid YAML/JSON structured config")
        raise StackConfigError([problem]) from None
    except ConfigError as e:
        raise StackConfigError(e.problems) from None


def gcp_project() -> str | None:
    """`gcp:project` for the explicit GCP provider (None: GOOGLE_PROJECT or gcloud's default)."""
    return pulumi.Config("gcp").get("project")


PRIVATE_KEY_RE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.+-----END [A-Z ]*PRIVATE KEY-----\s*", re.S)


def ssh_private_key(spec: MeshSpec) -> pulumi.Output[str] | None:
    """`wgmesh:sshPrivateKey` (a secret) for live updates; None when they are off.

    Problems name the key and never quote the value.
    """
    if not spec.mesh.live_updates:
        return None
    key = f"wgmesh:{SSH_PRIVATE_KEY_CONFIG}"
    value = pulumi.runtime.config.get_config(key)
    how = f"set it with `pulumi config set --secret {key} < ~/.ssh/id_ed25519`"
    if not value:
        raise StackConfigError([Problem(key, f"is required with wgmesh:mesh.liveUpdates: {how}")])
    if not pulumi.runtime.config.is_config_secret(key):
        raise StackConfigError([Problem(key, f"must be a secret, not plain text in the stack file: {how}")])
    if not PRIVATE_KEY_RE.fullmatch(str(value)):
        raise StackConfigError(
            [Problem(key, "is not a PEM/OpenSSH private key (-----BEGIN ... PRIVATE KEY-----)")]
        )
    return pulumi.Output.secret(str(value))
