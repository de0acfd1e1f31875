"""VSS signal names every side reads (car, phone, server), and how a position is shown."""

from __future__ import annotations

from collections.abc import Mapping

LATITUDE = "Vehicle.CurrentLocation.Latitude"
LONGITUDE = "Vehicle.CurrentLocation.Longitude"


def position(signals: Mapping[str, object]) -> str | None:
    """``"48.13715, 11.57549"`` from a state's latitude and longitude; None if it has none."""
    lat, lon = signals.get(LATITUDE), signals.get(LONGITUDE)
    if type(lat) not in (int, float) or type(lon) not in (int, float):
        return None
    assert isinstance(lat, int | float) and isinstance(lon, int | float)
    return f"{lat:.5f}, {lon:.5f}"
