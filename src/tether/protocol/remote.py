"""Signed objects that travel through the cloud (docs/protocol.md §14): commands, results, receipts.

The server only relays these; it holds no key that can make one. A **command envelope** is signed
by the phone's endpoint key for one car and carries a counter that must grow and an expiry, so a
relay that keeps or repeats it gains nothing. A **result** and a **receipt** (a revocation applied)
are signed by the car, so the server cannot tell the phone a command ran or a key was revoked when
it was not. All are COSE_Sign1 (ES256) over declared, deterministic CBOR maps, like grants (§9),
and name their car by ``aud`` as grants do: hex text. Each is decoded once, into a typed value
that keeps its signed parts. Pure: the caller passes the time and looks keys up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from tether.errors import AuthenticationFailed, MalformedMessage, RemoteError, WireCode
from tether.protocol import codec
from tether.protocol.codec import Shape, boolean, bstr, hexid, shape, signals, tstr, uint
from tether.protocol.commands import Command
from tether.protocol.cose import Sign1, Signed, open_sign1, sign1
from tether.protocol.crypto import KEY_ID_SIZE, PublicKey, Signer, sha256

#: The longest an envelope may live: a relay cannot hold a command for later use.
MAX_ENVELOPE_LIFETIME = 300
#: Commands a phone may send through the cloud: never ``start`` (the driver must be in the car).
REMOTE_COMMANDS = frozenset(
    {Command.LOCK, Command.UNLOCK, Command.TRUNK, Command.LOCATE, Command.HONK, Command.STOP}
)


# -- the declared payloads ------------------------------------------------------------------
@shape
class EnvelopeClaims(Shape):
    aud: bytes = hexid("aud", size=KEY_ID_SIZE)
    cmd: str = tstr("cmd", max_size=32)
    ctr: int = uint("ctr", min_value=1)
    iat: int = uint("iat")
    exp: int = uint("exp")


@shape
class ResultClaims(Shape):
    aud: bytes = hexid("aud", size=KEY_ID_SIZE)
    req: bytes = bstr("req", size=32)
    ok: bool = boolean("ok")
    reason: str = tstr("reason", max_size=64)
    msg: str = tstr("msg", max_size=1024)
    at: int = uint("at")
    state: dict[str, Any] | None = signals("state", default=None)


@shape
class ReceiptClaims(Shape):
    aud: bytes = hexid("aud", size=KEY_ID_SIZE)
    rev: bytes = bstr("rev", size=32)
    seq: int = uint("seq")
    ok: bool = boolean("ok")
    reason: str = tstr("reason", max_size=64)
    at: int = uint("at")


@shape
class StateClaims(Shape):
    aud: bytes = hexid("aud", size=KEY_ID_SIZE)
    at: int = uint("at")
    state: dict[str, Any] = signals("state")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Envelope(Signed):
    """A phone's signed order to one car, good once and for a few minutes."""

    vehicle_id: bytes
    key_id: bytes
    command: Command
    counter: int
    issued_at: int
    expires: int
    signed: Sign1

    @property
    def digest(self) -> bytes:
        return sha256(self.signed.raw)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Result(Signed):
    """The car's signed answer to one envelope."""

    vehicle_id: bytes
    request: bytes  # sha256 of the envelope it answers
    ok: bool
    reason: str
    message: str
    at: int
    signed: Sign1
    #: Signals the answer reports (a ``locate`` carries the position); empty for most commands.
    state: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Receipt(Signed):
    """The car's signed statement about one revocation it received."""

    vehicle_id: bytes
    revocation: bytes  # sha256 of the revocation
    seq: int
    ok: bool
    reason: str
    at: int
    signed: Sign1


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class State:
    """The car's signed snapshot of its VSS signals (no personal data: the body's state only)."""

    vehicle_id: bytes
    at: int
    signals: dict[str, Any]


_SH = Any


def _load(data: bytes, cls: type[_SH], what: str, code: WireCode) -> tuple[Sign1, _SH]:
    """The one decoding of a signed object: its COSE_Sign1 and its declared payload."""
    try:
        signed = open_sign1(data, what)
        return signed, codec.load(signed.payload, cls, what)
    except MalformedMessage as exc:
        raise RemoteError(exc.message, code=code) from None


def _verify(key: PublicKey, signed: Sign1, what: str, code: WireCode) -> None:
    try:
        signed.verify(key)
    except AuthenticationFailed:
        raise RemoteError(f"the {what}'s signature does not verify", code=code) from None


# -- command envelopes -----------------------------------------------------------------------------
def sign_envelope(
    key: Signer, *, vehicle_id: bytes, command: Command, counter: int, now: int, ttl: int = 60
) -> bytes:
    """The phone signs one remote command for one car."""
    if command not in REMOTE_COMMANDS:
        raise RemoteError(f"{command} cannot be sent remotely", code=WireCode.REMOTE_NOT_ALLOWED)
    if counter < 1 or not 0 < ttl <= MAX_ENVELOPE_LIFETIME:
        raise RemoteError("a remote command needs a counter and a short lifetime")
    claims = EnvelopeClaims(aud=vehicle_id, cmd=command.value, ctr=counter, iat=now, exp=now + ttl)
    return sign1(key, codec.dump(claims))


def parse_envelope(data: bytes) -> Envelope:
    """Decode an envelope strictly, once, without checking its signature (the server routes on
    this; the car then hands the same value to :func:`verify_envelope`)."""
    signed, claims = _load(data, EnvelopeClaims, "remote command", WireCode.COMMAND_MALFORMED)
    if len(signed.kid) != KEY_ID_SIZE:
        raise RemoteError("remote command is malformed", code=WireCode.COMMAND_MALFORMED)
    try:
        command = Command(claims.cmd)
    except ValueError:
        raise RemoteError(
            "the car does not know this command", code=WireCode.UNKNOWN_COMMAND
        ) from None
    return Envelope(
        vehicle_id=claims.aud,
        key_id=signed.kid,
        command=command,
        counter=claims.ctr,
        issued_at=claims.iat,
        expires=claims.exp,
        signed=signed,
    )


def verify_envelope(
    envelope: Envelope,
    *,
    vehicle_id: bytes,
    endpoint_key: Callable[[bytes], PublicKey | None],
    last_counter: Callable[[bytes], int],
    now: float,
) -> Envelope:
    """The car's checks, in order: its own, a known unrevoked key, signature, fresh, never seen."""
    if envelope.vehicle_id != vehicle_id:
        raise RemoteError("this command is for another car", code=WireCode.COMMAND_WRONG_VEHICLE)
    key = endpoint_key(envelope.key_id)
    if key is None:
        raise RemoteError("this key is not enrolled here or was revoked", code=WireCode.UNKNOWN_KEY)
    _verify(key, envelope.signed, "remote command", WireCode.COMMAND_BAD_SIGNATURE)
    if envelope.command not in REMOTE_COMMANDS:
        raise RemoteError(
            f"{envelope.command} cannot be sent remotely", code=WireCode.REMOTE_NOT_ALLOWED
        )
    if (
        envelope.expires <= envelope.issued_at
        or envelope.expires - envelope.issued_at > MAX_ENVELOPE_LIFETIME
    ):
        raise RemoteError("this command's lifetime is not allowed", code=WireCode.COMMAND_MALFORMED)
    if now >= envelope.expires:
        raise RemoteError("this command has expired", code=WireCode.COMMAND_EXPIRED)
    if envelope.counter <= last_counter(envelope.key_id):
        raise RemoteError(
            "this command was already seen (a replay)", code=WireCode.COMMAND_REPLAYED
        )
    return envelope


# -- results ---------------------------------------------------------------------------------------
def sign_result(
    vehicle: Signer,
    envelope_raw: bytes,
    *,
    ok: bool,
    reason: str,
    message: str,
    now: int,
    state: dict[str, Any] | None = None,
) -> bytes:
    """The car signs its answer to one envelope (or to garbage: then ``request`` is its hash)."""
    claims = ResultClaims(
        aud=vehicle.public_key.key_id,
        req=sha256(envelope_raw),
        ok=ok,
        reason=reason,
        msg=message[:200],
        at=now,
        state=state or None,
    )
    return sign1(vehicle, codec.dump(claims))


def parse_result(data: bytes) -> Result:
    """Decode a result strictly, once (the server routes on ``request``; the phone verifies)."""
    signed, claims = _load(data, ResultClaims, "command result", WireCode.RESULT_MALFORMED)
    return Result(
        vehicle_id=claims.aud,
        request=claims.req,
        ok=claims.ok,
        reason=claims.reason,
        message=claims.msg,
        at=claims.at,
        signed=signed,
        state=claims.state or {},
    )


def verify_result(data: bytes | Result, *, vehicle_key: PublicKey, envelope_raw: bytes) -> Result:
    """The phone (or the server) checks that *this car* answered *this command*."""
    result = data if isinstance(data, Result) else parse_result(data)
    _verify(vehicle_key, result.signed, "command result", WireCode.RESULT_BAD_SIGNATURE)
    if result.vehicle_id != vehicle_key.key_id or result.request != sha256(envelope_raw):
        raise RemoteError("this result answers another command", code=WireCode.RESULT_MISMATCH)
    return result


# -- revocation receipts ---------------------------------------------------------------------------
def sign_receipt(
    vehicle: Signer, revocation_raw: bytes, *, seq: int, ok: bool, reason: str, now: int
) -> bytes:
    """The car signs what it did with one revocation (applied, or refused and why)."""
    claims = ReceiptClaims(
        aud=vehicle.public_key.key_id,
        rev=sha256(revocation_raw),
        seq=seq,
        ok=ok,
        reason=reason,
        at=now,
    )
    return sign1(vehicle, codec.dump(claims))


def parse_receipt(data: bytes) -> Receipt:
    """Decode a receipt strictly, once (its signature is checked by :func:`verify_receipt`)."""
    signed, claims = _load(data, ReceiptClaims, "revocation receipt", WireCode.RECEIPT_MALFORMED)
    return Receipt(
        vehicle_id=claims.aud,
        revocation=claims.rev,
        seq=claims.seq,
        ok=claims.ok,
        reason=claims.reason,
        at=claims.at,
        signed=signed,
    )


def verify_receipt(data: bytes, *, vehicle_key: PublicKey) -> Receipt:
    """Anyone holding the car's public key (owner, server) checks that the car said this."""
    receipt = parse_receipt(data)
    if receipt.vehicle_id != vehicle_key.key_id:
        raise RemoteError("this receipt is from another car", code=WireCode.RECEIPT_MISMATCH)
    _verify(vehicle_key, receipt.signed, "revocation receipt", WireCode.RECEIPT_BAD_SIGNATURE)
    return receipt


# -- telemetry -------------------------------------------------------------------------------------
def sign_state(vehicle: Signer, signals: dict[str, Any], *, now: int) -> bytes:
    claims = StateClaims(aud=vehicle.public_key.key_id, at=now, state=signals)
    return sign1(vehicle, codec.dump(claims))


def verify_state(data: bytes, *, vehicle_key: PublicKey) -> State:
    signed, claims = _load(data, StateClaims, "vehicle state", WireCode.STATE_MALFORMED)
    if claims.aud != vehicle_key.key_id:
        raise RemoteError("this state is from another car", code=WireCode.STATE_MISMATCH)
    _verify(vehicle_key, signed, "vehicle state", WireCode.STATE_BAD_SIGNATURE)
    return State(vehicle_id=claims.aud, at=claims.at, signals=claims.state)
