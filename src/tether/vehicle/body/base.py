"""The Body interface and the VSS signal names every body reports its state with."""

from __future__ import annotations

from typing import Protocol

from tether.protocol.commands import Command
from tether.protocol.vss import (
    BATTERY,
    CABIN_TEMPERATURE,
    DOORS,
    HAZARD,
    HORN,
    LATITUDE,
    LONGITUDE,
    POWER,
    POWERTRAIN,
    SEAT_BACKREST,
    SEAT_HEIGHT,
    SEAT_POSITION,
    SPEED,
    SPEED_LIMIT,
    TRUNK_LOCKED,
    TRUNK_OPEN,
)

Signals = dict[str, bool | int | float | str]

DEFAULT_STATE: Signals = {
    **dict.fromkeys(DOORS, True),
    TRUNK_OPEN: False,
    TRUNK_LOCKED: True,
    POWER: "OFF",
    POWERTRAIN: "ELECTRIC",
    SPEED: 0.0,
    LATITUDE: 48.137154,
    LONGITUDE: 11.576124,
    HORN: False,
    HAZARD: False,
    BATTERY: 80.0,
    SPEED_LIMIT: 0,
}

#: What a driver's profile sets: personal, so a body never writes these to disk (the saved state
#: holds these neutral values) and the agent puts them back when the driver's session ends.
PERSONAL: Signals = {
    SEAT_POSITION: 0,
    SEAT_HEIGHT: 0,
    SEAT_BACKREST: 0,
    CABIN_TEMPERATURE: 21.0,
}
DEFAULT_STATE.update(PERSONAL)


def for_disk(state: Signals) -> Signals:
    """The state as a body may save it: personal signals at their neutral values."""
    return {**state, **PERSONAL}


def from_disk(saved: object) -> Signals:
    """The known, non-personal signals of a saved state (an old file's seat is not restored)."""
    if not isinstance(saved, dict):
        return {}
    return {k: v for k, v in saved.items() if k in DEFAULT_STATE and k not in PERSONAL}


def apply(state: Signals, command: Command) -> Signals:
    """The signals a command changes, given the current state (shared by every body)."""
    if command is Command.LOCK:
        return {**dict.fromkeys(DOORS, True), TRUNK_LOCKED: True}
    if command is Command.UNLOCK:
        return {**dict.fromkeys(DOORS, False), TRUNK_LOCKED: False}
    if command is Command.TRUNK:
        return {TRUNK_LOCKED: False, TRUNK_OPEN: True}
    if command is Command.START:
        return {POWER: "ON"}
    if command is Command.STOP:
        return {POWER: "OFF"}
    if command is Command.HONK:
        return {HORN: False, HAZARD: False}  # a short pulse: on, then off again
    return {}  # LOCATE changes nothing


class Body(Protocol):
    """Carries out commands and reports the car's state by VSS names."""

    def state(self) -> Signals:
        """A copy of the current signals."""

    async def execute(self, command: Command) -> Signals:
        """Carry out ``command``; return the signals it changed. Raises BodyFault."""

    def set(self, signals: Signals) -> None:
        """Move actuators to these signal values (a driver profile's seat and climate)."""

    async def close(self) -> None:
        """Release the bus or files."""
