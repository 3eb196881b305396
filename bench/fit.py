"""User data size per node and the largest full mesh each cloud's limit takes (prints figures).

    python -m bench.fit [N ...]

Renders the synthetic three-cloud stack (full mesh, preshared keys, two clients) with fresh
keys and random public IPs (sequential ones would gzip better than real ones), in process and
without Pulumi, exactly as the program does: `node_user_data` then `encode_for_cloud`. Sizes
are the largest node of each cloud; the largest N moves by a node or two between runs.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cloudinit.render import (
    GZIPPED_CLOUDS,
    USER_DATA_LIMITS,
    encode_for_cloud,
    node_user_data,
    random_public_ip,
)
from mesh.errors import RenderError
from mesh.plan import build_plan
from mesh.spec import parse
from tools.render import KeyMaterial

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO / "tests" / "program"
CLOUDS = ("aws", "gcp", "hcloud")
SIZES = (10, 50, 100, 200, 400)
SEARCH_CAP = 1000  # beyond this the plan alone takes minutes: extrapolate instead


def synthetic_config(n: int) -> dict[str, Any]:
    """The bench's N-node stack (tests/program/synthetic_stacks.three_clouds), as parsed values."""
    if str(HARNESS) not in sys.path:
        sys.path.insert(0, str(HARNESS))
    raw: dict[str, str] = importlib.import_module("synthetic_stacks").three_clouds(n)
    return {key.removeprefix("wgmesh:"): json.loads(value) for key, value in raw.items()}


@dataclass(frozen=True)
class CloudSize:
    """The largest user data among one cloud's nodes: plain bytes, bytes sent, and its form.

    `sent` is what the best form would send even when that is over the limit (form "too big"),
    so sizes stay comparable across N for the search below.
    """

    raw: int  # the plain document (wg0.conf as text)
    sent: int
    form: str  # plain | gz+b64 wg0.conf | gzip | too big
    compact: int = 0  # the same node with wg0.conf as gz+b64 (extrapolation on GCP and Hetzner)

    @property
    def fits(self) -> bool:
        return self.form != "too big"


def sizes(n: int, clouds: Sequence[str] = CLOUDS) -> dict[str, CloudSize]:
    """Per cloud, the biggest node's user data in an N-node mesh (only `clouds` are rendered)."""
    spec = parse(synthetic_config(n))
    plan = build_plan(spec)
    keys = KeyMaterial.fresh(spec)
    public = keys.public_keys()
    endpoints = {node.name: random_public_ip() for node in spec.nodes}
    out: dict[str, CloudSize] = {}
    biggest: dict[str, str] = {}
    for node in spec.nodes:
        if node.cloud not in clouds:
            continue
        member = keys.for_member(node.name, public)
        text = node_user_data(plan, node.name, member, endpoints)
        size = _encoded(text, node.cloud, node.name)
        if "encoding: gz+b64" in text:  # `raw` is the plain document's size
            plain = node_user_data(plan, node.name, member, endpoints, compress_wg_conf=False)
            size = replace(size, raw=len(plain.encode()))
        best = out.get(node.cloud)
        if best is None or size.sent > best.sent:
            out[node.cloud], biggest[node.cloud] = size, node.name
    for cloud, name in biggest.items():
        member = keys.for_member(name, public)
        compact = node_user_data(plan, name, member, endpoints, compress_wg_conf=True)
        out[cloud] = replace(out[cloud], compact=len(compact.encode()))
    return out


def _encoded(text: str, cloud: str, node: str) -> CloudSize:
    raw = len(text.encode())
    compact = "gz+b64 wg0.conf" if "encoding: gz+b64" in text else "plain"
    try:
        encoded = encode_for_cloud(text, cloud, node)
    except RenderError:
        gzipped = len(gzip.compress(text.encode(), compresslevel=9, mtime=0))
        return CloudSize(raw, gzipped if cloud in GZIPPED_CLOUDS else raw, "too big")
    if encoded.gzip_b64 is not None:
        return CloudSize(raw, encoded.sent_bytes, "gzip")
    return CloudSize(raw, encoded.sent_bytes, compact)


@dataclass(frozen=True)
class Fit:
    nodes: int
    exact: bool  # False: extrapolated beyond SEARCH_CAP from the measured sizes


def largest_fitting(cloud: str, measured: Mapping[int, CloudSize]) -> Fit:
    """Largest N whose every `cloud` node fits: interpolate on the measured sizes, then step.

    Sizes grow linearly with N within one form, so the estimate is within a few nodes; each
    step renders that cloud's nodes at one N and moves until N fits and N + 1 does not.
    """
    limit = USER_DATA_LIMITS[cloud]
    assert limit is not None
    fitting = sorted(n for n, s in measured.items() if s.fits)
    over = sorted(n for n, s in measured.items() if not s.fits)
    lo = fitting[-1] if fitting else min(measured)
    hi = over[0] if over else max(measured)
    if hi == lo:
        lo = fitting[-2] if len(fitting) > 1 else lo
    slope = (measured[hi].sent - measured[lo].sent) / max(hi - lo, 1)
    guess = lo + int((limit - measured[lo].sent) / slope) if slope > 0 else SEARCH_CAP + 1
    if guess > SEARCH_CAP:
        if cloud not in GZIPPED_CLOUDS:  # past the plain limit wg0.conf goes gz+b64: its slope
            slope = (measured[hi].compact - measured[lo].compact) / max(hi - lo, 1)
            guess = hi + int((limit - measured[hi].compact) / slope)
        return Fit(guess, exact=False)
    n = max(guess, 3)
    if sizes(n, [cloud])[cloud].fits:
        while n < SEARCH_CAP and sizes(n + 1, [cloud])[cloud].fits:
            n += 1
        return Fit(n, exact=True)
    while n > 3 and not sizes(n - 1, [cloud])[cloud].fits:
        n -= 1
    return Fit(n - 1, exact=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fit", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("nodes", nargs="*", type=int, default=list(SIZES))
    args = parser.parse_args(argv)
    print("user data per node (largest of each cloud), full mesh with PSKs, bytes raw / as sent:")
    print(f"{'nodes':>5}  " + "  ".join(f"{c:>32}" for c in CLOUDS))
    measured: dict[int, dict[str, CloudSize]] = {}
    for n in args.nodes:
        row = measured[n] = sizes(n)
        cells = [f"{row[c].raw:>7} / {row[c].sent:>6} {row[c].form:>15}" for c in CLOUDS]
        print(f"{n:>5}  " + "  ".join(cells))
    print("largest full mesh with PSKs whose every node fits the cloud's limit:")
    for cloud in CLOUDS:
        fit = largest_fitting(cloud, {n: measured[n][cloud] for n in measured})
        how = "rendered" if fit.exact else f"extrapolated, past the {SEARCH_CAP}-node search"
        print(f"  {cloud:7} {fit.nodes:>5} nodes  (limit {USER_DATA_LIMITS[cloud]} bytes; {how})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
