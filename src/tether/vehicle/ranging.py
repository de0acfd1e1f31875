"""Ranging for the car: anchors, a physical simulation behind the ranging interface, and zones.

The :class:`Ranger` interface measures the distance from each of the car's anchors to the phone of
one session. :class:`SimulatedRanger` backs the virtual car: anchor positions, the phone's
position, the speed of light, the phone's reply delay, timing noise, and attackers that relay
(extra path and processing delay) or answer early by guessing. Real UWB hardware plugs in behind
the same interface. :func:`locate` turns per-anchor distances into a zone: inside the cabin, at a
door, or away.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import random
from collections.abc import Callable, Sequence
from typing import Protocol

from tether.protocol import ranging
from tether.protocol.ranging import SPEED_OF_LIGHT, Measurement, Round

NS_PER_M = 1e9 / SPEED_OF_LIGHT  # ~3.34 ns per metre


@dataclasses.dataclass(frozen=True, slots=True)
class Anchor:
    """A ranging antenna on the car, in metres from the car's centre (x: right, y: forward)."""

    name: str
    x: float
    y: float
    door: bool = False


#: A mid-size car, 4.6 m by 1.8 m: four door anchors, one in the cabin, one at the rear.
CAR_ANCHORS = (
    Anchor("driver door", -0.95, 0.4, door=True),
    Anchor("passenger door", 0.95, 0.4, door=True),
    Anchor("rear left door", -0.95, -0.6, door=True),
    Anchor("rear right door", 0.95, -0.6, door=True),
    Anchor("cabin", 0.0, 0.0),
    Anchor("trunk", 0.0, -2.3),
)
CABIN = (-0.8, 0.8, -1.4, 1.4)  # x_min, x_max, y_min, y_max, metres
DOOR_RANGE_M = 2.0


class Zone(enum.Enum):
    INSIDE = "inside"
    DOOR = "door"
    AWAY = "away"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """Where the phone is, from the anchors' verified distances."""

    zone: Zone
    distances: dict[str, float]
    nearest_door: str | None
    door_distance: float | None

    @property
    def closest(self) -> float:
        return min(self.distances.values()) if self.distances else math.inf


class Ranger(Protocol):
    """Measures one session's phone from every anchor (verified, or refused)."""

    def measure(
        self, key: bytes, *, nonce: bytes | None = None, reply_ns: float | None = None
    ) -> dict[str, Measurement]: ...


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


def locate(
    measurements: dict[str, Measurement], anchors: Sequence[Anchor] = CAR_ANCHORS
) -> Location | None:
    """The phone's zone from verified distances; None when any anchor refused (fail closed)."""
    if not measurements or not all(
        m.ok and m.distance_m is not None for m in measurements.values()
    ):
        return None
    distances = {
        name: float(m.distance_m) for name, m in measurements.items() if m.distance_m is not None
    }
    position = _multilaterate(distances, anchors)
    x_min, x_max, y_min, y_max = CABIN
    doors = [(distances[a.name], a.name) for a in anchors if a.door and a.name in distances]
    door_distance, nearest = min(doors) if doors else (math.inf, None)
    if position is not None and x_min <= position[0] <= x_max and y_min <= position[1] <= y_max:
        zone = Zone.INSIDE
    elif door_distance <= DOOR_RANGE_M:
        zone = Zone.DOOR
    else:
        zone = Zone.AWAY
    return Location(
        zone=zone,
        distances=distances,
        nearest_door=nearest,
        door_distance=door_distance if doors else None,
    )


def _multilaterate(
    distances: dict[str, float], anchors: Sequence[Anchor]
) -> tuple[float, float] | None:
    """Least-squares position from three or more anchors (linearised against the first)."""
    known = [(a, distances[a.name]) for a in anchors if a.name in distances]
    if len(known) < 3:
        return None
    (a0, d0), rest = known[0], known[1:]
    rows = [
        (2 * (a.x - a0.x), 2 * (a.y - a0.y), d0**2 - d**2 + a.x**2 - a0.x**2 + a.y**2 - a0.y**2)
        for a, d in rest
    ]
    sxx = sum(r[0] * r[0] for r in rows)
    sxy = sum(r[0] * r[1] for r in rows)
    syy = sum(r[1] * r[1] for r in rows)
    sxb = sum(r[0] * r[2] for r in rows)
    syb = sum(r[1] * r[2] for r in rows)
    det = sxx * syy - sxy * sxy
    if abs(det) < 1e-9:
        return None
    return (syy * sxb - sxy * syb) / det, (sxx * syb - sxy * sxb) / det


class Rangers(Protocol):
    """The car's ranging radios: one :class:`Ranger` per phone (a UWB chip holds one session per
    phone). The agent asks for a phone's ranger by key id once the session's setup is done."""

    def for_phone(self, key_id: str) -> Ranger: ...


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
