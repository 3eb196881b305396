"""The command line a live update runs on a node over SSH: Pulumi's `<node>-sync`/`-peers`,
`make push` and the VM lab all run this one, so it lives on the pure side (no Pulumi SDK)."""

from __future__ import annotations

from cloudinit.sync import apply_command

# On a node still in its first boot, let cloud-init finish (it installs wg and starts wg0)
# before the apply runs; a node that has booted returns at once. Never fails the step.
WAIT_FOR_FIRST_BOOT = (
    "if command -v cloud-init >/dev/null 2>&1; then cloud-init status --wait </dev/null >/dev/null 2>&1; fi"
)


def needs_sudo(user: str) -> bool:
    """Non-root logins (ubuntu, admin) run the scripts through `sudo -n`."""
    return user != "root"


def remote_apply_command(sudo: bool, *, peers_only: bool = False) -> str:
    """What `<node>-sync` (`<node>-peers` with `peers_only`) runs over SSH; the VM lab runs it too."""
    return f"{WAIT_FOR_FIRST_BOOT}; {apply_command(sudo=sudo, peers_only=peers_only)}"
