"""Secure ranging (docs/protocol.md §13): distance bounding keyed from the session, as UWB STS is.

After a transaction, car and phone derive a ranging key from the session. For one measurement the
car sends a fresh nonce inside the session; then, in the timed phase, it sends ``ROUNDS`` random
one-byte challenges and the phone answers each at once with one byte that only the key holder can
compute: ``HMAC(k_rng, nonce || round || challenge)[0]``. The car times every round trip; the
phone reports (inside the session) how long it held each challenge. Distance is
``c * (round trip - reply time) / 2``: a relay adds path and processing time, so it can only
lengthen the distance; an attacker who answers early, before the challenge arrives, must guess.

Early-answer bound: per round the attacker either guessed the challenge when it pre-asked the phone
(2^-8) or guesses the answer (2^-8), so succeeds with p = 2^-8 + (1 - 2^-8) 2^-8 < 2^-7; all five
rounds: p^5 < 2^-35, below the 2^-32 target. (The tests check this formula statistically at
reduced widths, where it can be measured.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from tether.errors import WireCode
from tether.protocol import crypto

SPEED_OF_LIGHT = 299_792_458.0  # m/s
ROUNDS = 5
RESPONSE_BITS = 8
NONCE_SIZE = 16
_LABEL = b"tether/2 ranging"


def ranging_key(exporter: bytes) -> bytes:
    """The session's ranging key (the session exporter, narrowed to this use)."""
    return crypto.hkdf(exporter, salt=b"", info=_LABEL + b" key", length=32)


def anchor_nonce(nonce: bytes, anchor: int) -> bytes:
    """Each anchor's own nonce, from the one the car sent in the session (no answer is reused)."""
    return crypto.sha256(_LABEL + b" anchor" + nonce + bytes([anchor]))[:NONCE_SIZE]


def response(
    key: bytes, nonce: bytes, index: int, challenge: int, *, bits: int = RESPONSE_BITS
) -> int:
    """What the key holder answers to ``challenge`` in round ``index``."""
    digest = crypto.mac(key, _LABEL + nonce + bytes([index, challenge]))
    return digest[0] >> (8 - bits)


CHALLENGE_BITS = 8


def early_answer_success(bits: int = RESPONSE_BITS, rounds: int = ROUNDS) -> float:
    """The probability that an attacker without the key passes every round by answering early.

    Per round it either guessed the (8-bit) challenge when it pre-asked the phone, or it guesses
    the ``bits``-bit answer.
    """
    p = 2.0**-CHALLENGE_BITS + (1 - 2.0**-CHALLENGE_BITS) * 2.0**-bits
    return p**rounds


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Round:
    """One timed exchange as the car saw it, and the reply time the phone reported for it."""

    challenge: int
    answer: int
    round_trip_ns: float
    reply_ns: float


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """A verified distance, or the reason there is none."""

    distance_m: float | None
    ok: bool
    reason: str = ""


def verify(
    key: bytes,
    nonce: bytes,
    rounds: Sequence[Round],
    *,
    bits: int = RESPONSE_BITS,
    expected_rounds: int = ROUNDS,
) -> Measurement:
    """Check every answer; the distance is the largest of the rounds' (never the smallest)."""
    if len(rounds) != expected_rounds:
        return Measurement(distance_m=None, ok=False, reason=WireCode.WRONG_ROUND_COUNT)
    distances = []
    for index, r in enumerate(rounds):
        if not 0 <= r.challenge < 256 or r.answer != response(
            key, nonce, index, r.challenge, bits=bits
        ):
            return Measurement(distance_m=None, ok=False, reason=WireCode.WRONG_ANSWER)
        if r.reply_ns < 0 or r.round_trip_ns < r.reply_ns:
            return Measurement(distance_m=None, ok=False, reason=WireCode.IMPOSSIBLE_TIMING)
        distances.append(SPEED_OF_LIGHT * (r.round_trip_ns - r.reply_ns) * 1e-9 / 2)
    return Measurement(distance_m=max(distances), ok=True)
