"""Hands-free policy: passive entry at a door, walk-away lock, start only from inside the cabin.

Decisions come from verified ranging only (docs/protocol.md §13): a phone that cannot be measured
counts as away, so everything fails closed. A reading names a key and a place, never rights: which
keys may unlock is the car's authority's answer (``may_unlock``), from its own store. Pure: the
agent feeds it time and locations, and its authority carries out and audits the decisions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from tether.protocol.commands import Command, DenialReason
from tether.vehicle.ranging import Location, Zone

PASSIVE_ENTRY_M = 2.0
WALK_AWAY_M = 5.0
WALK_AWAY_S = 3.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Something the car should do by itself, and the distance that justified it."""

    action: str  # "unlock" or "lock"
    key_id: str
    distance_m: float | None
    where: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """One keyed phone's latest location (None: not measurable); the key's rights are the car's."""

    key_id: str
    location: Location | None


class HandsFree:
    """Keeps the little state the policy needs: since when every phone has been away."""

    def __init__(self) -> None:
        self._away_since: float | None = None

    def observe(
        self,
        now: float,
        readings: list[Reading],
        *,
        locked: bool,
        may_unlock: Callable[[Reading], bool],
    ) -> list[Decision]:
        """What to do now; ``readings`` are of keys the car backs, ``may_unlock`` asks the car."""
        decisions: list[Decision] = []
        if locked:
            for r in readings:
                loc = r.location
                if loc is not None and at_door(loc) and may_unlock(r):
                    decisions.append(
                        Decision(
                            action="unlock",
                            key_id=r.key_id,
                            distance_m=loc.door_distance,
                            where=loc.nearest_door or "door",
                        )
                    )
                    break
        if all(r.location is None or r.location.closest > WALK_AWAY_M for r in readings):
            if self._away_since is None:
                self._away_since = now
            elif not locked and now - self._away_since >= WALK_AWAY_S and readings:
                nearest = min(
                    (r.location.closest for r in readings if r.location is not None), default=None
                )
                decisions.append(
                    Decision(
                        action="lock",
                        key_id=readings[0].key_id,
                        distance_m=nearest,
                        where=f"every phone beyond {WALK_AWAY_M:.0f} m for {WALK_AWAY_S:.0f} s",
                    )
                )
        else:
            self._away_since = None
        return decisions


def at_door(location: Location) -> bool:
    """Close enough to a door for passive entry."""
    return location.door_distance is not None and location.door_distance <= PASSIVE_ENTRY_M


def placed_for(command: Command, location: Location | None) -> DenialReason | None:
    """Where a phone must be measured: in the cabin to start, at a door to open by itself."""
    if location is None:
        return DenialReason.RANGING_REQUIRED
    if command is Command.START:
        return None if location.zone is Zone.INSIDE else DenialReason.RANGING_REQUIRED
    return None if at_door(location) else DenialReason.RANGING_REQUIRED
