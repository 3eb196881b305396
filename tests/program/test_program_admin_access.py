"""Admin access on a running mesh: the SSH key rotates in two phases, `sshUser` can be set on a
running mesh, and Hetzner's SSH keys never change with `sshPublicKeys`.

Keys are real OpenSSH ed25519 keys (test_program_live_updates.openssh_key), as
`pulumi config set --secret wgmesh:sshPrivateKey < ~/.ssh/id_ed25519` would store them.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from engine_sim import COMMAND, diff
from ssh_test_keys import ADMIN_KEY, ADMIN_PUB, NEW_KEY, NEW_PUB
from test_program_live_updates import (
    ADMIN_KEY_BODY,
    LIVE,
    SECRET_KEYS,
    dev_config,
    dev_nodes,
)
from wgmesh_mocks import ProgramRun, is_secret, reveal, run_program

SSH_KEY = "hcloud:index/sshKey:SshKey"
SERVER = "hcloud:index/server:Server"


def run(**kwargs: object) -> ProgramRun:
    return run_program("dev", dev_config(dev_nodes(), **kwargs), secret_keys=SECRET_KEYS)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- key rotation


def test_phase_one_adds_the_new_public_key_while_the_old_private_key_logs_in() -> None:
    result = run(key=ADMIN_KEY, public_keys=(ADMIN_PUB, NEW_PUB))
    assert result.error is None, result.error
    for r in result.of_type(COMMAND):
        assert reveal(r.inputs["connection"])["privateKey"] == ADMIN_KEY


def test_phase_two_switches_the_private_key_and_drops_the_old_public_key() -> None:
    result = run(key=NEW_KEY, public_keys=(NEW_PUB,))
    assert result.error is None, result.error
    for r in result.of_type(COMMAND):
        assert reveal(r.inputs["connection"])["privateKey"] == NEW_KEY


def test_a_private_key_whose_public_key_nodes_do_not_accept_is_refused_at_preview() -> None:
    """Switching the private key before its public key is in sshPublicKeys would fail every command."""
    result = run(key=NEW_KEY, public_keys=(ADMIN_PUB,))
    assert result.error is not None and result.resources == []
    message = str(result.error)
    assert message.startswith(
        "wgmesh:sshPrivateKey: its public key is not in wgmesh:mesh.sshPublicKeys, so nodes would refuse it: "
        "rotate in two steps: add the new public key"
    )
    assert "\n" not in message.strip()
    assert NEW_KEY.splitlines()[2] not in message and NEW_PUB.split()[1] not in message
    assert ADMIN_KEY_BODY not in message


def test_the_comment_of_a_public_key_does_not_matter() -> None:
    kind, body, _ = ADMIN_PUB.split()
    assert run(public_keys=(f"{kind} {body} someone@elsewhere",)).error is None


def test_an_encrypted_private_key_is_refused() -> None:
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"encrypted admin key").digest())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    result = run(key=pem, public_keys=(public.decode(),))
    assert result.error is not None and result.resources == []
    assert str(result.error).startswith("wgmesh:sshPrivateKey: is encrypted with a passphrase")


# ----------------------------------------------------------------------------- sshUser


def test_peers_connects_as_the_image_user_and_sync_and_health_as_ssh_user() -> None:
    """Setting `sshUser` on a running mesh: `-peers` (first) logs in as the user the image always
    has and its apply creates `sshUser`; `-sync` and `-health` then log in as `sshUser`."""
    result = run(sshUser="ops")
    assert result.error is None, result.error
    image_users = {"aws-fra": "ubuntu", "gcp-fra": "ubuntu", "hetzner-nbg": "root"}
    for node in LIVE:
        peers = reveal(result.one(COMMAND, f"{node}-peers").inputs["connection"])
        assert peers["user"] == image_users[node]
        assert ("sudo -n" in result.one(COMMAND, f"{node}-peers").inputs["create"]) == (node != "hetzner-nbg")
        for step in ("sync", "health"):
            command = result.one(COMMAND, f"{node}-{step}")
            assert reveal(command.inputs["connection"])["user"] == "ops"
            assert "sudo -n" in command.inputs["create"]
        # -sync waits for its own -peers (which made the user) to finish.
        sync_deps = {u.rsplit("::", 1)[-1] for u in result.one(COMMAND, f"{node}-sync").dependencies}
        assert f"{node}-peers" in sync_deps


# ----------------------------------------------------------------------------- Hetzner SSH keys


def hcloud_run(public_keys: tuple[str, ...]) -> ProgramRun:
    result = run_program("dev", dev_config(dev_nodes(), live=False, key=None, public_keys=public_keys))
    assert result.error is None, result.error
    return result


@pytest.mark.parametrize(
    "after", [(NEW_PUB, ADMIN_PUB), (NEW_PUB,), (ADMIN_PUB,), (ADMIN_PUB, NEW_PUB, "ssh-ed25519 " + "A" * 68)]
)
def test_hetzner_ssh_keys_never_change_with_ssh_public_keys(after: tuple[str, ...]) -> None:
    """Reorder, remove, add: no SSH key is created, deleted or changed, the server keeps its keys."""
    before = hcloud_run((ADMIN_PUB, NEW_PUB))
    d = diff(before, hcloud_run(after))
    assert [r.name for r in d.created + d.deleted if r.type == SSH_KEY] == []
    assert [c.before.name for c in d.changed if c.before.type == SSH_KEY] == []
    changed_server = [c for c in d.changed if c.before.type == SERVER]
    assert all("sshKeys" not in c.paths for c in changed_server)


def test_the_stack_ssh_key_is_a_random_ed25519_key_no_admin_holds() -> None:
    result = hcloud_run((ADMIN_PUB,))
    (key,) = result.of_type(SSH_KEY)
    kind, body, comment = key.inputs["publicKey"].split()
    assert (kind, comment) == ("ssh-ed25519", "wgmesh")
    blob = base64.b64decode(body)
    Ed25519PublicKey.from_public_bytes(blob[-32:])  # a valid point
    assert body not in ADMIN_PUB and not is_secret(key.inputs["publicKey"])
    assert result.one(SERVER, "hetzner-nbg").inputs["sshKeys"] == [key.id]
    assert "sshKeys" in result.one(SERVER, "hetzner-nbg").ignore_changes
