"""How a position is read from a state: numbers only, anything else is no position."""

from __future__ import annotations

from tether.protocol import vss


def test_position_from_a_state() -> None:
    assert vss.position({vss.LATITUDE: 48.137154, vss.LONGITUDE: 11}) == "48.13715, 11.00000"
    assert vss.position({}) is None
    assert vss.position({vss.LATITUDE: 48.1}) is None
    assert vss.position({vss.LATITUDE: "48.1", vss.LONGITUDE: 11.5}) is None
    assert vss.position({vss.LATITUDE: True, vss.LONGITUDE: 11.5}) is None  # a bool is no number
