"""Settings of the Pulumi program's own process, applied once by __main__.py (not by a component:
a component may be built in a process it does not own, such as a test's)."""

from __future__ import annotations

import gc

# Generation-0 threshold while a mesh evaluates: CPython's 700 runs a collection every 700
# allocations, and the Outputs, futures and tasks of a big mesh (10^5 and more, short-lived,
# no cycles worth chasing) made that about a third of a 200-node run. Memory grows a few MiB.
GC_THRESHOLDS = (50_000, 50, 100)


def relax_gc() -> None:
    """Collect less often in this process; never lowers a setting."""
    current = gc.get_threshold()
    gc.set_threshold(*(max(c, t) for c, t in zip(current, GC_THRESHOLDS, strict=True)))
