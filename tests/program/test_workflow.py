"""The CI workflow runs preview (with a PR comment) on pull requests and up on main, per stack."""

from __future__ import annotations

from typing import Any

import yaml
from wgmesh_mocks import REPO

WORKFLOW = REPO / ".github" / "workflows" / "preview.yml"


def load() -> dict[str, Any]:
    doc: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True)  # YAML 1.1 reads the key `on` as a boolean
    return doc


def pulumi_step(job: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    (found,) = [
        (i, s) for i, s in enumerate(job["steps"]) if str(s.get("uses", "")).startswith("pulumi/actions@")
    ]
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
        index, step = pulumi_step(job)
        before = " ".join(str(s.get("run", "")) for s in job["steps"][:index])
        assert "python -m venv .venv" in before
        assert ".venv/bin/pip install --quiet -r requirements.txt" in before
        assert (REPO / step["with"]["policyPacks"] / "PulumiPolicy.yaml").is_file()


def test_matrix_stacks_exist_and_are_cloud_stacks() -> None:
    for job in load()["jobs"].values():
        for stack in job["strategy"]["matrix"]["stack"]:
            text = (REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text()
            assert "cloud: aws" in text or "cloud: gcp" in text or "cloud: hcloud" in text
