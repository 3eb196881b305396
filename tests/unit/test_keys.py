"""Key math: clamping as RFC 7748 says, public keys as `wg pubkey` computes, PSKs that never leak."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import random
import shutil
import subprocess
from collections.abc import Callable

import pytest

from mesh.keys import (
    KEY_BYTES,
    NodeKeys,
    clamp,
    decode_key,
    derive_psk,
    private_key,
    private_key_from_b64,
    public_key,
)

IN_CI = os.environ.get("CI", "").lower() == "true"
WG = shutil.which("wg")


def rfc7748_scalar(k: bytes) -> int:
    """decodeScalar25519 from RFC 7748 section 5, written from the RFC's integer description."""
    n = int.from_bytes(k, "little")
    n &= ~7  # clear the three low bits
    n &= ~(1 << 255)  # clear the top bit
    n |= 1 << 254  # set the second-highest bit
    return n


def rng_bytes(rng: random.Random, n: int = KEY_BYTES) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def hkdf_sha256(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF with no salt, from hmac alone: an independent check of mesh.keys' derivation."""
    prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


# ----------------------------------------------------------------------------- clamping


def test_clamp_matches_rfc7748_on_random_and_edge_inputs() -> None:
    rng = random.Random(7748)
    inputs = [bytes(32), b"\xff" * 32, bytes([7]) + bytes(30) + bytes([128])] + [
        rng_bytes(rng) for _ in range(500)
    ]
    for raw in inputs:
        clamped = clamp(raw)
        assert len(clamped) == 32
        assert int.from_bytes(clamped, "little") == rfc7748_scalar(raw)
        assert clamp(clamped) == clamped  # idempotent: an already clamped key is unchanged


def test_clamp_changes_only_the_clamped_bits() -> None:
    raw = bytes(range(32))
    clamped = clamp(raw)
    assert clamped[1:31] == raw[1:31]
    assert clamped[0] == raw[0] & 0b11111000
    assert clamped[31] == (raw[31] & 0x7F) | 0x40


@pytest.mark.parametrize("n", [0, 31, 33, 64])
def test_clamp_refuses_wrong_lengths(n: int) -> None:
    with pytest.raises(ValueError, match=f"got {n}"):
        clamp(bytes(n))


def test_private_key_is_base64_of_the_clamped_bytes() -> None:
    raw = bytes(range(100, 132))
    key = private_key(raw)
    assert base64.b64decode(key, validate=True) == clamp(raw)
    assert private_key_from_b64(base64.b64encode(raw).decode()) == key


# ----------------------------------------------------------------------------- public keys vs wg


def require_wg() -> str:
    if WG is None:
        if IN_CI:
            pytest.fail("the `wg` binary (wireguard-tools) is missing under CI=true")
        pytest.skip("`wg` (wireguard-tools) not installed: cannot compare with `wg pubkey`")
    return WG


def wg_pubkey(wg: str, private_b64: str) -> str:
    return subprocess.run(
        [wg, "pubkey"], input=private_b64 + "\n", capture_output=True, text=True, check=True
    ).stdout.strip()


def test_public_key_equals_wg_pubkey_for_random_keys() -> None:
    wg = require_wg()
    rng = random.Random(25519)
    mismatches = []
    for _ in range(300):
        raw = rng_bytes(rng)
        for priv in (private_key(raw), base64.b64encode(raw).decode()):  # clamped, and unclamped as given
            if public_key(priv) != wg_pubkey(wg, priv):
                mismatches.append(priv)
    assert mismatches == []


def test_wg_genkey_output_is_already_clamped() -> None:
    wg = require_wg()
    for _ in range(20):
        key = subprocess.run([wg, "genkey"], capture_output=True, text=True, check=True).stdout.strip()
        raw = decode_key(key)
        assert clamp(raw) == raw and private_key(raw) == key
        assert public_key(key) == wg_pubkey(wg, key)


def test_public_key_known_answer() -> None:
    """RFC 7748 section 6.1: Alice's private key and public key (independent of wg being installed)."""
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    alice_pub = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert public_key(base64.b64encode(alice).decode()) == base64.b64encode(alice_pub).decode()


# ----------------------------------------------------------------------------- no key in an error

SECRET_LOOKING = [
    base64.b64encode(bytes(range(31))).decode(),  # valid base64, 31 bytes
    base64.b64encode(bytes(range(33))).decode(),  # 33 bytes
    base64.b64encode(bytes(range(32))).decode()[:-2] + "!=",  # a private key with one bad character
    "c2VjcmV0IGtleSBtYXRlcmlhbCB0aGF0IG11c3Qgbm90IGxlYWs",  # missing padding
    "secret key material that must not leak",
    "",
]


@pytest.mark.parametrize("value", SECRET_LOOKING)
@pytest.mark.parametrize("fn", [decode_key, public_key, private_key_from_b64])
def test_key_errors_never_quote_the_input(fn: Callable[[str], object], value: str) -> None:
    with pytest.raises(ValueError) as info:
        fn(value)
    text = f"{info.value}|{info.value!r}"
    chunks = {value[i : i + 8] for i in range(max(len(value) - 7, 0))}
    assert not any(c in text for c in chunks), text
    # The original binascii error (which could carry input) is not chained into tracebacks.
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ or info.value.__context__ is None


def test_decode_key_accepts_exactly_32_bytes() -> None:
    raw = bytes(range(32))
    assert decode_key(base64.b64encode(raw).decode()) == raw


# ----------------------------------------------------------------------------- NodeKeys


def test_node_keys_repr_hides_private_key_and_mesh_secret() -> None:
    secret = bytes(range(200, 232))
    priv = private_key(bytes(range(32)))
    keys = NodeKeys(private_key=priv, public_keys={"b": "PUB-B", "a": "PUB-A"}, mesh_secret=secret)
    for text in (repr(keys), str(keys), f"{keys}", repr([keys]), repr({"k": keys})):
        assert priv not in text and priv[:16] not in text
        assert repr(secret) not in text and secret.hex() not in text
        assert base64.b64encode(secret).decode() not in text
        assert "['a', 'b']" in text  # names only, sorted, so logs stay useful


def test_node_keys_psk_uses_the_mesh_secret() -> None:
    secret = bytes(32)
    keys = NodeKeys(private_key=private_key(bytes(32)), public_keys={}, mesh_secret=secret)
    assert keys.psk("a", "b", "0.0.0") == derive_psk(secret, "a", "b", "0.0.0")
    off = NodeKeys(private_key=private_key(bytes(32)), public_keys={}, mesh_secret=None)
    with pytest.raises(ValueError, match="presharedKeys is off"):
        off.psk("a", "b", "0.0.0")


# ----------------------------------------------------------------------------- PSKs


def test_derive_psk_refuses_one_peer_twice() -> None:
    with pytest.raises(ValueError, match="two distinct peers"):
        derive_psk(bytes(32), "aws-fra", "aws-fra", "0.0.0")


def test_psk_is_32_bytes_of_base64_and_symmetric() -> None:
    secret = os.urandom(32)
    psk = derive_psk(secret, "aws-fra", "gcp-fra", "0.0.0")
    assert len(base64.b64decode(psk, validate=True)) == 32 and len(psk) == 44
    assert derive_psk(secret, "gcp-fra", "aws-fra", "0.0.0") == psk


def test_psk_depends_on_secret_pair_and_epoch() -> None:
    secret = bytes(range(32))
    base = derive_psk(secret, "a", "b", "0.0.0")
    others = {
        derive_psk(bytes(range(1, 33)), "a", "b", "0.0.0"),
        derive_psk(secret, "a", "c", "0.0.0"),
        derive_psk(secret, "ab", "c", "0.0.0"),
        derive_psk(secret, "a", "bc", "0.0.0"),
        derive_psk(secret, "a", "b", "0.0.1"),
        derive_psk(secret, "a", "b", "1.0.0"),
    }
    assert base not in others and len(others) == 6


def test_psk_derivation_is_pinned() -> None:
    """Changing the derivation would silently rotate every PSK of every deployed mesh on the next update."""
    secret = bytes(range(32))
    info = b"\0".join((b"wgmesh psk v1", b"aws-fra", b"gcp-fra", b"3.0.1"))
    expected = base64.b64encode(hkdf_sha256(secret, info)).decode()
    assert derive_psk(secret, "gcp-fra", "aws-fra", "3.0.1") == expected
