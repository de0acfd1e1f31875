"""Owner pairing (docs/protocol.md §5): SPAKE2 over a one-time code, key confirmation, key exchange.

Flow (phone P, vehicle V)::

    P -> V  PairRequest   {pake_P}
    V -> P  PairChallenge {pake_V}
    P -> V  PairConfirm   {HMAC(kc_P, TH), AEAD_kp(PhoneEnrollment)}     P proves the code first
    V -> P  PairAccept    {HMAC(kc_V, TH), AEAD_kv(VehicleIdentity)}

The phone proves knowledge of the code before the vehicle reveals anything that could test a guess,
so each online attempt tests one code and is counted by the vehicle's caller. Confirmation is an
HMAC checked *before* any AEAD is opened: AES-GCM is not key-committing, and a partitioning-oracle
attack would otherwise test many codes per attempt.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import ClassVar

from tether.errors import LocalProtocolError, PairingError
from tether.protocol import codec, crypto
from tether.protocol.codec import Message
from tether.protocol.crypto import Aead, Entropy, Pake, PrivateKey, PublicKey
from tether.protocol.machine import Handler, StateMachine
from tether.protocol.messages import (
    PairAccept,
    PairChallenge,
    PairConfirm,
    PairRequest,
    PhoneEnrollment,
    VehicleIdentity,
)

MIN_CODE_DIGITS = 8
_ZERO_NONCE = bytes(12)  # each sealing key is used exactly once
_LABEL_TRANSCRIPT = b"tether/1 pairing transcript"
_LABEL_KEYS = b"tether/1 pairing keys"
_LABEL_PHONE_SIG = b"tether/1 pairing phone"
_LABEL_VEHICLE_SIG = b"tether/1 pairing vehicle"


def check_code(code: str) -> str:
    """Return ``code`` if it is a valid pairing code (8 or more ASCII digits)."""
    if len(code) < MIN_CODE_DIGITS or not code.isascii() or not code.isdigit():
        raise PairingError(
            f"a pairing code is at least {MIN_CODE_DIGITS} digits", code="invalid_code"
        )
    return code


@dataclasses.dataclass(frozen=True, slots=True)
class _PairingKeys:
    transcript: bytes
    confirm_phone: bytes
    confirm_vehicle: bytes
    seal_phone: bytes
    seal_vehicle: bytes


def _derive(pake_key: bytes, pake_phone: bytes, pake_vehicle: bytes) -> _PairingKeys:
    th = crypto.sha256(_LABEL_TRANSCRIPT + pake_phone + pake_vehicle)
    okm = crypto.hkdf(pake_key, salt=th, info=_LABEL_KEYS, length=128)
    return _PairingKeys(th, okm[:32], okm[32:64], okm[64:96], okm[96:])


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CodeState:
    """What the vehicle's store knows about the pairing code when an attempt starts."""

    code: str
    expires_at: float
    used: bool
    failures: int
    max_failures: int = 5


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PhoneEnrolled:
    """Vehicle event: a phone proved the code; persist it as an owner key before flushing."""

    public_key: PublicKey
    name: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class VehiclePaired:
    """Phone event: the vehicle proved the code and its identity; store it as this car's key."""

    vehicle_key: PublicKey
    vehicle_name: str


class PairingState(enum.Enum):
    START = "start"
    SENT_REQUEST = "sent_request"
    SENT_CHALLENGE = "sent_challenge"
    SENT_CONFIRM = "sent_confirm"
    DONE = "done"
    FAILED = "failed"


_S = PairingState


class PhonePairing(StateMachine[PairingState]):
    """The phone's side of owner pairing."""

    TRANSITIONS: ClassVar = {
        (_S.SENT_REQUEST, PairChallenge): frozenset({_S.SENT_CONFIRM}),
        (_S.SENT_CONFIRM, PairAccept): frozenset({_S.DONE}),
    }
    FAILED: ClassVar = _S.FAILED

    def __init__(self, *, code: str, endpoint_key: PrivateKey, name: str, entropy: Entropy) -> None:
        super().__init__(_S.START)
        self._pake = Pake(phone=True, code=check_code(code), entropy=entropy)
        self._endpoint_key = endpoint_key
        self._name = name
        self._keys: _PairingKeys | None = None

    def start(self) -> None:
        """Queue the first message."""
        if self.state is not _S.START:
            raise LocalProtocolError("pairing already started")
        self._send(PairRequest(pake=self._pake.message))
        self.state = _S.SENT_REQUEST

    def _handler(self, msg: Message) -> Handler:
        return self._on_challenge if isinstance(msg, PairChallenge) else self._on_accept

    def _on_challenge(self, msg: Message) -> tuple[list[object], enum.Enum]:
        assert isinstance(msg, PairChallenge)
        keys = _derive(self._pake.finish(msg.pake), self._pake.message, msg.pake)
        self._keys = keys
        enrollment = PhoneEnrollment(
            public_key=self._endpoint_key.public_key.encoded,
            name=self._name,
            signature=self._endpoint_key.sign(_LABEL_PHONE_SIG + keys.transcript),
        )
        sealed = Aead(keys.seal_phone).seal(_ZERO_NONCE, codec.encode(enrollment), keys.transcript)
        self._send(
            PairConfirm(confirm=crypto.mac(keys.confirm_phone, keys.transcript), sealed=sealed)
        )
        return [], _S.SENT_CONFIRM

    def _on_accept(self, msg: Message) -> tuple[list[object], enum.Enum]:
        assert isinstance(msg, PairAccept) and self._keys is not None
        keys = self._keys
        if not crypto.equal(msg.confirm, crypto.mac(keys.confirm_vehicle, keys.transcript)):
            raise PairingError("the car did not confirm the code", code="bad_confirmation")
        plain = Aead(keys.seal_vehicle).open(_ZERO_NONCE, msg.sealed, keys.transcript)
        identity = codec.decode_as(plain, VehicleIdentity)
        vehicle_key = PublicKey(identity.public_key)
        vehicle_key.verify(
            identity.signature,
            _LABEL_VEHICLE_SIG + keys.transcript + self._endpoint_key.public_key.encoded,
        )
        return [VehiclePaired(vehicle_key=vehicle_key, vehicle_name=identity.name)], _S.DONE


class VehiclePairing(StateMachine[PairingState]):
    """The vehicle's side of owner pairing; the caller supplies and persists the code's state.

    ``reserve_guess`` is the caller's atomic, durable "spend one guess" (it returns the guesses
    left after this one, or raises :class:`PairingError` when none is left); it is called once per
    PairConfirm, before the confirmation is tested, so the bound holds whatever the concurrency.
    """

    TRANSITIONS: ClassVar = {
        (_S.START, PairRequest): frozenset({_S.SENT_CHALLENGE}),
        (_S.SENT_CHALLENGE, PairConfirm): frozenset({_S.DONE}),
    }
    FAILED: ClassVar = _S.FAILED

    def __init__(
        self,
        *,
        code: CodeState | None,
        now: float,
        vehicle_key: PrivateKey,
        name: str,
        entropy: Entropy,
        reserve_guess: Callable[[], int],
    ) -> None:
        super().__init__(_S.START)
        self._reserve_guess = reserve_guess
        self._code = code
        self._now = now
        self._vehicle_key = vehicle_key
        self._name = name
        self._entropy = entropy
        self._pake: Pake | None = None
        self._keys: _PairingKeys | None = None

    def _handler(self, msg: Message) -> Handler:
        return self._on_request if isinstance(msg, PairRequest) else self._on_confirm

    def _on_request(self, msg: Message) -> tuple[list[object], enum.Enum]:
        assert isinstance(msg, PairRequest)
        code = self._code
        if code is None or code.used:
            raise PairingError("no pairing code is active on this car", code="no_code")
        if code.failures >= code.max_failures:
            raise PairingError(
                "pairing is locked after too many wrong codes; show a new code on the car",
                code="pairing_locked",
            )
        if self._now >= code.expires_at:
            raise PairingError("the pairing code has expired", code="code_expired")
        self._pake = Pake(phone=False, code=code.code, entropy=self._entropy)
        pake_key = self._pake.finish(msg.pake)
        self._keys = _derive(pake_key, msg.pake, self._pake.message)
        self._send(PairChallenge(pake=self._pake.message))
        return [], _S.SENT_CHALLENGE

    def _on_confirm(self, msg: Message) -> tuple[list[object], enum.Enum]:
        assert isinstance(msg, PairConfirm) and self._keys is not None
        keys = self._keys
        # The guess is spent (atomically, by the caller's store) before it is tested: the state
        # read at PairRequest is no bound when many attempts are in flight at once.
        left = self._reserve_guess()
        if not crypto.equal(msg.confirm, crypto.mac(keys.confirm_phone, keys.transcript)):
            if left == 0:
                raise PairingError(
                    "wrong pairing code; no tries left: pairing is locked until the car shows a"
                    " new code",
                    code="wrong_code",
                )
            tries = "1 try" if left == 1 else f"{left} tries"
            raise PairingError(f"wrong pairing code; {tries} left", code="wrong_code")
        plain = Aead(keys.seal_phone).open(_ZERO_NONCE, msg.sealed, keys.transcript)
        enrollment = codec.decode_as(plain, PhoneEnrollment)
        phone_key = PublicKey(enrollment.public_key)
        phone_key.verify(enrollment.signature, _LABEL_PHONE_SIG + keys.transcript)
        identity = VehicleIdentity(
            public_key=self._vehicle_key.public_key.encoded,
            name=self._name,
            signature=self._vehicle_key.sign(
                _LABEL_VEHICLE_SIG + keys.transcript + phone_key.encoded
            ),
        )
        sealed = Aead(keys.seal_vehicle).seal(_ZERO_NONCE, codec.encode(identity), keys.transcript)
        self._send(
            PairAccept(confirm=crypto.mac(keys.confirm_vehicle, keys.transcript), sealed=sealed)
        )
        return [PhoneEnrolled(public_key=phone_key, name=enrollment.name)], _S.DONE
