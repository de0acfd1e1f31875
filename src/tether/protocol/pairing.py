"""Owner pairing (docs/protocol.md §5): SPAKE2+ over a one-time code, then keys are exchanged.

Flow (phone P = RFC 9383 Prover, vehicle V = Verifier)::

    P -> V  PairRequest   {shareP}
    V -> P  PairChallenge {shareV}
    P -> V  PairConfirm   {confirmP, AEAD_ks_P(PhoneEnrollment)}     P proves the code first
    V -> P  PairAccept    {confirmV, AEAD_ks_V(VehicleIdentity)}

The phone proves knowledge of the code before the vehicle reveals anything that could test a guess,
so each online attempt tests one code and is counted by the vehicle's caller. Confirmation is an
HMAC checked *before* any AEAD is opened: AES-GCM is not key-committing, and a partitioning-oracle
attack would otherwise test many codes per attempt.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Callable
from typing import ClassVar

from tether.errors import LocalProtocolError, PairingError, WireCode
from tether.protocol import codec, crypto, spake2plus
from tether.protocol.crypto import Aead, Entropy, PrivateKey, PublicKey, Signer
from tether.protocol.machine import Event, StateMachine, Step, rule
from tether.protocol.messages import (
    NONCE_SIZE,
    PairAccept,
    PairChallenge,
    PairConfirm,
    PairRequest,
    PhoneEnrollment,
    VehicleHello,
    VehicleIdentity,
)

MIN_CODE_DIGITS = 8
_ZERO_NONCE = bytes(12)  # each sealing key is used exactly once
_LABEL_TRANSCRIPT = b"tether/2 pairing transcript"
_LABEL_KEYS = b"tether/2 pairing keys"
_LABEL_PHONE_SIG = b"tether/2 pairing phone"
_LABEL_VEHICLE_SIG = b"tether/2 pairing vehicle"
# SPAKE2+ parameters (§5): the transcript's context and identities, and the code's PBKDF. The
# code lives minutes and is spent after one pairing, and SPAKE2+ gives an eavesdropper nothing to
# test offline; the PBKDF only slows a search of a stolen verifier record within that lifetime.
PAKE_IDS = spake2plus.Ids(
    context=b"tether/2 pairing", prover=b"tether/2 phone", verifier=b"tether/2 vehicle"
)
PBKDF_SALT = b"tether/2 pairing code"
PBKDF_ITERATIONS = 20_000


def check_code(code: str) -> str:
    """Return ``code`` if it is a valid pairing code (8 or more ASCII digits)."""
    if len(code) < MIN_CODE_DIGITS or not code.isascii() or not code.isdigit():
        raise PairingError(
            f"a pairing code is at least {MIN_CODE_DIGITS} digits", code=WireCode.INVALID_CODE
        )
    return code


@functools.lru_cache(maxsize=8)
def code_secret(code: str) -> spake2plus.ProverSecret:
    """``w0`` and ``w1`` from a pairing code: PBKDF2 over RFC 9383's PBKDF input (§5).

    Memoised: the car derives its verifier once per code, not once per (possibly hostile) attempt.
    """
    material = crypto.pbkdf2(
        spake2plus.password_input(check_code(code).encode("ascii"), PAKE_IDS),
        salt=PBKDF_SALT,
        iterations=PBKDF_ITERATIONS,
        length=80,
    )
    return spake2plus.split_w(material)


def _scalar(entropy: Entropy) -> int:
    """A fresh SPAKE2+ scalar in [1, order), drawn as an ephemeral private key is."""
    return int.from_bytes(entropy.new_private_key().scalar(), "big")


@dataclasses.dataclass(frozen=True, slots=True)
class _PairingKeys:
    transcript: bytes
    confirm_phone: bytes
    confirm_vehicle: bytes
    seal_phone: bytes
    seal_vehicle: bytes


def _derive(greeting: bytes, outcome: spake2plus.Outcome) -> _PairingKeys:
    th = crypto.sha256(_LABEL_TRANSCRIPT + greeting + outcome.share_p + outcome.share_v)
    okm = crypto.hkdf(outcome.shared_key, salt=th, info=_LABEL_KEYS, length=64)
    return _PairingKeys(th, outcome.confirm_p, outcome.confirm_v, okm[:32], okm[32:])


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CodeState:
    """What the vehicle's store knows about the pairing code when an attempt starts."""

    code: str
    expires_at: float
    used: bool
    failures: int
    max_failures: int = 5


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PhoneEnrolled(Event):
    """Vehicle event: a phone proved the code; persist it as an owner key before flushing."""

    public_key: PublicKey
    name: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class VehiclePaired(Event):
    """Phone event: the vehicle proved the code and its identity; store it as this car's key."""

    vehicle_key: PublicKey
    vehicle_name: str


class PairingState(enum.Enum):
    START = "start"
    AWAIT_GREETING = "await_greeting"
    SENT_REQUEST = "sent_request"
    SENT_CHALLENGE = "sent_challenge"
    SENT_CONFIRM = "sent_confirm"
    DONE = "done"
    FAILED = "failed"


_S = PairingState


class PhonePairing(StateMachine[PairingState]):
    """The phone's side of owner pairing."""

    FAILED: ClassVar = _S.FAILED
    DONE: ClassVar = _S.DONE

    def __init__(self, *, code: str, endpoint_key: PrivateKey, name: str, entropy: Entropy) -> None:
        super().__init__(_S.START)
        self._pake = spake2plus.Prover(code_secret(code), PAKE_IDS, _scalar(entropy))
        self._endpoint_key = endpoint_key
        self._name = name
        self._keys: _PairingKeys | None = None
        self._greeting = b""

    def start(self) -> None:
        """Arm the machine: the phone speaks only after the car's greeting (§4)."""
        if self.state is not _S.START:
            raise LocalProtocolError("pairing already started")
        self.state = _S.AWAIT_GREETING

    def _on_greeting(self, msg: VehicleHello, now: float) -> Step:
        self._greeting = msg.nonce  # bound into TH, as everything the car sent
        self._send(PairRequest(share=self._pake.share))
        return [], _S.SENT_REQUEST

    def _on_challenge(self, msg: PairChallenge, now: float) -> Step:
        keys = _derive(self._greeting, self._pake.finish(msg.share))
        self._keys = keys
        enrollment = PhoneEnrollment(
            public_key=self._endpoint_key.public_key.encoded,
            name=self._name,
            signature=self._endpoint_key.sign(_LABEL_PHONE_SIG + keys.transcript),
        )
        sealed = Aead(keys.seal_phone).seal(_ZERO_NONCE, codec.encode(enrollment), keys.transcript)
        self._send(PairConfirm(confirm=keys.confirm_phone, sealed=sealed))
        return [], _S.SENT_CONFIRM

    def _on_accept(self, msg: PairAccept, now: float) -> Step:
        assert self._keys is not None
        keys = self._keys
        if not crypto.equal(msg.confirm, keys.confirm_vehicle):
            raise PairingError("the car did not confirm the code", code=WireCode.BAD_CONFIRMATION)
        plain = Aead(keys.seal_vehicle).open(_ZERO_NONCE, msg.sealed, keys.transcript)
        identity = codec.decode_as(plain, VehicleIdentity)
        vehicle_key = PublicKey(identity.public_key)
        vehicle_key.verify(
            identity.signature,
            _LABEL_VEHICLE_SIG + keys.transcript + self._endpoint_key.public_key.encoded,
        )
        return [VehiclePaired(vehicle_key=vehicle_key, vehicle_name=identity.name)], _S.DONE

    TRANSITIONS: ClassVar = {
        (_S.AWAIT_GREETING, VehicleHello): rule(_on_greeting, _S.SENT_REQUEST),
        (_S.SENT_REQUEST, PairChallenge): rule(_on_challenge, _S.SENT_CONFIRM),
        (_S.SENT_CONFIRM, PairAccept): rule(_on_accept, _S.DONE),
    }


class VehiclePairing(StateMachine[PairingState]):
    """The vehicle's side of owner pairing; the caller supplies and persists the code's state.

    ``reserve_guess`` is the caller's atomic, durable "spend one guess" (it returns the guesses
    left after this one, or raises :class:`PairingError` when none is left); it is called once per
    PairConfirm, before the confirmation is tested, so the bound holds whatever the concurrency.
    """

    FAILED: ClassVar = _S.FAILED
    DONE: ClassVar = _S.DONE

    def __init__(
        self,
        *,
        code: CodeState | None,
        vehicle_key: Signer,
        name: str,
        entropy: Entropy,
        reserve_guess: Callable[[], int],
        greeting: bytes | None = None,
    ) -> None:
        """``greeting``: the nonce of the VehicleHello the caller already sent on this connection
        (the agent greets before it knows what the phone wants); without it the machine draws
        one and queues the greeting itself."""
        super().__init__(_S.START)
        if greeting is None:
            greeting = entropy.random_bytes(NONCE_SIZE)
            self._send(VehicleHello(nonce=greeting))
        self._greeting = greeting
        self._reserve_guess = reserve_guess
        self._code = code
        self._vehicle_key = vehicle_key
        self._name = name
        self._entropy = entropy
        self._keys: _PairingKeys | None = None

    def _on_request(self, msg: PairRequest, now: float) -> Step:
        code = self._code
        if code is None or code.used:
            raise PairingError("no pairing code is active on this car", code=WireCode.NO_CODE)
        if code.failures >= code.max_failures:
            raise PairingError(
                "pairing is locked after too many wrong codes; show a new code on the car",
                code=WireCode.PAIRING_LOCKED,
            )
        if now >= code.expires_at:
            raise PairingError("the pairing code has expired", code=WireCode.CODE_EXPIRED)
        pake = spake2plus.Verifier(
            code_secret(code.code).verifier(), PAKE_IDS, _scalar(self._entropy)
        )
        self._keys = _derive(self._greeting, pake.finish(msg.share))
        self._send(PairChallenge(share=pake.share))
        return [], _S.SENT_CHALLENGE

    def _on_confirm(self, msg: PairConfirm, now: float) -> Step:
        assert self._keys is not None
        keys = self._keys
        # The guess is spent (atomically, by the caller's store) before it is tested: the state
        # read at PairRequest is no bound when many attempts are in flight at once.
        left = self._reserve_guess()
        if not crypto.equal(msg.confirm, keys.confirm_phone):
            if left == 0:
                raise PairingError(
                    "wrong pairing code; no tries left: pairing is locked until the car shows a"
                    " new code",
                    code=WireCode.WRONG_CODE,
                )
            tries = "1 try" if left == 1 else f"{left} tries"
            raise PairingError(f"wrong pairing code; {tries} left", code=WireCode.WRONG_CODE)
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
        self._send(PairAccept(confirm=keys.confirm_vehicle, sealed=sealed))
        return [PhoneEnrolled(public_key=phone_key, name=enrollment.name)], _S.DONE

    TRANSITIONS: ClassVar = {
        (_S.START, PairRequest): rule(_on_request, _S.SENT_CHALLENGE),
        (_S.SENT_CHALLENGE, PairConfirm): rule(_on_confirm, _S.DONE),
    }
