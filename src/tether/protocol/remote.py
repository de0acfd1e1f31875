"""Signed objects that travel through the cloud (docs/protocol.md §14): commands, results, receipts.

The server only relays these; it holds no key that can make one. A **command envelope** is signed
by the phone's endpoint key for one car and carries a counter that must grow and an expiry, so a
relay that keeps or repeats it gains nothing. A **result** and a **receipt** (a revocation applied)
are signed by the car, so the server cannot tell the phone a command ran or a key was revoked when
it was not. All three are COSE_Sign1 (ES256) over deterministic CBOR maps, like grants (§9).
Pure: the caller passes the time and looks keys up.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import cbor2

from tether.errors import AuthenticationFailed, Code, WireCode
from tether.protocol.commands import Command
from tether.protocol.credentials import GrantError, open_sign1, sig_structure, sign1
from tether.protocol.crypto import KEY_ID_SIZE, PublicKey, Signer, sha256

#: The longest an envelope may live: a relay cannot hold a command for later use.
MAX_ENVELOPE_LIFETIME = 300
#: Commands a phone may send through the cloud: never ``start`` (the driver must be in the car).
REMOTE_COMMANDS = frozenset(
    {Command.LOCK, Command.UNLOCK, Command.TRUNK, Command.LOCATE, Command.HONK, Command.STOP}
)


class RemoteError(GrantError):
    """A remote command, result or receipt is refused; ``code`` says why."""

    code: Code = WireCode.REMOTE_REFUSED


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """A phone's signed order to one car, good once and for a few minutes."""

    vehicle_id: bytes
    key_id: bytes
    command: Command
    counter: int
    issued_at: int
    expires: int
    raw: bytes

    @property
    def digest(self) -> bytes:
        return sha256(self.raw)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """The car's signed answer to one envelope."""

    vehicle_id: bytes
    request: bytes  # sha256 of the envelope it answers
    ok: bool
    reason: str
    message: str
    at: int
    raw: bytes
    #: Signals the answer reports (a ``locate`` carries the position); empty for most commands.
    state: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """The car's signed statement about one revocation it received."""

    vehicle_id: bytes
    revocation: bytes  # sha256 of the revocation
    seq: int
    ok: bool
    reason: str
    at: int
    raw: bytes


def _load(data: bytes, what: str, code: WireCode) -> tuple[bytes, dict[str, Any]]:
    try:
        _, kid, payload, _ = open_sign1(data, what)
        body = cbor2.loads(payload)
    except GrantError as exc:
        raise RemoteError(exc.message, code=code) from None
    except Exception as exc:  # payload garbage
        raise RemoteError(f"{what} is not valid CBOR", code=code) from exc
    if type(body) is not dict:
        raise RemoteError(f"{what} is malformed", code=code)
    return kid, body


def _verify(key: PublicKey, data: bytes, what: str, code: WireCode) -> None:
    protected, _, payload, signature = open_sign1(data, what)
    try:
        key.verify(signature, sig_structure(protected, payload))
    except AuthenticationFailed:
        raise RemoteError(f"the {what}'s signature does not verify", code=code) from None


def _id(value: Any, size: int, what: str, code: WireCode) -> bytes:
    if type(value) is not bytes or len(value) != size:
        raise RemoteError(f"{what} is malformed", code=code)
    return value


# -- command envelopes -----------------------------------------------------------------------------
def sign_envelope(
    key: Signer, *, vehicle_id: bytes, command: Command, counter: int, now: int, ttl: int = 60
) -> bytes:
    """The phone signs one remote command for one car."""
    if command not in REMOTE_COMMANDS:
        raise RemoteError(f"{command} cannot be sent remotely", code=WireCode.REMOTE_NOT_ALLOWED)
    if counter < 1 or not 0 < ttl <= MAX_ENVELOPE_LIFETIME:
        raise RemoteError("a remote command needs a counter and a short lifetime")
    body = {
        "aud": vehicle_id,
        "cmd": command.value,
        "ctr": counter,
        "iat": now,
        "exp": now + ttl,
    }
    return sign1(key, cbor2.dumps(body, canonical=True))


def parse_envelope(data: bytes) -> Envelope:
    """Decode an envelope strictly, without checking its signature (the server routes on this)."""
    code = WireCode.COMMAND_MALFORMED
    kid, body = _load(data, "remote command", code)
    if set(body) != {"aud", "cmd", "ctr", "iat", "exp"}:
        raise RemoteError("remote command is malformed", code=code)
    counter, issued, expires = body["ctr"], body["iat"], body["exp"]
    if not all(type(v) is int for v in (counter, issued, expires)) or counter < 1:
        raise RemoteError("remote command is malformed", code=code)
    try:
        command = Command(body["cmd"])
    except ValueError:
        raise RemoteError(
            "the car does not know this command", code=WireCode.UNKNOWN_COMMAND
        ) from None
    return Envelope(
        vehicle_id=_id(body["aud"], KEY_ID_SIZE, "remote command", code),
        key_id=_id(kid, KEY_ID_SIZE, "remote command", code),
        command=command,
        counter=counter,
        issued_at=issued,
        expires=expires,
        raw=data,
    )


def verify_envelope(
    data: bytes,
    *,
    vehicle_id: bytes,
    endpoint_key: Callable[[bytes], PublicKey | None],
    last_counter: Callable[[bytes], int],
    now: float,
) -> Envelope:
    """The car's checks, in order: its own, a known unrevoked key, signature, fresh, never seen."""
    envelope = parse_envelope(data)
    if envelope.vehicle_id != vehicle_id:
        raise RemoteError("this command is for another car", code=WireCode.COMMAND_WRONG_VEHICLE)
    key = endpoint_key(envelope.key_id)
    if key is None:
        raise RemoteError("this key is not enrolled here or was revoked", code=WireCode.UNKNOWN_KEY)
    _verify(key, data, "remote command", WireCode.COMMAND_BAD_SIGNATURE)
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
    body: dict[str, Any] = {
        "aud": vehicle.public_key.key_id,
        "req": sha256(envelope_raw),
        "ok": ok,
        "reason": reason,
        "msg": message[:200],
        "at": now,
    }
    if state:
        body["state"] = state
    return sign1(vehicle, cbor2.dumps(body, canonical=True))


def verify_result(data: bytes, *, vehicle_key: PublicKey, envelope_raw: bytes) -> Result:
    """The phone checks that *its car* answered *its command*."""
    code = WireCode.RESULT_MALFORMED
    _, body = _load(data, "command result", code)
    if set(body) - {"state"} != {"aud", "req", "ok", "reason", "msg", "at"}:
        raise RemoteError("command result is malformed", code=code)
    if "state" in body and not _signals(body["state"]):
        raise RemoteError("command result is malformed", code=code)
    if type(body["ok"]) is not bool or type(body["reason"]) is not str:
        raise RemoteError("command result is malformed", code=code)
    if type(body["msg"]) is not str or type(body["at"]) is not int:
        raise RemoteError("command result is malformed", code=code)
    _verify(vehicle_key, data, "command result", WireCode.RESULT_BAD_SIGNATURE)
    if body["aud"] != vehicle_key.key_id or body["req"] != sha256(envelope_raw):
        raise RemoteError("this result answers another command", code=WireCode.RESULT_MISMATCH)
    return Result(
        vehicle_id=body["aud"],
        request=body["req"],
        ok=body["ok"],
        reason=body["reason"],
        message=body["msg"],
        at=body["at"],
        raw=data,
        state=body.get("state", {}),
    )


def result_request(data: bytes) -> bytes:
    """The envelope digest a result names (for routing; the phone verifies it)."""
    _, body = _load(data, "command result", WireCode.RESULT_MALFORMED)
    return _id(body.get("req"), 32, "command result", WireCode.RESULT_MALFORMED)


# -- revocation receipts ---------------------------------------------------------------------------
def sign_receipt(
    vehicle: Signer, revocation_raw: bytes, *, seq: int, ok: bool, reason: str, now: int
) -> bytes:
    """The car signs what it did with one revocation (applied, or refused and why)."""
    body = {
        "aud": vehicle.public_key.key_id,
        "rev": sha256(revocation_raw),
        "seq": seq,
        "ok": ok,
        "reason": reason,
        "at": now,
    }
    return sign1(vehicle, cbor2.dumps(body, canonical=True))


def parse_receipt(data: bytes) -> Receipt:
    """Decode a receipt strictly (its signature is checked by :func:`verify_receipt`)."""
    code = WireCode.RECEIPT_MALFORMED
    _, body = _load(data, "revocation receipt", code)
    if set(body) != {"aud", "rev", "seq", "ok", "reason", "at"}:
        raise RemoteError("revocation receipt is malformed", code=code)
    if type(body["ok"]) is not bool or type(body["reason"]) is not str:
        raise RemoteError("revocation receipt is malformed", code=code)
    if type(body["seq"]) is not int or type(body["at"]) is not int:
        raise RemoteError("revocation receipt is malformed", code=code)
    return Receipt(
        vehicle_id=_id(body["aud"], KEY_ID_SIZE, "revocation receipt", code),
        revocation=_id(body["rev"], 32, "revocation receipt", code),
        seq=body["seq"],
        ok=body["ok"],
        reason=body["reason"],
        at=body["at"],
        raw=data,
    )


def verify_receipt(data: bytes, *, vehicle_key: PublicKey) -> Receipt:
    """Anyone holding the car's public key (owner, server) checks that the car said this."""
    receipt = parse_receipt(data)
    if receipt.vehicle_id != vehicle_key.key_id:
        raise RemoteError("this receipt is from another car", code=WireCode.RECEIPT_MISMATCH)
    _verify(vehicle_key, data, "revocation receipt", WireCode.RECEIPT_BAD_SIGNATURE)
    return receipt


# -- telemetry -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class State:
    """The car's signed snapshot of its VSS signals (no personal data: the body's state only)."""

    vehicle_id: bytes
    at: int
    signals: dict[str, Any]


def sign_state(vehicle: Signer, signals: dict[str, Any], *, now: int) -> bytes:
    body = {"aud": vehicle.public_key.key_id, "at": now, "state": signals}
    return sign1(vehicle, cbor2.dumps(body, canonical=True))


def _signal_value(value: object) -> bool:
    """A VSS signal's value as state carries it: a bool, a number or short text, nothing else."""
    if type(value) is float:
        return math.isfinite(value)
    return type(value) in (bool, int) or (type(value) is str and len(value) <= 256)


def _signals(value: object) -> bool:
    """A map of VSS names to signal values, as a state or a result carries it."""
    return type(value) is dict and all(
        type(k) is str and len(k) <= 128 and _signal_value(v) for k, v in value.items()
    )


def verify_state(data: bytes, *, vehicle_key: PublicKey) -> State:
    code = WireCode.STATE_MALFORMED
    _, body = _load(data, "vehicle state", code)
    if set(body) != {"aud", "at", "state"} or type(body["at"]) is not int:
        raise RemoteError("vehicle state is malformed", code=code)
    if not _signals(body["state"]):
        raise RemoteError("vehicle state is malformed", code=code)
    if body["aud"] != vehicle_key.key_id:
        raise RemoteError("this state is from another car", code=WireCode.STATE_MISMATCH)
    _verify(vehicle_key, data, "vehicle state", WireCode.STATE_BAD_SIGNATURE)
    return State(vehicle_id=body["aud"], at=body["at"], signals=body["state"])
