"""Read the stack config through Pulumi and turn it into a plan, or fail before any resource.

The same parser as the offline tools (`mesh.spec.parse`) runs on the same keys; only the
error type differs: a `pulumi.RunError` subclass, so `pulumi preview` prints the one-line-per-
problem message instead of a Python traceback.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi.runtime.config
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

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
    problem = admin_key_problem(str(value), spec.mesh.ssh_public_keys)
    if problem is not None:
        raise StackConfigError([Problem(key, problem)])
    return pulumi.Output.secret(str(value))


ROTATE_HOW = (
    "rotate in two steps: add the new public key to wgmesh:mesh.sshPublicKeys and `pulumi up`, "
    "then set the new private key, drop the old public key and `pulumi up` "
    '(docs/changes.md, "Rotate the admin SSH key")'
)


def admin_key_problem(private_key: str, public_keys: Sequence[str]) -> str | None:
    """Why live updates could not log in with this key (None: its public key is in sshPublicKeys).

    Nodes accept only `sshPublicKeys` (their user data, then each apply), so a private key whose
    public half is not listed fails every command after minutes of retries; say so at preview.
    The message never quotes the key.
    """
    data = private_key.encode()
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key: Any = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography: "Password was not given but private key is encrypted"
        return (
            "is encrypted with a passphrase; pulumi-command cannot prompt for it: "
            "store a key without one (a separate deploy key)"
        )
    except (ValueError, UnsupportedAlgorithm):
        return "cannot be read as a private key (PEM or OpenSSH)"
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    wanted = public.decode().split()[:2]
    if any(k.split()[:2] == wanted for k in public_keys):
        return None
    return f"its public key is not in wgmesh:mesh.sshPublicKeys, so nodes would refuse it: {ROTATE_HOW}"


PUSHED_RE = re.compile(r"[A-Za-z0-9._/-]+:[0-9a-f]{32}")


def load_pushed() -> dict[str, str]:
    """`wgmesh:pushed` (written by `make push`): node -> `<vm id>:<payload digest>`."""
    key = "wgmesh:pushed"
    try:
        raw = pulumi.Config("wgmesh").get_object("pushed")
    except pulumi.ConfigTypeError:
        raise StackConfigError([Problem(key, "is not valid YAML/JSON structured config")]) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise StackConfigError([Problem(key, "must be a map of node name to `<vm id>:<digest>` (make push)")])
    problems = [
        Problem(f"{key}.{node}", "is not `<vm id>:<digest>` as `make push` writes it")
        for node, record in raw.items()
        if not isinstance(record, str) or not PUSHED_RE.fullmatch(record)
    ]
    if problems:
        raise StackConfigError(problems)
    return {str(node): str(record) for node, record in raw.items()}
