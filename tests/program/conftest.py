"""Run the real `__main__.py` under Pulumi mocks once per stack file and share the results.

Every stack file under stacks/ is discovered; all of them run in this one process (each in
its own context), so the cloud SDKs are imported once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from wgmesh_mocks import REPO, ProgramRun, run_program, stack_config

from mesh.plan import build_plan
from mesh.plan_types import MeshPlan
from mesh.spec import parse

STACK_FILES = sorted((REPO / "stacks").glob("Pulumi.*.yaml"))
STACKS = [p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACK_FILES]


def stack_file(stack: str) -> Path:
    return REPO / "stacks" / f"Pulumi.{stack}.yaml"


def plan_of(config: dict[str, str]) -> MeshPlan:
    """The plan the program should have built, from the same config values."""
    import json

    raw = {
        s: json.loads(config[f"wgmesh:{s}"]) if f"wgmesh:{s}" in config else None
        for s in ("mesh", "nodes", "clients")
    }
    return build_plan(parse(raw))


@pytest.fixture(scope="session")
def program_runs() -> dict[str, tuple[ProgramRun, MeshPlan]]:
    """Each example stack run once under mocks (set_mocks happens inside run_program)."""
    out = {}
    for stack in STACKS:
        config = stack_config(stack_file(stack))
        out[stack] = (run_program(stack, config), plan_of(config))
    return out


@pytest.fixture(params=STACKS)
def stack_run(
    request: pytest.FixtureRequest, program_runs: dict[str, tuple[ProgramRun, MeshPlan]]
) -> tuple[ProgramRun, MeshPlan]:
    run, plan = program_runs[request.param]
    assert run.error is None, f"stack {request.param} failed under mocks: {run.error!r}"
    return run, plan
