"""Hypothesis profiles: bounded and deadline-free under CI (shared runners stall), roomier locally.

`HYPOTHESIS_PROFILE=thorough` runs many more examples when hunting a bug by hand.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", deadline=None, max_examples=60, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=60)
settings.register_profile("thorough", deadline=None, max_examples=2000)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI", "").lower() == "true" else "dev")
)
