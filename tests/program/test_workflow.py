"""The CI workflow runs preview (with a PR comment) on pull requests and up on main, per stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from wgmesh_mocks import REPO

from tools.ci_ssh import plan

WORKFLOW = REPO / ".github" / "workflows" / "preview.yml"


def load() -> dict[str, Any]:
    doc: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True)  # YAML 1.1 reads the key `on` as a boolean
    return doc


def pulumi_steps(job: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """The pulumi/actions steps that run a command (one without `command` only installs the CLI)."""
    return [
        (i, s)
        for i, s in enumerate(job["steps"])
        if str(s.get("uses", "")).startswith("pulumi/actions@") and "command" in s.get("with", {})
    ]


def pulumi_step(job: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The job's first pulumi command (the preview, or the up)."""
    return pulumi_steps(job)[0]


def step(job: dict[str, Any], name: str) -> tuple[int, dict[str, Any]]:
    (found,) = [(i, s) for i, s in enumerate(job["steps"]) if s.get("name") == name]
    return found


def test_triggers_and_commands() -> None:
    doc = load()
    assert set(doc["on"]) == {"pull_request", "push"}
    assert doc["on"]["push"]["branches"] == ["main"]
    jobs = doc["jobs"]
    preview = pulumi_step(jobs["preview"])[1]["with"]
    up = pulumi_step(jobs["up"])[1]["with"]
    assert preview["command"] == "preview" and preview["comment-on-pr"] is True
    assert up["command"] == "up"
    assert "pull_request" in jobs["preview"]["if"] and "refs/heads/main" in jobs["up"]["if"]
    assert doc["permissions"]["pull-requests"] == "write"


def test_every_job_installs_the_venv_before_pulumi_and_uses_the_pack() -> None:
    for job in load()["jobs"].values():
        for index, found in pulumi_steps(job):
            before = " ".join(str(s.get("run", "")) for s in job["steps"][:index])
            assert "python -m venv .venv" in before
            assert ".venv/bin/pip install --quiet -r requirements.txt" in before
            assert (REPO / found["with"]["policyPacks"] / "PulumiPolicy.yaml").is_file()


def test_the_gcp_project_is_set_for_every_job() -> None:
    """The program's GCP provider takes `gcp:project`, else GOOGLE_PROJECT (docs/deploy.md, "In CI")."""
    assert load()["env"]["GOOGLE_PROJECT"] == "${{ vars.GCP_PROJECT }}"


def test_up_opens_ssh_to_the_runner_for_one_up_and_always_closes_it() -> None:
    """liveUpdates: the runner's /32 joins adminCidrs in the checkout only; `up` runs again without it."""
    job = load()["jobs"]["up"]
    steps = job["steps"]
    (install_at, install), (up_at, up), (close_at, close) = [
        (i, s) for i, s in enumerate(steps) if str(s.get("uses", "")).startswith("pulumi/actions@")
    ]
    assert "with" not in install  # installs the CLI only
    open_at, opener = step(job, "Open SSH to this runner for this run (liveUpdates only)")
    restore_at, restore = step(job, "Restore the stack file (drops the runner's address)")
    assert install_at < open_at < up_at < restore_at < close_at
    script = opener["run"]
    assert "https://checkip.amazonaws.com" in script and "-m tools.ci_ssh" in script
    assert 'pulumi config set --path "wgmesh:mesh.adminCidrs[$index]" "$cidr" --stack "$STACK"' in script
    assert "git commit" not in script and "git push" not in script
    assert restore["run"] == "git checkout -- stacks/"
    for s in (restore, close):
        assert s["if"] == "always() && steps.ssh.outputs.opened == 'true'"
    assert up["with"]["command"] == close["with"]["command"] == "up"
    assert up["with"]["stack-name"] == close["with"]["stack-name"] == "${{ env.STACK }}"
    assert "matrix.stack" in job["env"]["STACK"]


def test_ci_ssh_tool_on_a_live_stack(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.ci.yaml"
    stack.write_text(
        "config:\n  wgmesh:mesh:\n    cidr: 10.77.0.0/24\n    liveUpdates: true\n"
        "    adminCidrs: [198.51.100.0/24, 203.0.113.7/32]\n    sshPublicKeys: ['ssh-ed25519 AAAA']\n"
        "  wgmesh:nodes: []\n"
    )
    assert plan(str(stack), "192.0.2.44") == {"live": "true", "index": "2", "cidr": "192.0.2.44/32"}
    assert plan("dev", "192.0.2.44")["live"] == "false"  # the dev stack: no SSH opened
    with pytest.raises(ValueError):
        plan(str(stack), "not-an-ip")


def test_matrix_stacks_exist_and_are_cloud_stacks() -> None:
    for job in load()["jobs"].values():
        for stack in job["strategy"]["matrix"]["stack"]:
            text = (REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text()
            assert "cloud: aws" in text or "cloud: gcp" in text or "cloud: hcloud" in text
