"""Every tether wire message as a frozen dataclass, with its type number and field keys.

docs/protocol.md §3 lists the same table for implementers. Type numbers are grouped: 10-29
pairing, 30-49 transactions, 50-59 channel records, 60 errors, 70-79 messages inside the channel.
"""

from __future__ import annotations

from tether.protocol.codec import Message, boolean, bstr, message, signals, tstr, uint
from tether.protocol.crypto import MAC_SIZE, PUBLIC_KEY_SIZE, SIGNATURE_SIZE

NONCE_SIZE = 16
SHARE_SIZE = 65  # a SPAKE2+ share: an uncompressed P-256 point
_SEALED_MAX = 2048


# -- owner pairing (§5) -------------------------------------------------------------------------
@message(10)
class PairRequest(Message):
    """Phone -> vehicle: the phone's SPAKE2+ share (RFC 9383 shareP)."""

    share: bytes = bstr(1, size=SHARE_SIZE)


@message(11)
class PairChallenge(Message):
    """Vehicle -> phone: the vehicle's SPAKE2+ share (RFC 9383 shareV)."""

    share: bytes = bstr(1, size=SHARE_SIZE)


@message(12)
class PairConfirm(Message):
    """Phone -> vehicle: key confirmation, then the phone's enrolment sealed under the PAKE key."""

    confirm: bytes = bstr(1, size=MAC_SIZE)
    sealed: bytes = bstr(2, max_size=_SEALED_MAX)


@message(13)
class PairAccept(Message):
    """Vehicle -> phone: key confirmation, then the vehicle's identity sealed under the PAKE key."""

    confirm: bytes = bstr(1, size=MAC_SIZE)
    sealed: bytes = bstr(2, max_size=_SEALED_MAX)


@message(20)
class PhoneEnrollment(Message):
    """Sealed in PairConfirm: the phone's endpoint key, its name, proof of possession."""

    public_key: bytes = bstr(1, size=PUBLIC_KEY_SIZE)
    name: str = tstr(2, max_size=64)
    signature: bytes = bstr(3, size=SIGNATURE_SIZE)


@message(21)
class VehicleIdentity(Message):
    """Sealed in PairAccept: the vehicle's long-term key, its name, proof of possession."""

    public_key: bytes = bstr(1, size=PUBLIC_KEY_SIZE)
    name: str = tstr(2, max_size=64)
    signature: bytes = bstr(3, size=SIGNATURE_SIZE)


# -- standard transaction (§6.2) ----------------------------------------------------------------
@message(30)
class StandardHello(Message):
    """Phone -> vehicle: a fresh ephemeral key and nonce; nothing that identifies the phone."""

    ephemeral: bytes = bstr(1, size=PUBLIC_KEY_SIZE)
    nonce: bytes = bstr(2, size=NONCE_SIZE)


@message(31)
class VehicleAuth(Message):
    """Vehicle -> phone: its ephemeral and nonce, and its transcript signature (64 bytes) sealed."""

    ephemeral: bytes = bstr(1, size=PUBLIC_KEY_SIZE)
    nonce: bytes = bstr(2, size=NONCE_SIZE)
    sealed: bytes = bstr(3, max_size=_SEALED_MAX)


@message(32)
class PhoneAuth(Message):
    """Phone -> vehicle: key id (16) || signature (64), sealed; only to an authenticated car."""

    sealed: bytes = bstr(1, max_size=_SEALED_MAX)


@message(33)
class Finished(Message):
    """Vehicle -> phone: the car accepted; a MAC under the new session's confirmation key."""

    mac: bytes = bstr(1, size=MAC_SIZE)


# -- the car's greeting (§4) and the fast transaction (§6.3) ------------------------------------
@message(37)
class VehicleHello(Message):
    """Vehicle -> phone, first on every connection: a fresh nonce that freshens a fast proof."""

    nonce: bytes = bstr(1, size=NONCE_SIZE)


@message(36)
class FastProof(Message):
    """Phone -> vehicle: its own nonce and a MAC under its current persistent key; names no key."""

    nonce: bytes = bstr(1, size=NONCE_SIZE)
    cryptogram: bytes = bstr(2, size=MAC_SIZE)


@message(38)
class Fallback(Message):
    """Vehicle -> phone: no persistent key matched; run a standard transaction instead."""


# -- secure channel (§7) ------------------------------------------------------------------------
@message(50)
class Record(Message):
    """An AES-GCM record; the nonce is implicit (per-direction IV xor record counter)."""

    ciphertext: bytes = bstr(1, max_size=60_000)


@message(60)
class Error(Message):
    """Either side: a refusal with a machine-readable code and a sentence; ends the exchange."""

    code: str = tstr(1, max_size=64)
    message: str = tstr(2, max_size=512)


# -- inside the channel (§8) --------------------------------------------------------------------
@message(70)
class CommandRequest(Message):
    """Phone -> vehicle: run one command. The name is text so unknown commands deny cleanly."""

    request_id: int = uint(1, max_value=2**32 - 1)
    command: str = tstr(2, max_size=32)


@message(71)
class CommandResult(Message):
    """Vehicle -> phone: the outcome; a denial carries a reason code and a sentence."""

    request_id: int = uint(1, max_value=2**32 - 1)
    ok: bool = boolean(2)
    reason: str | None = tstr(3, max_size=64, default=None)
    message: str = tstr(4, max_size=512)
    state: dict[str, bool | int | float | str] | None = signals(5, default=None)


@message(73)
class RevocationRequest(Message):
    """Either side -> vehicle: deliver an owner-signed revocation (docs/protocol.md §9.3)."""

    request_id: int = uint(1, max_value=2**32 - 1)
    revocation: bytes = bstr(2, max_size=4096)


@message(74)
class RevocationResult(Message):
    """Vehicle -> phone: the revocation is durable (ok), or why it was refused."""

    request_id: int = uint(1, max_value=2**32 - 1)
    ok: bool = boolean(2)
    seq: int = uint(3)
    reason: str | None = tstr(4, max_size=64, default=None)
    message: str = tstr(5, max_size=512)


@message(75)
class DataRequest(Message):
    """Vehicle -> phone: what the head unit would show (modelled on ISO 18013-5 requests).

    ``items`` is deterministic CBOR: a list of {"category": text, "query": map}.
    """

    request_id: int = uint(1, max_value=2**32 - 1)
    items: bytes = bstr(2, max_size=4096)
    purpose: str = tstr(3, max_size=128)
    retain: bool = boolean(4)


@message(76)
class DataResponse(Message):
    """Phone -> vehicle: only what the phone's consent granted, and which categories it denied.

    ``granted`` is CBOR {category: records}; ``denied`` a CBOR list of categories.
    """

    request_id: int = uint(1, max_value=2**32 - 1)
    granted: bytes = bstr(2, max_size=60_000)
    denied: bytes = bstr(3, max_size=1024)


@message(77)
class RangingRequest(Message):
    """Vehicle -> phone: set up one ranging measurement (docs/protocol.md §13) with this nonce."""

    request_id: int = uint(1, max_value=2**32 - 1)
    nonce: bytes = bstr(2, size=16)
    anchors: int = uint(3, max_value=16)


@message(78)
class RangingReady(Message):
    """Phone -> vehicle: ready for the timed rounds; declares its reply time in nanoseconds."""

    request_id: int = uint(1, max_value=2**32 - 1)
    reply_ns: int = uint(2, max_value=10**9)


@message(72)
class Close(Message):
    """Either side: the session ends cleanly; a cut without it is an error."""
