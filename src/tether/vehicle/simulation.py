"""The simulated world behind the ranging interfaces: physics, and the attackers on it.

:class:`SimulatedRanger` backs the virtual car: anchor positions, the phone's position, the speed
of light, the phone's reply delay, timing noise, and attackers that relay (extra path and
processing delay) or answer early by guessing. :class:`SimulatedRangers` is ``--ranger sim``:
one per phone, placed and attacked by name (`tether vehicle sim walk/attack`). None of it runs in
a car with real radios.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import random
from collections.abc import Callable, Sequence

from tether.protocol import ranging
from tether.protocol.ranging import SPEED_OF_LIGHT, Measurement, Round
from tether.vehicle.ranging import CAR_ANCHORS, Anchor

NS_PER_M = 1e9 / SPEED_OF_LIGHT  # ~3.34 ns per metre


@dataclasses.dataclass(slots=True)
class Relay:
    """A relay attack: stations next to the car and the phone, joined by ``extra_path_m``."""

    extra_path_m: float
    processing_ns: float = 100.0


@dataclasses.dataclass(slots=True)
class EarlyAnswer:
    """An attacker next to the car who answers before each challenge arrives, by guessing."""

    distance_m: float = 0.3
    bits: int = ranging.RESPONSE_BITS


@dataclasses.dataclass(slots=True)
class SimulatedRanger:
    """Physics for the virtual car: positions in metres, time in nanoseconds.

    ``rng`` drives the physics only (noise, the attackers' guesses); never the protocol's secrets.
    """

    phone: tuple[float, float]
    rng: random.Random
    anchors: Sequence[Anchor] = CAR_ANCHORS
    noise_ns: float = 0.3  # ~4.5 cm of one-sigma noise per timestamp, as good UWB chips
    reply_ns: float = 250_000.0  # the phone's turnaround, which it reports
    attacker: Relay | EarlyAnswer | None = None
    #: Challenges and nonces: the OS CSPRNG, as on a real car; tests pass a seeded source.
    secrets_source: Callable[[int], bytes] = os.urandom

    def move(self, x: float, y: float) -> None:
        self.phone = (x, y)

    def _distance(self, anchor: Anchor) -> float:
        return math.hypot(self.phone[0] - anchor.x, self.phone[1] - anchor.y)

    def measure(
        self, key: bytes, *, nonce: bytes | None = None, reply_ns: float | None = None
    ) -> dict[str, Measurement]:
        """Every anchor; ``nonce`` and ``reply_ns`` come from the session's ranging setup."""
        if reply_ns is not None:
            self.reply_ns = reply_ns
        return {
            anchor.name: self.measure_anchor(
                key,
                anchor,
                nonce=ranging.anchor_nonce(nonce, k) if nonce is not None else None,
            )
            for k, anchor in enumerate(self.anchors)
        }

    def measure_anchor(
        self,
        key: bytes,
        anchor: Anchor,
        *,
        bits: int = ranging.RESPONSE_BITS,
        rounds: int = ranging.ROUNDS,
        nonce: bytes | None = None,
    ) -> Measurement:
        nonce = nonce if nonce is not None else self.secrets_source(ranging.NONCE_SIZE)
        attacker = self.attacker
        done: list[Round] = []
        for index in range(rounds):
            challenge = self.secrets_source(1)[0]
            reply = self.reply_ns + self.rng.gauss(0, self.noise_ns)
            if isinstance(attacker, EarlyAnswer):
                # It cannot wait for the challenge: it pre-asked the phone with a guess, or guesses.
                guess = self.rng.randrange(256)
                answer = (
                    ranging.response(key, nonce, index, challenge, bits=bits)
                    if guess == challenge
                    else self.rng.randrange(2**bits)
                )
                flight = 2 * attacker.distance_m * NS_PER_M
            else:
                answer = ranging.response(key, nonce, index, challenge, bits=bits)
                path = self._distance(anchor)
                extra = 0.0
                if isinstance(attacker, Relay):
                    path += attacker.extra_path_m
                    extra = 2 * attacker.processing_ns
                flight = 2 * path * NS_PER_M + extra
            round_trip = flight + reply + self.rng.gauss(0, self.noise_ns) * math.sqrt(2)
            done.append(
                Round(
                    challenge=challenge,
                    answer=answer,
                    round_trip_ns=round_trip,
                    reply_ns=self.reply_ns,
                )
            )
        return ranging.verify(key, nonce, done, bits=bits, expected_rounds=rounds)


class Place(enum.StrEnum):
    """Where `tether vehicle sim walk --to` puts a simulated phone."""

    DOOR = "door"  # 0.65 m from the driver door
    CABIN = "cabin"  # in the driver's seat
    AWAY = "away"  # 30 m off


PLACE_XY = {Place.DOOR: (-1.6, 0.4), Place.CABIN: (-0.3, 0.3), Place.AWAY: (0.0, 30.0)}


class Attack(enum.StrEnum):
    """What `tether vehicle sim attack` puts between the car and a simulated phone."""

    NONE = "none"
    RELAY = "relay"  # the phone is away; stations at the car and the phone forward everything
    EARLY = "early"  # a device at the car answers each challenge before it arrives


class SimulatedRangers:
    """``--ranger sim``: every phone a :class:`SimulatedRanger`, placed and attacked by name.

    A phone not placed yet starts where the last "everyone" walk left them (away at first).
    ``rng`` drives the physics only; challenges and nonces come from the OS CSPRNG.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random(os.urandom(8))  # noqa: S311 - physics noise only
        self._phones: dict[str, SimulatedRanger] = {}
        self._place = Place.AWAY
        self._attack = Attack.NONE

    def for_phone(self, key_id: str) -> SimulatedRanger:
        phone = self._phones.get(key_id)
        if phone is None:
            phone = SimulatedRanger(phone=PLACE_XY[self._place], rng=self._rng)
            self._apply(phone, self._place, self._attack)
            self._phones[key_id] = phone
        return phone

    def _chosen(self, key_prefix: str) -> list[SimulatedRanger]:
        return [r for k, r in self._phones.items() if k.startswith(key_prefix.lower())]

    @staticmethod
    def _apply(phone: SimulatedRanger, place: Place, attack: Attack) -> None:
        phone.move(*PLACE_XY[place])
        if attack is Attack.RELAY:
            phone.move(*PLACE_XY[Place.AWAY])  # the real phone stays away; the relay fakes near
            phone.attacker = Relay(extra_path_m=1.0)
        elif attack is Attack.EARLY:
            phone.move(*PLACE_XY[Place.AWAY])
            phone.attacker = EarlyAnswer()
        else:
            phone.attacker = None

    def walk(self, to: Place, key_prefix: str = "") -> int:
        """Put the phones of keys starting with ``key_prefix`` (all: "") at ``to``; how many."""
        if not key_prefix:
            self._place = to
        chosen = self._chosen(key_prefix)
        for phone in chosen:
            phone.move(*PLACE_XY[to])
        return len(chosen)

    def attack(self, attack: Attack, key_prefix: str = "") -> int:
        """Start (or with NONE end) an attack on the chosen phones' ranging; how many."""
        if not key_prefix:
            self._attack = attack
        chosen = self._chosen(key_prefix)
        for phone in chosen:
            self._apply(phone, self._place if attack is Attack.NONE else Place.DOOR, attack)
        return len(chosen)
