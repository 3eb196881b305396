"""A node's first boot inside the netns lab: cloud-init's write_files, then its commands.

write_files is cloud-init's own (lab.netns.sandbox); bootcmd and runcmd run as rendered inside the
node's namespaces, each step as the line cloud-init's runcmd script would hold, going on
after a failing step like that script does and reporting every failure at the end.
Or, for a `cloud: external` host booted the installer way, no cloud-init at all: its install.sh
as `make render` wrote it, run with `sh` as root inside the node (`run_installer`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from cloudinit.installer import INSTALLER_NAME, SUMMARY_PREFIX
from lab.core.errors import LabError
from lab.core.manifest import LabNode
from lab.core.proc import NODE_ENV, redact_keys, tail
from lab.netns.layout import Layout
from lab.netns.running import NetnsLab
from lab.netns.sandbox import apply_write_files
from lab.netns.userdata import NodeUserData
from tools.secretfiles import append_private

STEP_TIMEOUT = 120.0


def write_files(layout: Layout, node: LabNode, ud: NodeUserData) -> None:
    d = layout.node_dir(node.name)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    apply_write_files(
        node.user_data, ud.write_files, d / "written", d / "sandbox", d / "cloud-init.log", node.name
    )


def run_commands(lab: NetnsLab, node: LabNode, ud: NodeUserData) -> None:
    """Each step as cloud-init's runcmd script would run it (on failure, go on, then report)."""
    log_path = lab.layout.node_dir(node.name) / "boot.log"
    failures: list[str] = []
    with append_private(log_path) as log:
        for kind, steps in (("bootcmd", ud.bootcmd), ("runcmd", ud.runcmd)):
            for i, step in enumerate(steps):
                log.write(f"== {kind}[{i}]: {step}\n")
                log.flush()
                mark = log.tell()
                try:
                    proc = subprocess.run(
                        lab.node(node.name).argv("sh", "-c", step),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=dict(NODE_ENV),
                        cwd="/",
                        timeout=STEP_TIMEOUT,
                        check=False,
                    )
                    status = proc.returncode
                except subprocess.TimeoutExpired:
                    status = -1
                if status != 0:
                    output = log_path.read_bytes()[mark:].decode(errors="replace")
                    shown = redact_keys(step[:80])
                    failures.append(f"{kind}[{i}] `{shown}` exited {status}: {tail(output)}")
    if failures:
        raise LabError(f"{node.name}: " + "; ".join(failures) + f" (log: {log_path})")


def installer_path(node: LabNode) -> Path:
    """The node's installer in the render (`make render` writes it for `cloud: external` nodes)."""
    return node.user_data.parent / INSTALLER_NAME


def run_installer(lab: NetnsLab, node: LabNode) -> str:
    """`sh install.sh` as root inside the node, the way its docs say; its one summary line.

    Its temporary files go to the node's own /run (TMPDIR), never to the lab host's /tmp.
    The tools' output (keys redacted by the installer) goes to <node dir>/install.log.
    """
    script = installer_path(node)
    if not script.is_file():
        raise LabError(f"{node.name}: {script} not found (render it with this version's `make render`)")
    log_path = lab.layout.node_dir(node.name) / "install.log"
    with append_private(log_path) as log:
        try:
            proc = subprocess.run(
                lab.node(node.name).argv("sh", str(script)),
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env={**NODE_ENV, "TMPDIR": "/run"},
                cwd="/",
                timeout=STEP_TIMEOUT,
                text=True,
                check=False,
            )
        except subprocess.TimeoutExpired:
            limit = f"{STEP_TIMEOUT:g} s"
            raise LabError(f"{node.name}: install.sh timed out after {limit} (log: {log_path})") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or len(lines) != 1 or not lines[0].startswith(SUMMARY_PREFIX):
        shown = tail(log_path.read_text(encoding="utf-8", errors="replace"))
        raise LabError(
            f"{node.name}: install.sh exited {proc.returncode}, printed {len(lines)} line(s): "
            f"{redact_keys(' | '.join(lines)[:200])}; {shown} (log: {log_path})"
        )
    return redact_keys(lines[0])
