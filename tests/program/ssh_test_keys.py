"""Real OpenSSH ed25519 key pairs for program tests: the program derives the public key of
`wgmesh:sshPrivateKey` and checks it against `sshPublicKeys`, so a fake key no longer parses."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def openssh_key(seed: str, passphrase: bytes | None = None) -> tuple[str, str]:
    """A real OpenSSH ed25519 key pair (private PEM, `ssh-ed25519 AAAA...`), fixed by `seed`."""
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())
    encryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private.decode(), f"{public.decode()} admin@test"


ADMIN_KEY, ADMIN_PUB = openssh_key("wgmesh test admin key")
NEW_KEY, NEW_PUB = openssh_key("wgmesh test admin key, rotated")
