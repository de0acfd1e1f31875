"""Every COVESA VSS (4.x) signal name tether reads or writes, defined once; how a position shows."""

from __future__ import annotations

from collections.abc import Mapping

DRIVER_DOOR_LOCKED = "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"
DRIVER_DOOR_OPEN = "Vehicle.Cabin.Door.Row1.DriverSide.IsOpen"
DOORS = (
    DRIVER_DOOR_LOCKED,
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
LATITUDE = "Vehicle.CurrentLocation.Latitude"
LONGITUDE = "Vehicle.CurrentLocation.Longitude"
#: The speed limiter a shared key's ``max_speed`` sets (km/h; 0 = off). VSS has no limiter
#: signal, so this lives in VSS's branch for private extensions.
SPEED_LIMIT = "Vehicle.Private.Tether.SpeedLimiter.MaxSpeed"

# The driver's comfort settings: the head unit applies them from the phone's profile; they are
# personal data and never leave the car.
SEAT_POSITION = "Vehicle.Cabin.Seat.Row1.DriverSide.Position"
SEAT_HEIGHT = "Vehicle.Cabin.Seat.Row1.DriverSide.Height"
SEAT_BACKREST = "Vehicle.Cabin.Seat.Row1.DriverSide.Backrest.Recline"
CABIN_TEMPERATURE = "Vehicle.Cabin.HVAC.Station.Row1.Driver.Temperature"
COMFORT = (SEAT_POSITION, SEAT_HEIGHT, SEAT_BACKREST, CABIN_TEMPERATURE)


def position(signals: Mapping[str, object]) -> str | None:
    """``"48.13715, 11.57549"`` from a state's latitude and longitude; None if it has none."""
    lat, lon = signals.get(LATITUDE), signals.get(LONGITUDE)
    if type(lat) not in (int, float) or type(lon) not in (int, float):
        return None
    assert isinstance(lat, int | float) and isinstance(lon, int | float)
    return f"{lat:.5f}, {lon:.5f}"
