"""WireGuard key math: private keys from random bytes, public keys, and per-pair PSKs.

Private keys come from 32 random bytes kept in Pulumi state (so they are stable across
updates); PSKs are derived, not stored, so adding a node adds no resource per pair.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
PSK_INFO_PREFIX = b"wgmesh psk v1"


def clamp(raw: bytes) -> bytes:
    """Curve25519 clamping, as `wg genkey` does, so our keys are byte-identical to wg's."""
    if len(raw) != KEY_BYTES:
        raise ValueError(f"a WireGuard key is {KEY_BYTES} bytes, got {len(raw)}")
    b = bytearray(raw)
    b[0] &= 248
    b[31] = (b[31] & 127) | 64
    return bytes(b)


def private_key(raw: bytes) -> str:
    """Base64 private key (wg format) from 32 random bytes."""
    return base64.b64encode(clamp(raw)).decode()


def private_key_from_b64(random_b64: str) -> str:
    """Private key from `pulumi_random.RandomBytes.base64`."""
    return private_key(decode_key(random_b64))


def public_key(private_b64: str) -> str:
    """Base64 public key for a base64 private key; equals `wg pubkey`."""
    priv = X25519PrivateKey.from_private_bytes(decode_key(private_b64))
    return base64.b64encode(priv.public_key().public_bytes_raw()).decode()


def decode_key(b64: str) -> bytes:
    """Decode a base64 key, refusing anything that is not exactly 32 bytes.

    The error never quotes the value: it may be a private key.
    """
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a base64 WireGuard key") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"a WireGuard key is {KEY_BYTES} bytes, got {len(raw)}")
    return raw


def derive_psk(mesh_secret: bytes, a: str, b: str, epoch: str) -> str:
    """PSK for the pair {a, b}: HKDF-SHA256 over the sorted names and an epoch label.

    Symmetric (both ends derive the same key) and independent of every other member, so
    adding or removing a peer never changes an existing pair's PSK.
    """
    if a == b:
        raise ValueError("a PSK needs two distinct peers")
    lo, hi = sorted((a, b))
    info = b"\0".join((PSK_INFO_PREFIX, lo.encode(), hi.encode(), epoch.encode()))
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info)
    return base64.b64encode(hkdf.derive(mesh_secret)).decode()


@dataclass(frozen=True)
class NodeKeys:
    """Resolved key material for rendering one config: never logged, never repr'd."""

    private_key: str
    public_keys: dict[str, str]  # every member's public key, by name
    mesh_secret: bytes | None  # PSK root; None when presharedKeys is off

    def __repr__(self) -> str:
        return f"NodeKeys(<secret>, public_keys={sorted(self.public_keys)})"

    def psk(self, me: str, peer: str, epoch: str) -> str:
        if self.mesh_secret is None:
            raise ValueError("presharedKeys is off: no mesh secret to derive a PSK from")
        return derive_psk(self.mesh_secret, me, peer, epoch)
