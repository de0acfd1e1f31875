"""Ranging for the car: its anchors, the ranging interfaces, and zones.

The :class:`Ranger` interface measures the distance from each of the car's anchors to the phone of
one session; :class:`Rangers` hands out one per phone. Real UWB hardware plugs in behind them, and
so does the simulation (``vehicle/simulation.py``, for the virtual car, the demo and tests).
:func:`locate` turns per-anchor distances into a zone: inside the cabin, at a door, or away.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence
from typing import Protocol

from tether.protocol.ranging import Measurement


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
