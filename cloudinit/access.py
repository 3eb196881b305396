"""Who may log in to a node, as files wgmesh owns: an sshd drop-in, per-user key files, a sudoers file.

Keys live in root-owned files under `KEYS_DIR` (one per login user), not in cloud-init's
`ssh_authorized_keys` (which appends to ~/.ssh/authorized_keys on first boot only, where a
rotated-out key would stay for good). The sshd drop-in adds that directory to the places
sshd reads keys from; ~/.ssh/authorized_keys stays first in the list, so keys put there by
hand or by a cloud (Hetzner `ssh_keys`, an EC2 key pair) keep working and are never touched.
Measured with Debian 12's sshd 9.2p1 in a namespace: key A in the file logs in and B does not;
the file rewritten to B, A is refused at once (no reload); a 0666 file is refused (StrictModes).
The same files are written at first boot (write_files) and by every apply, so rotating
`sshPublicKeys` rewrites them: a removed key stops working on the next apply.

Sources:
- sshd_config(5) (https://man.openbsd.org/sshd_config): "Unless noted otherwise, for each
  keyword, the first obtained value will be used"; AuthorizedKeysFile takes several files
  separated by whitespace, `%u` is the user name, a relative path is taken from the home
  directory; StrictModes checks file and directory owners/modes (root-owned 0644 under
  root-owned 0755 directories pass).
- Debian 12 and Ubuntu 24.04 ship /etc/ssh/sshd_config starting with
  `Include /etc/ssh/sshd_config.d/*.conf` (lexical order): a low number wins the keyword.
- cloud-init: write_files and users_groups run in the init stage (cloud-init.service is
  ordered Before=sshd.service), so the drop-in is in place when sshd first starts.
"""

from __future__ import annotations

from collections.abc import Sequence

from mesh.plan_types import MeshPlan
from mesh.spec import DEFAULT_SSH_USER, login_user

SSHD_DROPIN_PATH = "/etc/ssh/sshd_config.d/10-wgmesh.conf"  # sorts before 50-cloud-init.conf
KEYS_DIR = "/etc/wgmesh/ssh"  # root-owned: one file of public keys per login user
SUDOERS_PATH = "/etc/sudoers.d/90-wgmesh"
SUDO_RULE = "ALL=(ALL) NOPASSWD:ALL"


def sshd_dropin() -> str:
    """sshd's default files (sshd_config(5): `.ssh/authorized_keys .ssh/authorized_keys2`), then wgmesh's."""
    return (
        "# wgmesh: admin keys from sshPublicKeys, rewritten by every apply (a removed key stops working).\n"
        f"AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 {KEYS_DIR}/%u\n"
    )


def login_users(plan: MeshPlan, name: str) -> tuple[str, ...]:
    """Users that get the admin keys: the live-update login user and the image's default user."""
    node = plan.spec.node(name)
    users = [login_user(plan.spec.mesh, node)]
    default = DEFAULT_SSH_USER.get((node.cloud, node.image))
    if default is not None:
        users.append(default)
    return tuple(dict.fromkeys(users))


def created_user(plan: MeshPlan, name: str) -> str | None:
    """`sshUser` when wgmesh must create it on node `name`: set, not root, not the image's own user."""
    user = plan.spec.mesh.ssh_user
    node = plan.spec.node(name)
    if not user or user == "root" or user == DEFAULT_SSH_USER.get((node.cloud, node.image)):
        return None
    return user


def authorized_keys(keys: Sequence[str]) -> str:
    """One key a line (possibly empty: then only keys outside wgmesh's files log in)."""
    return "".join(f"{key.strip()}\n" for key in keys)


def sudoers(plan: MeshPlan, name: str) -> str:
    """Passwordless sudo for the created user (the live-update commands run `sudo -n`)."""
    user = created_user(plan, name)
    text = "# wgmesh: the sshUser live updates log in as runs the apply with sudo -n.\n"
    return text + (f"{user} {SUDO_RULE}\n" if user else "")
