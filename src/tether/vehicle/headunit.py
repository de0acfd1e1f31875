"""The head unit: what the car's screen shows of a driver's data, in memory only, per session.

Nothing here is ever written to disk or logged: the screen holds the phone's answers while the
session lasts and drops them when it ends, the ignition goes off, the key is revoked or the phone
goes out of range. Observers (the console, `vehicle headunit`) are told what appears and when it
is forgotten.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any

from tether.protocol import vss


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Screen:
    """What one driver's phone let the car show."""

    key_id: str
    data: dict[str, Any]
    denied: tuple[str, ...]


class ScreenEventKind(enum.StrEnum):
    """What the screen did: showed a driver's data, or forgot it."""

    SHOWN = "shown"
    FORGOTTEN = "forgotten"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HeadUnitEvent:
    """The screen changed (for the console and `vehicle run`'s event stream)."""

    kind: ScreenEventKind
    key_id: str
    screen: Screen | None = None
    reason: str = ""


class HeadUnit:
    """Per-session screens, kept in this process's memory and nowhere else."""

    def __init__(self) -> None:
        self._screens: dict[str, Screen] = {}
        self.listeners: list[Callable[[HeadUnitEvent], None]] = []

    def show(self, key_id: str, data: dict[str, Any], denied: tuple[str, ...]) -> Screen:
        screen = Screen(key_id=key_id, data=data, denied=denied)
        self._screens[key_id] = screen
        self._tell(HeadUnitEvent(kind=ScreenEventKind.SHOWN, key_id=key_id, screen=screen))
        return screen

    def forget(self, key_id: str, reason: str) -> None:
        if self._screens.pop(key_id, None) is not None:
            self._tell(HeadUnitEvent(kind=ScreenEventKind.FORGOTTEN, key_id=key_id, reason=reason))

    def forget_all(self, reason: str) -> None:
        for key_id in list(self._screens):
            self.forget(key_id, reason)

    def screens(self) -> dict[str, Screen]:
        return dict(self._screens)

    def _tell(self, event: HeadUnitEvent) -> None:
        for listener in self.listeners:
            listener(event)


def profile_signals(profile: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """The VSS signals a driver profile sets (numbers only: positions and temperatures)."""
    seat = profile.get("seat", {}) if isinstance(profile.get("seat"), dict) else {}
    climate = profile.get("climate", {}) if isinstance(profile.get("climate"), dict) else {}
    signals: dict[str, bool | int | float | str] = {}
    for key, signal in (
        ("position", vss.SEAT_POSITION),
        ("height", vss.SEAT_HEIGHT),
        ("backrest", vss.SEAT_BACKREST),
    ):
        value = seat.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1000:
            signals[signal] = value
    temperature = climate.get("temperature")
    if (
        isinstance(temperature, int | float)
        and not isinstance(temperature, bool)
        and 10 <= temperature <= 35
    ):
        signals[vss.CABIN_TEMPERATURE] = temperature
    return signals
