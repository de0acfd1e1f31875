"""SPAKE2+ (RFC 9383), suite P256-SHA256-HKDF-SHA256-HMAC-SHA256: the PAKE of owner pairing (§5).

The phone is the Prover (it knows the code, so it derives ``w0`` and ``w1``); the car is the
Verifier and needs only ``w0`` and ``L = w1*G``, which a car maker's backend can provision instead
of the code. Point arithmetic comes from pycryptodome's constant-time P-256 (``cryptography``
exposes no point addition); hashing, HKDF, HMAC and PBKDF2 come from :mod:`tether.protocol.crypto`.
The group elements ``M`` and ``N`` are RFC 9382 §6's for P-256; the RFC's test vectors are in the
suite.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any

from tether.errors import WireCode

if TYPE_CHECKING:
    from Cryptodome.PublicKey._point import EccPoint

from tether.errors import PairingError
from tether.protocol import crypto

ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
SHARE_SIZE = 65  # an uncompressed SEC1 point
SCALAR_SIZE = 32
# RFC 9382 §6, P-256 (compressed SEC1 encodings, as the RFC prints them).
M_COMPRESSED = bytes.fromhex("02886e2f97ace46e55ba9dd7242579f2993b64e16ef3dcab95afd497333d8fa12f")
N_COMPRESSED = bytes.fromhex("03d8bbd6c639c62937b04d997f38c3770719c629d7014d49a24b4f98baa1292b49")


@functools.cache
def _ecc() -> Any:
    """pycryptodome's ECC, imported on first use: a car that never pairs starts without it."""
    from Cryptodome.PublicKey import ECC

    return ECC


def _point(encoded: bytes) -> EccPoint:
    """Decode a SEC1 point; anything not a point of P-256 is refused.

    pycryptodome checks the point is on the curve and refuses the identity's encoding (0x00), so a
    point that decodes is never the identity.
    """
    try:
        key = _ecc().import_key(encoded, curve_name="p256")
    except (ValueError, TypeError, IndexError) as exc:
        raise PairingError(
            "a pairing share is not a P-256 point", code=WireCode.BAD_PAKE_MESSAGE
        ) from exc
    point: EccPoint = key.pointQ
    return point


def encode(point: EccPoint) -> bytes:
    """The uncompressed SEC1 encoding (65 bytes); the identity never reaches here."""
    if point.is_point_at_infinity():
        raise PairingError("the PAKE produced the identity", code=WireCode.BAD_PAKE_MESSAGE)
    x, y = point.xy
    return b"\x04" + int(x).to_bytes(32, "big") + int(y).to_bytes(32, "big")


@functools.cache
def _points() -> dict[str, EccPoint]:
    return {
        "_G": _ecc()._curves["p256"].G,
        "M": _point(M_COMPRESSED),
        "N": _point(N_COMPRESSED),
    }


def __getattr__(name: str) -> Any:
    """``M``, ``N`` and the generator ``_G``, made on first use (module attributes, PEP 562)."""
    if name in ("M", "N", "_G"):
        return _points()[name]
    raise AttributeError(name)


def _len8(data: bytes) -> bytes:
    """RFC 9383's length prefix: 8 bytes, little-endian, then the bytes."""
    return len(data).to_bytes(8, "little") + data


@dataclasses.dataclass(frozen=True, slots=True)
class Ids:
    """The three strings both sides bind into the transcript (RFC 9383 §3.3)."""

    context: bytes
    prover: bytes
    verifier: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class ProverSecret:
    """What the prover derives from the password: ``w0`` and ``w1``, scalars mod the order."""

    w0: int
    w1: int

    def verifier(self) -> VerifierSecret:
        """The registration record the verifier keeps: ``w0`` and ``L = w1·G``."""
        return VerifierSecret(w0=self.w0, L=encode(_points()["_G"] * self.w1))


@dataclasses.dataclass(frozen=True, slots=True)
class VerifierSecret:
    """The verifier's registration record: ``w0`` and ``L`` (65 bytes); never the password."""

    w0: int
    L: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one side's computation: both confirmation MACs and the shared key."""

    share_p: bytes
    share_v: bytes
    confirm_p: bytes  # MAC(K_confirmP, shareV): what the prover sends
    confirm_v: bytes  # MAC(K_confirmV, shareP): what the verifier sends
    shared_key: bytes  # K_shared
    k_main: bytes


def split_w(material: bytes) -> ProverSecret:
    """Two 40-byte halves of the PBKDF output, each reduced mod the order (RFC 9383 §3.2)."""
    if len(material) != 80:
        raise ValueError("SPAKE2+ needs 80 bytes of password-derived material for P-256")
    return ProverSecret(
        w0=int.from_bytes(material[:40], "big") % ORDER,
        w1=int.from_bytes(material[40:], "big") % ORDER,
    )


def password_input(password: bytes, ids: Ids) -> bytes:
    """The PBKDF's input: ``len(pw)||pw||len(idProver)||idProver||len(idVerifier)||idVerifier``."""
    return _len8(password) + _len8(ids.prover) + _len8(ids.verifier)


def _finish(ids: Ids, w0: int, shares: tuple[bytes, bytes], z: EccPoint, v: EccPoint) -> Outcome:
    share_p, share_v = shares
    transcript = b"".join(
        _len8(part)
        for part in (
            ids.context,
            ids.prover,
            ids.verifier,
            encode(_points()["M"]),
            encode(_points()["N"]),
            share_p,
            share_v,
            encode(z),
            encode(v),
            w0.to_bytes(SCALAR_SIZE, "big"),
        )
    )
    k_main = crypto.sha256(transcript)
    confirm = crypto.hkdf(k_main, salt=b"", info=b"ConfirmationKeys", length=64)
    return Outcome(
        share_p=share_p,
        share_v=share_v,
        confirm_p=crypto.mac(confirm[:32], share_v),
        confirm_v=crypto.mac(confirm[32:], share_p),
        shared_key=crypto.hkdf(k_main, salt=b"", info=b"SharedKey", length=32),
        k_main=k_main,
    )


class Prover:
    """The phone's side: ``share`` to send, then :meth:`finish` with the verifier's share."""

    def __init__(self, secret: ProverSecret, ids: Ids, x: int) -> None:
        if not 0 < x < ORDER:
            raise ValueError("the prover's scalar must be in [1, order)")
        self._secret = secret
        self._ids = ids
        self._x = x
        points = _points()
        self.share = encode(points["_G"] * x + points["M"] * secret.w0)

    def finish(self, share_v: bytes) -> Outcome:
        """Z = x*(Y - w0*N), V = w1*(Y - w0*N) (cofactor 1 on P-256); refuses a reflected share."""
        if crypto.equal(share_v, self.share):
            raise PairingError("the peer sent back our own share", code=WireCode.BAD_PAKE_MESSAGE)
        base = _point(share_v) + (-(_points()["N"] * self._secret.w0))
        return _finish(
            self._ids,
            self._secret.w0,
            (self.share, share_v),
            base * self._x,
            base * self._secret.w1,
        )


class Verifier:
    """The car's side: ``share`` to send, and :meth:`finish` with the prover's share."""

    def __init__(self, secret: VerifierSecret, ids: Ids, y: int) -> None:
        if not 0 < y < ORDER:
            raise ValueError("the verifier's scalar must be in [1, order)")
        self._secret = secret
        self._ids = ids
        self._y = y
        self._L = _point(secret.L)
        points = _points()
        self.share = encode(points["_G"] * y + points["N"] * secret.w0)

    def finish(self, share_p: bytes) -> Outcome:
        """Z = y*(X - w0*M), V = y*L; a reflected share is refused."""
        if crypto.equal(share_p, self.share):
            raise PairingError("the peer sent back our own share", code=WireCode.BAD_PAKE_MESSAGE)
        base = _point(share_p) + (-(_points()["M"] * self._secret.w0))
        return _finish(
            self._ids, self._secret.w0, (share_p, self.share), base * self._y, self._L * self._y
        )
