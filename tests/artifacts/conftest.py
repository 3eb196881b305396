"""Session fixture: every stack file rendered once through `python -m tools.render`."""

from __future__ import annotations

import pytest

from .artifact_helpers import STACK_FILES, Rendered, render_stack_with_cli


@pytest.fixture(scope="session")
def rendered_stacks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    base = tmp_path_factory.mktemp("rendered")
    out: dict[str, Rendered] = {}
    for stack_file in STACK_FILES:
        r = render_stack_with_cli(stack_file, base / stack_file.stem)
        out[r.stack] = r
    return out


@pytest.fixture(params=[p.stem.removeprefix("Pulumi.") for p in STACK_FILES])
def rendered(request: pytest.FixtureRequest, rendered_stacks: dict[str, Rendered]) -> Rendered:
    """One rendered stack per test instance (ids are the stack names)."""
    stack: str = request.param
    return rendered_stacks[stack]
