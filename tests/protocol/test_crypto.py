"""The crypto module: key handling, signatures, AEAD and randomness, with our errors only."""

from __future__ import annotations

import pytest

from tether.errors import AuthenticationFailed, MalformedMessage
from tether.protocol import crypto
from tether.protocol.crypto import (
    Aead,
    DeterministicEntropy,
    PrivateKey,
    PublicKey,
    SystemEntropy,
    scalar_from_bytes,
)


def test_sign_verify_and_refuse() -> None:
    key = SystemEntropy().new_private_key()
    signature = key.sign(b"message")
    assert len(signature) == 64
    assert key.sign(b"message") == signature  # RFC 6979: deterministic
    key.public_key.verify(signature, b"message")
    with pytest.raises(AuthenticationFailed) as info:
        key.public_key.verify(signature, b"other")
    assert info.value.code == "bad_signature"
    with pytest.raises(AuthenticationFailed, match="length"):
        key.public_key.verify(signature[:-1], b"message")


def test_ecdh_agrees() -> None:
    entropy = SystemEntropy()
    a, b = entropy.new_private_key(), entropy.new_private_key()
    assert a.exchange(b.public_key) == b.exchange(a.public_key)


@pytest.mark.parametrize(
    "encoded",
    [
        b"\x04" + b"\x00" * 64,
        b"\x02" + b"\x01" * 32,
        b"\x04" + b"\x01" * 63,
        b"\x04" + b"\xff" * 64,
    ],
)
def test_invalid_public_keys_are_malformed(encoded: bytes) -> None:
    with pytest.raises(MalformedMessage):
        PublicKey(encoded)


def test_public_key_identity() -> None:
    key = DeterministicEntropy(b"k").new_private_key()
    again = PublicKey(key.public_bytes)
    assert again == key.public_key and hash(again) == hash(key.public_key)
    assert again != "not a key"
    assert again.key_id == crypto.key_id(key.public_bytes) and len(again.key_id) == 16
    assert key.public_key.key_id.hex() in repr(key) and key.public_key.key_id.hex() in repr(again)


def test_scalar_round_trip_and_range() -> None:
    key = DeterministicEntropy(b"s").new_private_key()
    assert PrivateKey.from_scalar(key.scalar()).public_bytes == key.public_bytes
    with pytest.raises(ValueError, match="scalar"):
        PrivateKey.from_scalar(b"\x00" * 32)
    with pytest.raises(ValueError, match="scalar"):
        PrivateKey.from_scalar(b"\xff" * 32)
    assert int.from_bytes(scalar_from_bytes(b"\x00" * 40), "big") == 1


def test_deterministic_entropy_is_reproducible_and_records_draws() -> None:
    a, b = DeterministicEntropy(b"seed"), DeterministicEntropy(b"seed")
    assert a.random_bytes(50) == b.random_bytes(50)
    assert a.new_private_key().public_bytes == b.new_private_key().public_bytes
    assert [kind for kind, _ in a.draws] == ["bytes", "scalar"]
    assert DeterministicEntropy(b"other").random_bytes(16) != a.random_bytes(16)


def test_system_entropy_is_fresh() -> None:
    entropy = SystemEntropy()
    assert entropy.random_bytes(16) != entropy.random_bytes(16)


def test_aead_refuses_any_change() -> None:
    aead = Aead(b"k" * 32)
    sealed = aead.seal(b"n" * 12, b"secret", b"aad")
    assert aead.open(b"n" * 12, sealed, b"aad") == b"secret"
    for nonce, ct, aad in [
        (b"m" * 12, sealed, b"aad"),
        (b"n" * 12, sealed, b"add"),
        (b"n" * 12, sealed[:-1] + bytes([sealed[-1] ^ 1]), b"aad"),
    ]:
        with pytest.raises(AuthenticationFailed) as info:
            aead.open(nonce, ct, aad)
        assert info.value.code == "bad_tag"


def test_mac_hkdf_and_equal() -> None:
    assert crypto.mac(b"k", b"m") != crypto.mac(b"k", b"n")
    assert len(crypto.hkdf(b"ikm", salt=b"s", info=b"i", length=99)) == 99
    assert crypto.equal(b"abc", b"abc") and not crypto.equal(b"abc", b"abd")
