"""Wire the pure rules into CrossGuard: one mandatory ResourceValidationPolicy per rule.

Why the deserializer patch: the engine sends resource inputs to a policy pack with their
secret markers (it marshals with KeepSecrets), but pulumi-policy 1.21's `validate` path
decodes them without the markers, so no rule could tell a secret user data from a plain one.
`keep_secret_markers()` makes that decoding keep them as `pulumi_policy.Secret`, and
`to_wire()` turns those back into the engine's wire form the rules read. The other paths
(remediation, stack validation) keep their own behaviour. tests/unit/test_policy_pack.py
drives the real analyzer servicer to prove the whole chain. The patch reaches into one
release's internals, so it refuses any other (`PATCHED_PULUMI_POLICY`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

import pulumi_policy
import pulumi_policy.policy as policy_module
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy.rules import (
    DEFAULT_WG_PORT,
    SECRET_SIG,
    SIG_KEY,
    imdsv2_required,
    live_updates_keep_ssh_closed,
    no_ssh_from_world,
    remote_command_secrets,
    root_volume_encrypted,
    user_data_secret,
    wireguard_world_only_for_roaming,
)

PACK_NAME = "wgmesh"
_PATCHED = "_wgmesh_keeps_secret_markers"
# The pulumi-policy release whose internals keep_secret_markers() patches: requirements.txt pins it.
PATCHED_PULUMI_POLICY = "1.21.0"


class PolicyVersionError(RuntimeError):
    """pulumi-policy is not the release the patch was written and tested against (one line)."""


def check_pulumi_policy_version(installed: str | None = None) -> None:
    """Refuse to patch another pulumi-policy than PATCHED_PULUMI_POLICY (`installed`: for tests)."""
    found = metadata.version("pulumi-policy") if installed is None else installed
    if found != PATCHED_PULUMI_POLICY:
        raise PolicyVersionError(
            f"policy/pack.py patches pulumi-policy {PATCHED_PULUMI_POLICY} internals but {found} is"
            f" installed: run `make venv` (requirements.txt pins it), or check the patch on {found}"
            " with tests/unit/test_policy_pack.py and raise PATCHED_PULUMI_POLICY"
        )


def keep_secret_markers() -> None:
    """Make `validate` see secrets as `pulumi_policy.Secret` (idempotent; pinned release only)."""
    check_pulumi_policy_version()
    namespace = vars(policy_module)  # patched by name: the function is an internal import there
    original = namespace["deserialize_properties"]
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    def deserialize(props: dict[str, Any], proxy_secrets: bool = False) -> Any:
        if proxy_secrets:
            return original(props, True)
        # Leave the markers in: mark secrets, but hand back plain dicts/lists (no proxies).
        return _unproxy(original(props, True))

    setattr(deserialize, _PATCHED, True)
    namespace["deserialize_properties"] = deserialize


def _unproxy(value: Any) -> Any:
    """Plain dicts/lists out of pulumi-policy's secret-preserving proxies, keeping Secret leaves."""
    if isinstance(value, pulumi_policy.Secret):
        return pulumi_policy.Secret(_unproxy(value.value))
    if isinstance(value, Mapping):
        return {k: _unproxy(_raw(value, k)) for k in value}
    if isinstance(value, list | tuple) or _is_list_proxy(value):
        return [_unproxy(v) for v in _raw_items(value)]
    return value


def _raw(mapping: Mapping[str, Any], key: str) -> Any:
    target = mapping["__target"] if _has_target(mapping) else mapping
    return target[key]


def _raw_items(seq: Any) -> list[Any]:
    return list(seq["__target"]) if _is_list_proxy(seq) else list(seq)


def _has_target(value: Any) -> bool:
    return type(value).__name__ in ("_DictSecretsProxy", "_DictProxy")


def _is_list_proxy(value: Any) -> bool:
    return type(value).__name__ in ("_ListSecretsProxy", "_ListProxy")


def to_wire(value: Any) -> Any:
    """Plain data with secrets in the engine's wire form, whatever pulumi-policy handed us."""
    if isinstance(value, pulumi_policy.Secret):
        return {SIG_KEY: SECRET_SIG, "value": to_wire(value.value)}
    if _has_target(value):
        value = value["__target"]
    if isinstance(value, Mapping):
        return {k: to_wire(value[k]) for k in value}
    if _is_list_proxy(value):
        value = value["__target"]
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    return value


def _validator(rule: Callable[[str, Mapping[str, Any]], list[str]]) -> Callable[..., None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule(args.resource_type, to_wire(args.props)):
            report_violation(message, None)

    return validate


def _wireguard_validator(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    port = int(args.get_config().get("wireguardPort", DEFAULT_WG_PORT))
    for message in wireguard_world_only_for_roaming(args.resource_type, to_wire(args.props), port):
        report_violation(message, None)


def _live_updates_validator(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    resources = [(r.resource_type, to_wire(r.props)) for r in args.resources]
    for message in live_updates_keep_ssh_closed(resources):
        report_violation(message, None)


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    mandatory = EnforcementLevel.MANDATORY
    return [
        ResourceValidationPolicy(
            name="wgmesh-no-ssh-from-world",
            description="SSH (tcp/22) may be reached from adminCidrs only, never from 0.0.0.0/0 or ::/0.",
            validate=_validator(no_ssh_from_world),
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="wgmesh-wireguard-world-only-for-roaming",
            description="The WireGuard port is open to the world only on nodes that roaming clients dial.",
            validate=_wireguard_validator,
            enforcement_level=mandatory,
            config_schema=PolicyConfigSchema(
                properties={"wireguardPort": {"type": "integer", "default": DEFAULT_WG_PORT}}
            ),
        ),
        ResourceValidationPolicy(
            name="wgmesh-imdsv2-required",
            description="EC2 instances require IMDSv2 tokens (metadataOptions.httpTokens: required).",
            validate=_validator(imdsv2_required),
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="wgmesh-root-volume-encrypted",
            description="EC2 root volumes are encrypted.",
            validate=_validator(root_volume_encrypted),
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="wgmesh-user-data-secret",
            description="VM user data carries WireGuard private keys and must be a Pulumi secret.",
            validate=_validator(user_data_secret),
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="wgmesh-remote-command-secrets",
            description="Live-update commands carry their SSH key and wg0.conf (stdin) as secrets.",
            validate=_validator(remote_command_secrets),
            enforcement_level=mandatory,
        ),
        StackValidationPolicy(
            name="wgmesh-live-updates-keep-ssh-closed",
            description="With live updates (remote commands over SSH), no firewall opens tcp/22 to 0/0.",
            validate=_live_updates_validator,
            enforcement_level=mandatory,
        ),
    ]
