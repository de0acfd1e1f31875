"""The Body interface and the VSS signal names every body reports its state with."""

from __future__ import annotations

from typing import Protocol

from tether.errors import TetherError
from tether.protocol.commands import Command
from tether.protocol.vss import LATITUDE, LONGITUDE

Signals = dict[str, bool | int | float | str]

# COVESA VSS signal names (VSS 4.x) that tether reads and writes.
DOORS = (
    "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked",
    "Vehicle.Cabin.Door.Row1.PassengerSide.IsLocked",
    "Vehicle.Cabin.Door.Row2.DriverSide.IsLocked",
    "Vehicle.Cabin.Door.Row2.PassengerSide.IsLocked",
)
TRUNK_OPEN = "Vehicle.Body.Trunk.Rear.IsOpen"
TRUNK_LOCKED = "Vehicle.Body.Trunk.Rear.IsLocked"
POWER = "Vehicle.LowVoltageSystemState"  # OFF / ACC / ON / START
POWERTRAIN = "Vehicle.Powertrain.Type"
SPEED = "Vehicle.Speed"
HORN = "Vehicle.Body.Horn.IsActive"
HAZARD = "Vehicle.Body.Lights.Hazard.IsSignaling"
BATTERY = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"  # percent
#: The speed limiter a shared key's ``max_speed`` sets (km/h; 0 = off). VSS has no limiter
#: signal, so this lives in VSS's branch for private extensions.
SPEED_LIMIT = "Vehicle.Private.Tether.SpeedLimiter.MaxSpeed"

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
    "Vehicle.Cabin.Seat.Row1.DriverSide.Position": 0,
    "Vehicle.Cabin.Seat.Row1.DriverSide.Height": 0,
    "Vehicle.Cabin.Seat.Row1.DriverSide.Backrest.Recline": 0,
    "Vehicle.Cabin.HVAC.Station.Row1.Driver.Temperature": 21.0,
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


class BodyFault(TetherError):
    """The body could not carry out a command (bus down, actuator fault)."""

    code = "body_fault"


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
