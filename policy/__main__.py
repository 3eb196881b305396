"""CrossGuard entry point: `pulumi preview --policy-pack policy` runs this file."""

import sys
from pathlib import Path

# The pack runs with its own folder as the working directory: import the repo's `policy` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policy.pack import PACK_NAME, PolicyVersionError, keep_secret_markers, policies

try:
    keep_secret_markers()
except PolicyVersionError as e:
    sys.exit(f"wgmesh policy pack: {e}")  # one line, no traceback
PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=list(policies()))
