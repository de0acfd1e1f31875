"""Every cryptographic operation of tether, named by intent; the only module that imports hazmat.

P-256 ECDH and ECDSA (deterministic, RFC 6979; signatures as 64-byte r||s), HKDF-SHA256,
HMAC-SHA256, AES-256-GCM, SHA-256 and PBKDF2 (SPAKE2+'s point arithmetic is in ``spake2plus``).
Randomness comes from an injected :class:`Entropy`, so the protocol core is deterministic under
test; library exceptions are turned into tether's own here and nowhere else.
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.constant_time import bytes_eq
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tether.errors import AuthenticationFailed, MalformedMessage, WireCode

PUBLIC_KEY_SIZE = 65  # SEC1 uncompressed point: 0x04 || X || Y
SIGNATURE_SIZE = 64  # r || s, 32 bytes each, as in COSE ES256
SCALAR_SIZE = 32
KEY_ID_SIZE = 16
MAC_SIZE = 32
AEAD_KEY_SIZE = 32
AEAD_NONCE_SIZE = 12
AEAD_TAG_SIZE = 16

_CURVE = ec.SECP256R1()
_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_ECDSA = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
_ECDH = ec.ECDH()
_SHA256 = hashes.SHA256()


def sha256(data: bytes) -> bytes:
    """SHA-256 digest."""
    return hashlib.sha256(data).digest()


def key_id(public_key_bytes: bytes) -> bytes:
    """The id of a public key: the first 16 bytes of SHA-256 over its uncompressed encoding."""
    return hashlib.sha256(public_key_bytes).digest()[:KEY_ID_SIZE]


def hkdf(ikm: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869), extract with ``salt`` then expand with ``info``."""
    return HKDF(algorithm=_SHA256, length=length, salt=salt, info=info).derive(ikm)


def pbkdf2(secret: bytes, *, salt: bytes, iterations: int, length: int) -> bytes:
    """PBKDF2-HMAC-SHA256 (RFC 8018): turns a pairing code into SPAKE2+ scalars (§5).

    WebCrypto has it too, so a phone in a browser derives the same scalars without a library.
    """
    return PBKDF2HMAC(_SHA256, length, salt, iterations).derive(secret)


def scrypt(secret: bytes, *, salt: bytes, n: int, length: int = 32) -> bytes:
    """scrypt (RFC 7914, r=8, p=1): a memory-hard key from a passphrase a person chose."""
    return Scrypt(salt=salt, length=length, n=n, r=8, p=1).derive(secret)


def mac(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256."""
    h = _hmac.HMAC(key, _SHA256)
    h.update(data)
    return h.finalize()


def equal(a: bytes, b: bytes) -> bool:
    """Compare two secrets in constant time."""
    return bytes_eq(a, b)


class PublicKey:
    """A validated P-256 public key (ECDSA verification and ECDH peer)."""

    __slots__ = ("_key", "_key_id", "encoded")

    def __init__(self, encoded: bytes) -> None:
        if len(encoded) != PUBLIC_KEY_SIZE or encoded[0] != 4:
            raise MalformedMessage("a public key must be a 65-byte uncompressed P-256 point")
        try:
            self._key = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, encoded)
        except ValueError as exc:
            raise MalformedMessage("public key is not a point on P-256") from exc
        self.encoded = encoded
        self._key_id: bytes | None = None

    @property
    def key_id(self) -> bytes:
        """The key's 16-byte id (computed on first use: ephemerals never need one)."""
        if self._key_id is None:
            self._key_id = key_id(self.encoded)
        return self._key_id

    def verify(self, signature: bytes, data: bytes) -> None:
        """Check an ECDSA-SHA256 signature (r||s); raise :class:`AuthenticationFailed` if bad."""
        if len(signature) != SIGNATURE_SIZE:
            raise AuthenticationFailed("signature has the wrong length")
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        try:
            self._key.verify(encode_dss_signature(r, s), data, _ECDSA)
        except InvalidSignature:
            raise AuthenticationFailed(
                "signature does not verify", code=WireCode.BAD_SIGNATURE
            ) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.encoded == self.encoded

    def __hash__(self) -> int:
        return hash(self.encoded)

    def __repr__(self) -> str:
        return f"PublicKey(key_id={self.key_id.hex()})"


class Signer(Protocol):
    """What signs for a long-term identity: a :class:`PrivateKey` in memory, or a key in a token
    (PKCS#11) that never leaves it. Signatures are ECDSA P-256 SHA-256 as 64-byte r||s."""

    @property
    def public_key(self) -> PublicKey: ...

    def sign(self, data: bytes) -> bytes: ...


class PrivateKey:
    """A P-256 private key: signs (deterministic ECDSA) and agrees (ECDH). Never logged."""

    __slots__ = ("_key", "_public_key", "public_bytes")

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        # From the numbers rather than public_bytes(): `serialization` costs the car agent 15-40 ms
        # of start-up (it pulls in the SSH key formats).
        numbers = key.public_key().public_numbers()
        self.public_bytes: bytes = (
            b"\x04" + numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
        )
        self._public_key: PublicKey | None = None

    @property
    def public_key(self) -> PublicKey:
        """The matching public key (built on first use: ephemerals only need their bytes)."""
        if self._public_key is None:
            self._public_key = PublicKey(self.public_bytes)
        return self._public_key

    @classmethod
    def from_scalar(cls, scalar: bytes) -> PrivateKey:
        """Load a key from its 32-byte big-endian scalar (1 <= d < n)."""
        d = int.from_bytes(scalar, "big")
        if len(scalar) != SCALAR_SIZE or not 0 < d < _ORDER:
            raise ValueError("a P-256 private scalar is 32 bytes in 1..n-1")
        return cls(ec.derive_private_key(d, _CURVE))

    def scalar(self) -> bytes:
        """The 32-byte private scalar, for the caller's encrypted key store only."""
        return self._key.private_numbers().private_value.to_bytes(SCALAR_SIZE, "big")

    def sign(self, data: bytes) -> bytes:
        """ECDSA-SHA256 over ``data`` (RFC 6979 nonces), as 64-byte r||s."""
        r, s = decode_dss_signature(self._key.sign(data, _ECDSA))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def exchange(self, peer: PublicKey) -> bytes:
        """ECDH shared secret (the 32-byte X coordinate)."""
        return self._key.exchange(_ECDH, peer._key)

    def __repr__(self) -> str:
        return f"PrivateKey(key_id={key_id(self.public_bytes).hex()})"


class Entropy(Protocol):
    """The source of all randomness the protocol core uses; injected by the caller."""

    def random_bytes(self, n: int) -> bytes: ...

    def new_private_key(self) -> PrivateKey: ...


class SystemEntropy:
    """Production randomness: the OS CSPRNG (``os.urandom``) and OpenSSL's key generation."""

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def new_private_key(self) -> PrivateKey:
        return PrivateKey(ec.generate_private_key(_CURVE))


def scalar_from_bytes(material: bytes) -> bytes:
    """Map 40 uniform bytes to a P-256 scalar in 1..n-1 (FIPS 186-5 A.2.1, extra-bits method)."""
    return (int.from_bytes(material, "big") % (_ORDER - 1) + 1).to_bytes(SCALAR_SIZE, "big")


class DeterministicEntropy:
    """Reproducible randomness for tests, vectors and benchmarks: SHA-256 of a seed and a counter.

    Every draw is recorded in :attr:`draws` so that test vectors can list them.
    """

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._counter = 0
        self.draws: list[tuple[str, bytes]] = []

    def _next(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        return out[:n]

    def random_bytes(self, n: int) -> bytes:
        out = self._next(n)
        self.draws.append(("bytes", out))
        return out

    def new_private_key(self) -> PrivateKey:
        scalar = scalar_from_bytes(self._next(40))
        self.draws.append(("scalar", scalar))
        return PrivateKey.from_scalar(scalar)


class Aead:
    """AES-256-GCM under one key."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return self._aead.encrypt(nonce, plaintext, aad)

    def open(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """Decrypt; a wrong key, nonce, AAD or any modified byte raises AuthenticationFailed."""
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise AuthenticationFailed(
                "ciphertext does not authenticate", code=WireCode.BAD_TAG
            ) from None
