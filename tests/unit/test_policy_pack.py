"""The pack end to end through pulumi-policy's real analyzer servicer (what the CLI talks to).

The engine sends inputs with secret markers; these tests build the same gRPC request and
check that each mandatory policy reports (or not) through pulumi-policy's own code, which is
what proves the secret-marker patch in policy/pack.py works on the pinned version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format, struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy.policy import _PolicyAnalyzerServicer

from policy.pack import (
    PACK_NAME,
    PATCHED_PULUMI_POLICY,
    PolicyVersionError,
    check_pulumi_policy_version,
    keep_secret_markers,
    policies,
    to_wire,
)
from policy.rules import (
    AWS_INSTANCE,
    AWS_SG,
    GCP_INSTANCE,
    HCLOUD_SERVER,
    MANDATORY_RULES,
    SECRET_SIG,
    SIG_KEY,
    STACK_RULES,
)

POLICY_DIR = Path(__file__).resolve().parents[2] / "policy"


def secret(value: Any) -> dict[str, Any]:
    return {SIG_KEY: SECRET_SIG, "value": value}


@pytest.fixture(scope="module")
def servicer() -> _PolicyAnalyzerServicer:
    from pulumi_policy import EnforcementLevel

    keep_secret_markers()
    return _PolicyAnalyzerServicer(PACK_NAME, "0.0.1", list(policies()), EnforcementLevel.MANDATORY)


def analyze(servicer: _PolicyAnalyzerServicer, typ: str, props: dict[str, Any]) -> dict[str, str]:
    """policy name -> message, for every diagnostic the pack reports on one resource."""
    struct = struct_pb2.Struct()
    json_format.ParseDict(props, struct)
    request = analyzer_pb2.AnalyzeRequest(
        type=typ, properties=struct, urn=f"urn:pulumi:t::p::{typ}::r", name="r"
    )
    response = servicer.Analyze(request, None)  # type: ignore[no-untyped-call]
    return {d.policyName: d.message for d in response.diagnostics}


def test_every_rule_is_a_mandatory_policy() -> None:
    from pulumi_policy import EnforcementLevel

    built = policies()
    assert sorted(p.name for p in built) == sorted([*MANDATORY_RULES, *STACK_RULES])
    assert {p.enforcement_level for p in built} == {EnforcementLevel.MANDATORY}


def test_pack_metadata_points_at_the_project_venv() -> None:
    meta = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert meta["runtime"]["name"] == "python"
    venv = (POLICY_DIR / meta["runtime"]["options"]["virtualenv"]).resolve()
    assert venv == (POLICY_DIR.parent / ".venv").resolve()
    assert (POLICY_DIR / "__main__.py").is_file()


def test_secret_user_data_passes_and_plain_user_data_fails(servicer: _PolicyAnalyzerServicer) -> None:
    good = {
        "userDataBase64": secret("I2Nsb3VkLWNvbmZpZwo="),
        "metadataOptions": {"httpTokens": "required"},
        "rootBlockDevice": {"encrypted": True},
    }
    assert analyze(servicer, AWS_INSTANCE, good) == {}
    bad = {**good, "userDataBase64": "I2Nsb3VkLWNvbmZpZwo="}
    assert set(analyze(servicer, AWS_INSTANCE, bad)) == {"wgmesh-user-data-secret"}
    assert analyze(servicer, HCLOUD_SERVER, {"userData": secret("#cloud-config\n")}) == {}
    assert set(analyze(servicer, HCLOUD_SERVER, {"userData": "#cloud-config\n"})) == {
        "wgmesh-user-data-secret"
    }
    assert analyze(servicer, GCP_INSTANCE, {"metadata": secret({"user-data": "#cloud-config\n"})}) == {}


def test_firewall_and_instance_rules_report_through_the_servicer(servicer: _PolicyAnalyzerServicer) -> None:
    ssh_world = {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]}
    assert set(analyze(servicer, AWS_SG, ssh_world)) == {"wgmesh-no-ssh-from-world"}
    wg_world = {
        "ingress": [{"protocol": "udp", "fromPort": 51820, "toPort": 51820, "cidrBlocks": ["0.0.0.0/0"]}]
    }
    assert set(analyze(servicer, AWS_SG, wg_world)) == {"wgmesh-wireguard-world-only-for-roaming"}
    assert analyze(servicer, AWS_SG, {**wg_world, "tags": {"wgmesh-roaming": "true"}}) == {}
    weak = {"metadataOptions": {"httpTokens": "optional"}, "rootBlockDevice": {"encrypted": False}}
    assert set(analyze(servicer, AWS_INSTANCE, weak)) == {
        "wgmesh-imdsv2-required",
        "wgmesh-root-volume-encrypted",
    }


def test_to_wire_keeps_nested_secrets() -> None:
    from pulumi_policy import Secret

    value = {"a": [Secret("x"), {"b": Secret({"c": 1})}], "d": 2}
    assert to_wire(value) == {"a": [secret("x"), {"b": secret({"c": 1})}], "d": 2}


def test_without_the_patch_pulumi_policy_drops_secret_markers() -> None:
    """Why the patch exists: unpatched, a secret user data looks plain to `validate`.

    Runs in a fresh interpreter (the patch is process-wide). If a pulumi-policy upgrade starts
    keeping the markers, this fails and the patch in policy/pack.py can go.
    """
    import subprocess
    import sys

    code = (
        "from google.protobuf import json_format, struct_pb2\n"
        "from pulumi.runtime.proto import analyzer_pb2\n"
        "from pulumi_policy import EnforcementLevel\n"
        "from pulumi_policy.policy import _PolicyAnalyzerServicer\n"
        "from policy.pack import policies\n"
        "s = _PolicyAnalyzerServicer('p', '0.0.1', policies(), EnforcementLevel.MANDATORY)\n"
        "st = struct_pb2.Struct()\n"
        f"json_format.ParseDict({{'userData': {{'{SIG_KEY}': '{SECRET_SIG}', 'value': 'x'}}}}, st)\n"
        "r = s.Analyze(analyzer_pb2.AnalyzeRequest(type='hcloud:index/server:Server', properties=st), None)\n"
        "print(sorted(d.policyName for d in r.diagnostics))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=POLICY_DIR.parent, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "['wgmesh-user-data-secret']"


def test_the_patched_release_is_the_pinned_and_installed_one() -> None:
    from importlib import metadata

    pins = (POLICY_DIR.parent / "requirements.txt").read_text().splitlines()
    assert f"pulumi-policy=={PATCHED_PULUMI_POLICY}" in pins
    assert metadata.version("pulumi-policy") == PATCHED_PULUMI_POLICY
    check_pulumi_policy_version()  # the installed one passes


def test_another_pulumi_policy_release_is_refused_in_one_line() -> None:
    with pytest.raises(PolicyVersionError) as err:
        check_pulumi_policy_version("1.22.0")
    message = str(err.value)
    assert "\n" not in message
    assert f"patches pulumi-policy {PATCHED_PULUMI_POLICY} internals but 1.22.0 is installed" in message


def test_the_pack_stops_before_patching_another_release() -> None:
    """The entry point exits with the one line (no traceback) and leaves pulumi-policy unpatched."""
    import subprocess
    import sys

    code = (
        "import importlib.metadata as m, runpy, sys\n"
        "real = m.version\n"
        "m.version = lambda name: '1.22.0' if name == 'pulumi-policy' else real(name)\n"
        "try:\n"
        "    runpy.run_path('policy/__main__.py', run_name='__main__')\n"
        "finally:\n"
        "    import pulumi_policy.policy as p\n"
        "    patched = hasattr(p.deserialize_properties, '_wgmesh_keeps_secret_markers')\n"
        "    print('patched' if patched else 'unpatched')\n"
    )
    argv = [sys.executable, "-c", code]
    out = subprocess.run(argv, cwd=POLICY_DIR.parent, capture_output=True, text=True, check=False)
    assert out.returncode == 1
    assert out.stdout.strip() == "unpatched"
    assert out.stderr.startswith("wgmesh policy pack: policy/pack.py patches pulumi-policy ")
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
