"""Policy for live updates: remote commands keep their key and stdin secret; SSH never open to 0/0."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer

from policy.pack import PACK_NAME, keep_secret_markers, policies
from policy.rules import (
    AWS_SG,
    GCP_FIREWALL,
    HCLOUD_FIREWALL,
    REMOTE_COMMAND,
    SECRET_SIG,
    SIG_KEY,
    live_updates_keep_ssh_closed,
    remote_command_secrets,
)

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


def secret(value: Any) -> dict[str, Any]:
    return {SIG_KEY: SECRET_SIG, "value": value}


def command(key: Any = None, stdin: Any = None, whole_connection_secret: bool = False) -> dict[str, Any]:
    connection = {
        "host": "198.51.100.1",
        "user": "ubuntu",
        "privateKey": key if key is not None else secret(KEY),
    }
    return {
        "connection": secret(connection) if whole_connection_secret else connection,
        "create": "bash -c ...",
        "stdin": stdin if stdin is not None else secret("[Interface]\n"),
    }


SSH_WORLD_SG = {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]}
SSH_ADMIN_SG = {
    "ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["203.0.113.0/24"]}]
}
SSH_WORLD_GCP = {
    "direction": "INGRESS",
    "sourceRanges": ["::/0"],
    "allows": [{"protocol": "tcp", "ports": ["22"]}],
}
SSH_WORLD_HCLOUD = {
    "rules": [{"direction": "in", "protocol": "tcp", "port": "22", "sourceIps": ["0.0.0.0/0"]}]
}


def test_secret_key_and_stdin_pass() -> None:
    assert remote_command_secrets(REMOTE_COMMAND, command()) == []
    assert remote_command_secrets(REMOTE_COMMAND, command(whole_connection_secret=True)) == []


def test_plain_key_or_stdin_fail() -> None:
    assert remote_command_secrets(REMOTE_COMMAND, command(key=KEY)) == [
        "connection.privateKey is not a secret (read it with Config.get_secret)"
    ]
    assert remote_command_secrets(REMOTE_COMMAND, command(stdin="[Interface]\n")) == [
        "stdin is not a secret: it carries a wg0.conf with a private key"
    ]
    assert remote_command_secrets(AWS_SG, command(key=KEY)) == []  # other types are not judged


def test_ssh_to_the_world_fails_only_with_live_updates() -> None:
    firewalls: list[tuple[str, dict[str, Any]]] = [
        (AWS_SG, SSH_WORLD_SG),
        (GCP_FIREWALL, SSH_WORLD_GCP),
        (HCLOUD_FIREWALL, SSH_WORLD_HCLOUD),
    ]
    assert live_updates_keep_ssh_closed(firewalls) == []
    found = live_updates_keep_ssh_closed([(REMOTE_COMMAND, command()), *firewalls])
    assert found == [
        f"live updates run over SSH, and {AWS_SG} opens it to the world: tcp/22 from 0.0.0.0/0",
        f"live updates run over SSH, and {GCP_FIREWALL} opens it to the world: tcp/22 from ::/0",
        f"live updates run over SSH, and {HCLOUD_FIREWALL} opens it to the world: tcp/22 from 0.0.0.0/0",
    ]
    assert live_updates_keep_ssh_closed([(REMOTE_COMMAND, command()), (AWS_SG, SSH_ADMIN_SG)]) == []


@pytest.fixture(scope="module")
def servicer() -> _PolicyAnalyzerServicer:
    keep_secret_markers()
    return _PolicyAnalyzerServicer(PACK_NAME, "0.0.1", list(policies()), EnforcementLevel.MANDATORY)


def _struct(props: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    json_format.ParseDict(props, struct)
    return struct


def test_stack_policy_reports_through_the_servicer(servicer: _PolicyAnalyzerServicer) -> None:
    def analyze(resources: list[tuple[str, dict[str, Any]]]) -> list[str]:
        request = analyzer_pb2.AnalyzeStackRequest(
            resources=[
                analyzer_pb2.AnalyzerResource(
                    type=t, properties=_struct(p), urn=f"urn:pulumi:t::p::{t}::r{i}", name=f"r{i}"
                )
                for i, (t, p) in enumerate(resources)
            ]
        )
        response = servicer.AnalyzeStack(request, None)  # type: ignore[no-untyped-call]
        return [f"{d.policyName}: {d.message}" for d in response.diagnostics]

    assert analyze([(AWS_SG, SSH_WORLD_SG)]) == []
    (found,) = analyze([(REMOTE_COMMAND, command()), (AWS_SG, SSH_WORLD_SG)])
    assert found.startswith("wgmesh-live-updates-keep-ssh-closed: ")
    assert "tcp/22 from 0.0.0.0/0" in found


def test_resource_policy_sees_a_plain_stdin_through_the_servicer(servicer: _PolicyAnalyzerServicer) -> None:
    def analyze(props: dict[str, Any]) -> dict[str, str]:
        request = analyzer_pb2.AnalyzeRequest(
            type=REMOTE_COMMAND, properties=_struct(props), urn="urn:pulumi:t::p::c::r", name="r"
        )
        response = servicer.Analyze(request, None)  # type: ignore[no-untyped-call]
        return {d.policyName: d.message for d in response.diagnostics}

    assert analyze(command()) == {}
    assert "stdin is not a secret" in analyze(command(stdin="[Interface]\n"))["wgmesh-remote-command-secrets"]
