"""ext (issue 15): the one-command installer of a `cloud: external` host without cloud-init.

cloudinit/scripts/wgmesh-install.sh with the node's name, the apply script
(cloudinit/sync.py) and the node's bundle (cloudinit/bundle.py) inside: the same files and
modes its `#cloud-config` writes, installed by the same apply every live update runs, so the
two forms can never disagree. The text holds the node's private key and PSKs: it is a secret.
"""

from __future__ import annotations

import shlex

from cloudinit.bundle import node_bundle
from cloudinit.script_files import script_text
from cloudinit.sync import apply_script
from mesh.plan_types import MeshPlan

INSTALL_FILE = "wgmesh-install.sh"  # in cloudinit/scripts/
INSTALLER_NAME = "install.sh"  # <render>/<node>/install.sh, and what `make host` writes
SUMMARY_PREFIX = "wgmesh-install:"


def node_installer(plan: MeshPlan, name: str, wg_conf: str) -> str:
    """The installer for node `name` around its rendered wg0.conf (secret: it holds the bundle)."""
    bundle = node_bundle(plan, name, wg_conf)
    return (
        script_text(INSTALL_FILE)
        .replace("@NODE@", shlex.quote(name))
        .replace("@APPLY@", apply_script().rstrip("\n"))
        .replace("@BUNDLE@", bundle.rstrip("\n"))
    )


def reapply_command(stack: str, name: str) -> str:
    """Day-2 without SSH access: what the operator runs to bring the host to the current config."""
    return (
        f"run `make host NAME={name} STACK={stack}`, copy build/hosts/{stack}/{name}-install.sh "
        f"to the host and run `sudo sh {name}-install.sh` there"
    )
