"""Preview's quota budget: one line per cloud, region and quota, and a refusal when over.

Runs in WireGuardMesh before any resource (providers excepted: the AWS reads need one), next
to the user-data fit check, so `pulumi preview` prints the budget and refuses a stack whose
first `pulumi up` would stop half-way on a quota.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pulumi
import pulumi_aws as aws

from components.config import StackConfigError
from components.netplan import SitePlan
from components.quota_aws import read_aws_quotas
from components.quota_catalog import AWS_QUOTAS
from components.quota_plan import Budget, QuotaKey, budget, quota_needs
from mesh.plan_types import MeshPlan


class QuotaError(StackConfigError):
    """The stack needs more of a quota than is in force: one line per quota."""


def check_quotas(
    plan: MeshPlan,
    declared: dict[QuotaKey, int],
    aws_provider: Callable[[str], aws.Provider],
    sites: Mapping[str, SitePlan] | None = None,
) -> Budget:
    """Log the budget (pulumi.log.info), notes on unread quotas (warn); raise QuotaError when over.

    `sites`: the site networks as planned against the clouds (routers kept), for the route counts.
    """
    needs = quota_needs(plan, sites=sites)
    read: dict[QuotaKey, int] = {}
    for region in dict.fromkeys(n.region for n in plan.spec.nodes if n.cloud == "aws"):
        if all(("aws", region, q.key) in declared for q in AWS_QUOTAS):
            continue  # nothing left to read: no provider needed
        values, notes = read_aws_quotas(region, aws_provider(region), declared)
        read.update(values)
        for note in notes:
            pulumi.log.warn(note)
    result = budget(needs, declared, read)
    for line in result.lines:
        pulumi.log.info(line)
    if result.problems:
        raise QuotaError(result.problems)
    return result
