"""`wgmesh:quotas`: quotas the user raised, declared in the stack file so preview plans with them.

    wgmesh:quotas:
      aws: {eu-central-1: {elasticIps: 20, standardVcpus: 64}}
      gcp: {firewalls: 500, regions: {europe-west3: {staticAddresses: 20}}}
      hcloud: {servers: 60, primaryIps: 60}

Pure: every problem is one line naming its key, raised together as a ConfigError.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from components.quota_catalog import QUOTAS
from components.quota_plan import QuotaKey
from mesh.errors import ConfigError, Problem
from mesh.spec import AWS_REGION_RE, GCP_REGION_RE

ROOT = "wgmesh:quotas"
MAX_QUOTA = 10**7  # far above any quota a cloud grants; catches a typo'd extra digit run


def _keys(cloud: str, regional: bool) -> list[str]:
    return [q.key for q in QUOTAS.values() if q.cloud == cloud and q.regional == regional]


def parse_quotas(raw: object) -> dict[QuotaKey, int]:
    """The declared quotas, keyed (cloud, region or None, quota key); {} when the section is unset."""
    if raw is None:
        return {}
    problems: list[Problem] = []
    out: dict[QuotaKey, int] = {}
    top = _mapping(raw, ROOT, problems)
    for cloud, value in top.items():
        key = f"{ROOT}.{cloud}"
        if cloud == "aws":
            for region, numbers in _mapping(value, key, problems).items():
                rkey = f"{key}.{region}"
                if not AWS_REGION_RE.fullmatch(region):
                    problems.append(Problem(rkey, "is not an AWS region name (like eu-central-1)"))
                    continue
                _numbers(numbers, rkey, ("aws", region), _keys("aws", True), problems, out)
        elif cloud == "gcp":
            section = dict(_mapping(value, key, problems))
            regions = section.pop("regions", None)
            for name in [n for n in section if n in _keys("gcp", True)]:
                del section[name]
                where = f"{key}.regions.<region>.{name}"
                problems.append(Problem(f"{key}.{name}", f"is a per-region quota: declare it as {where}"))
            _numbers(section, key, ("gcp", None), [*_keys("gcp", False), "regions"], problems, out)
            for region, numbers in _mapping(regions, f"{key}.regions", problems).items():
                rkey = f"{key}.regions.{region}"
                if not GCP_REGION_RE.fullmatch(region):
                    problems.append(Problem(rkey, "is not a GCP region name (like europe-west3)"))
                    continue
                _numbers(numbers, rkey, ("gcp", region), _keys("gcp", True), problems, out)
        elif cloud == "hcloud":
            _numbers(value, key, ("hcloud", None), _keys("hcloud", False), problems, out)
        else:
            problems.append(Problem(key, f"unknown cloud{_hint(cloud, ['aws', 'gcp', 'hcloud'])}"))
    if problems:
        raise ConfigError(problems)
    return out


def _mapping(value: object, key: str, problems: list[Problem]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(Problem(key, f"must be a mapping, got {type(value).__name__}"))
        return {}
    out: dict[str, Any] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            problems.append(Problem(f"{key}[{k!r}]", "keys must be strings"))
        else:
            out[k] = v
    return out


def _numbers(
    value: object,
    key: str,
    scope: tuple[str, str | None],
    allowed: list[str],
    problems: list[Problem],
    out: dict[QuotaKey, int],
) -> None:
    for name, number in _mapping(value, key, problems).items():
        nkey = f"{key}.{name}"
        if name not in allowed:
            problems.append(Problem(nkey, f"unknown quota{_hint(name, allowed)}"))
        elif isinstance(number, bool) or not isinstance(number, int):
            problems.append(Problem(nkey, f"must be a whole number, got {number!r}"))
        elif not 0 <= number <= MAX_QUOTA:
            problems.append(Problem(nkey, f"{number} is out of range 0..{MAX_QUOTA}"))
        else:
            out[(scope[0], scope[1], name)] = number


def _hint(name: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(allowed)})"
