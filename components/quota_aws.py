"""The AWS quotas in force for this account, read at preview from Service Quotas.

One blocking `get_service_quota` per region and quota the stack file does not declare. The
provider's Service Quotas data source answers the applied value, or the AWS default when the
quota was never changed. When the call is refused (most often: the credentials lack
`servicequotas:GetServiceQuota`), the program plans with the documented default and says so
in one line, rather than failing: the quota check is a safety net that must not stop a
deployment a narrower IAM policy can still make, and the user can declare the number instead.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.quota_catalog import AWS_QUOTAS
from components.quota_plan import QuotaKey

GET_SERVICE_QUOTA = "servicequotas:GetServiceQuota"


def read_aws_quotas(
    region: str, provider: aws.Provider, declared: dict[QuotaKey, int]
) -> tuple[dict[QuotaKey, int], list[str]]:
    """The region's quotas as the account has them, and a note per quota that could not be read."""
    read: dict[QuotaKey, int] = {}
    notes: list[str] = []
    for quota in AWS_QUOTAS:
        key: QuotaKey = ("aws", region, quota.key)
        if key in declared or quota.aws_code is None:
            continue
        service, code = quota.aws_code
        try:
            result = aws.servicequotas.get_service_quota(
                service_code=service, quota_code=code, opts=pulumi.InvokeOptions(provider=provider)
            )
        except Exception as e:  # the provider's refusal arrives as a plain Exception
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            notes.append(
                f"quota aws {region} {quota.name}: not read from AWS Service Quotas ({reason}); "
                f"planning with the documented default {quota.default}. Grant {GET_SERVICE_QUOTA} "
                f"or declare wgmesh:quotas.aws.{region}.{quota.key}"
            )
            continue
        read[key] = int(result.value)
    return read, notes
