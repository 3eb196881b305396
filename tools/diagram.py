"""`make diagram`: the mesh topology of a stack as Mermaid, DOT, SVG and PNG (Graphviz `dot`).

Offline, from the stack file (the same plan `pulumi up` builds; no keys, no cloud). The
Mermaid text is also the stack output `diagram`.

    python -m tools.diagram --stack dev --out /tmp/d
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from mesh.diagram import dot, mermaid
from mesh.errors import ConfigError
from mesh.plan import build_plan
from mesh.stackfile import load_spec

FORMATS = ("svg", "png")


def write_diagrams(dot_text: str, mermaid_text: str, out: Path, dot_bin: str) -> list[Path]:
    """mesh.mmd, mesh.dot and one file per format rendered by `dot`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "mesh.mmd").write_text(mermaid_text)
    source = out / "mesh.dot"
    source.write_text(dot_text)
    written = [out / "mesh.mmd", source]
    for fmt in FORMATS:
        target = out / f"mesh.{fmt}"
        subprocess.run([dot_bin, f"-T{fmt}", "-o", str(target), str(source)], check=True)
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.diagram", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="stack name (stacks/Pulumi.<name>.yaml) or a path")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    args = parser.parse_args(argv)
    dot_bin = shutil.which("dot")
    if dot_bin is None:
        print("diagram: Graphviz `dot` not found (apt-get install graphviz)", file=sys.stderr)
        return 1
    try:
        plan = build_plan(load_spec(args.stack))
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    for path in write_diagrams(dot(plan), mermaid(plan), args.out, dot_bin):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
