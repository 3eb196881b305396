"""Big meshes under mocks: a full mesh that cannot boot from user data is refused up front.

The exact size check needs keys and public IPs, which exist only once `pulumi up` created
them; the preflight (cloudinit.render.check_user_data_fits) refuses before any resource, so
`pulumi preview` shows the same one line. A mesh that fits still deploys.
"""

from __future__ import annotations

import gc

import pulumi
import synthetic_stacks as synthetic
from program_expectations import only_providers
from wgmesh_mocks import REPO, run_program, stack_config

from components.process_settings import GC_THRESHOLDS, relax_gc


def test_a_full_mesh_too_big_for_aws_is_refused_before_any_resource() -> None:
    run = run_program("big", synthetic.three_clouds(200))
    assert isinstance(run.error, pulumi.RunError), repr(run.error)
    message = str(run.error)
    assert "\n" not in message
    assert "-aws: user data is " in message and "over the 16384-byte limit of aws" in message
    assert "topology: hub" in message
    assert "PrivateKey" not in message and "PresharedKey" not in message
    assert only_providers(run) == []  # the catalog asked the clouds through the providers, no more


def test_the_same_size_as_hub_and_spoke_deploys() -> None:
    run = run_program("big", synthetic.three_clouds(200, gcp_hubs=True, quotas=synthetic.raised_quotas(200)))
    assert run.error is None, run.error
    assert len(run.of_type("aws:ec2/instance:Instance")) == 67


def test_relax_gc_only_raises_thresholds() -> None:
    saved = gc.get_threshold()
    try:
        gc.set_threshold(100_000, 10, 10)
        relax_gc()
        assert gc.get_threshold() == (100_000, GC_THRESHOLDS[1], GC_THRESHOLDS[2])
        gc.set_threshold(700, 10, 10)
        relax_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.set_threshold(*saved)


def test_the_program_relaxes_gc_for_its_own_process() -> None:
    """__main__.py sets it once per process (no component does: a test process is not theirs)."""
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        run = run_program("dev", stack_config(REPO / "stacks" / "Pulumi.dev.yaml"))
        assert run.error is None, run.error
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.set_threshold(*saved)
