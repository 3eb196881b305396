"""The lab sits on the pure side: importing any lab module loads no Pulumi SDK and no component."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Each lab module imported in a fresh interpreter's one process; the modules loaded are listed.
PROBE = """
import importlib, json, pkgutil, sys
import lab
names = sorted(m.name for m in pkgutil.walk_packages(lab.__path__, "lab."))
for name in names:
    importlib.import_module(name)
top = {m.split(".")[0] for m in sys.modules}
forbidden = sorted(t for t in top if t.startswith("pulumi") or t == "components")
print(json.dumps({"lab": names, "forbidden": forbidden}))
"""


def test_no_lab_module_loads_pulumi_or_components() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    found = json.loads(result.stdout)
    assert len(found["lab"]) > 10  # the walk saw the lab's modules
    assert found["forbidden"] == []
