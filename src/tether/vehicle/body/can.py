"""A body on a real CAN bus: python-can sends the frames a mapping file binds to each command.

The mapping (TOML) names a DBC file, the python-can bus settings, and for each command the frames
to send: a DBC message and signal values (numbers or the DBC's value names); signals not named are
zero, and a message may have a rolling counter. Everything is checked against the DBC when the
body is built, so a typo fails at start-up, not in the car park. The body mirrors the commanded
state (VSS names) in ``body.json`` like the virtual body does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import can
import cantools
import cantools.database
from cantools.database.errors import UnsupportedDatabaseFormatError

from tether.errors import BodyFault, UsageError
from tether.protocol.commands import Command
from tether.vehicle.body.base import DEFAULT_STATE, Signals, apply, for_disk, from_disk


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One frame to send: a DBC message and the physical values of its signals."""

    message: str
    signals: Mapping[str, int | float]


@dataclasses.dataclass(frozen=True, slots=True)
class SignalLink:
    """One VSS signal bound to a DBC signal: read from the bus, or written to it."""

    vss: str
    message: str
    signal: str
    write: bool


def _load_mapping(path: Path) -> tuple[Path, dict[str, Any], dict[str, str], dict[str, list[Any]]]:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read the CAN mapping {path}: {exc}") from exc
    if "dbc" not in raw or "bus" not in raw or "commands" not in raw:
        raise UsageError(f"{path}: a mapping needs 'dbc', [bus] and [[commands.NAME]] entries")
    return (
        path.parent / raw["dbc"],
        dict(raw["bus"]),
        dict(raw.get("counters", {})),
        raw["commands"],
    )


class CanBody:
    """Sends command frames on a CAN bus and mirrors the resulting state."""

    def __init__(
        self,
        bus: can.BusABC,
        db: cantools.database.can.Database,
        commands: Mapping[Command, list[Frame]],
        counters: Mapping[str, str],
        state_path: Path | None = None,
        *,
        links: tuple[SignalLink, ...] = (),
    ) -> None:
        self._bus = bus
        self._reads = {
            db.get_message_by_name(link.message).frame_id: link for link in links if not link.write
        }
        self._writes = {link.vss: link for link in links if link.write}
        self._db = db
        self._commands = commands
        self._counters = dict(counters)
        self._counts: dict[str, int] = dict.fromkeys(counters, 0)
        self._state_path = state_path
        self._state: Signals = dict(DEFAULT_STATE)
        if state_path is not None and state_path.exists():
            saved = json.loads(state_path.read_text())
            self._state.update(from_disk(saved))

    @classmethod
    def from_mapping(cls, path: Path, *, state_path: Path | None = None) -> CanBody:
        """Build from a mapping file; every message, signal and value is checked against the DBC."""
        dbc_path, bus_config, counters, raw_commands = _load_mapping(path)
        try:
            db = cantools.database.load_file(str(dbc_path))
        except (OSError, UnsupportedDatabaseFormatError) as exc:
            raise UsageError(f"cannot load the DBC file {dbc_path}: {exc}") from exc
        assert isinstance(db, cantools.database.can.Database)
        commands: dict[Command, list[Frame]] = {}
        for name, frames in raw_commands.items():
            try:
                command = Command(name)
            except ValueError:
                raise UsageError(f"{path}: unknown command {name!r}") from None
            commands[command] = [cls._check_frame(db, path, name, f) for f in frames]
        for message, signal in counters.items():
            cls._signal(db, path, message, signal)
        links = cls._links(db, path)
        try:
            bus = can.Bus(**bus_config)
        except (can.CanError, OSError, ValueError, TypeError) as exc:
            raise UsageError(f"cannot open the CAN bus {bus_config}: {exc}") from exc
        return cls(bus, db, commands, counters, state_path, links=links)

    @classmethod
    def _links(cls, db: cantools.database.can.Database, path: Path) -> tuple[SignalLink, ...]:
        raw = tomllib.loads(path.read_text()).get("signals", {})
        links = []
        for vss, spec in dict(raw).items():
            if vss not in DEFAULT_STATE:
                raise UsageError(f"{path}: [signals] names {vss!r}, which tether does not use")
            if not isinstance(spec, dict) or spec.get("direction") not in ("read", "write"):
                raise UsageError(f"{path}: {vss} needs message, signal and direction read|write")
            message, signal = str(spec.get("message", "")), str(spec.get("signal", ""))
            cls._signal(db, path, message, signal)
            links.append(SignalLink(vss, message, signal, spec["direction"] == "write"))
        return tuple(links)

    @staticmethod
    def _signal(db: cantools.database.can.Database, path: Path, message: str, signal: str) -> Any:
        try:
            msg = db.get_message_by_name(message)
        except KeyError:
            raise UsageError(f"{path}: the DBC has no message {message!r}") from None
        try:
            return msg.get_signal_by_name(signal)
        except KeyError:
            raise UsageError(f"{path}: message {message!r} has no signal {signal!r}") from None

    @classmethod
    def _check_frame(
        cls, db: cantools.database.can.Database, path: Path, command: str, raw: Mapping[str, Any]
    ) -> Frame:
        message = raw.get("message")
        if not isinstance(message, str):
            raise UsageError(f"{path}: each frame of {command!r} needs a message name")
        values: dict[str, int | float] = {}
        for name, value in dict(raw.get("signals", {})).items():
            signal = cls._signal(db, path, message, name)
            if isinstance(value, str):
                choices = {str(v): k for k, v in (signal.choices or {}).items()}
                if value not in choices:
                    raise UsageError(
                        f"{path}: {message}.{name} has no value named {value!r}"
                        f" (known: {', '.join(sorted(choices))})"
                    )
                value = choices[value]
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise UsageError(f"{path}: {message}.{name} must be a number or a value name")
            low, high = signal.minimum, signal.maximum
            if (low is not None and value < low) or (high is not None and value > high):
                raise UsageError(f"{path}: {message}.{name} = {value} is outside [{low}, {high}]")
            values[name] = value
        return Frame(message, values)

    def state(self) -> Signals:
        """The mirrored state, with the signals the mapping reads taken from the bus just now."""
        if self._reads:
            for _ in range(256):  # what arrived since the last look; never blocks
                frame = self._bus.recv(0)
                if frame is None:
                    break
                link = self._reads.get(frame.arbitration_id)
                if link is not None:
                    with contextlib.suppress(ValueError, KeyError, cantools.database.DecodeError):
                        decoded = self._db.decode_message(frame.arbitration_id, bytes(frame.data))
                        value = decoded[link.signal] if isinstance(decoded, dict) else None
                        if isinstance(value, int | float):
                            self._state[link.vss] = float(value)
        return dict(self._state)

    def set(self, signals: Signals) -> None:
        """Mirror signals (profile, limiter); those the mapping writes go out on the bus."""
        self._state.update(signals)
        for vss, value in signals.items():
            link = self._writes.get(vss)
            if link is not None and isinstance(value, int | float):
                try:
                    self._bus.send(self._encode(Frame(link.message, {link.signal: value})), 1.0)
                except can.CanError as exc:
                    raise BodyFault(f"CAN send failed for {vss}: {exc}") from exc
        self._save()

    def _encode(self, frame: Frame) -> can.Message:
        msg = self._db.get_message_by_name(frame.message)
        values: dict[str, int | float] = {s.name: 0 for s in msg.signals}
        values.update(frame.signals)
        counter = self._counters.get(frame.message)
        if counter is not None:
            signal = msg.get_signal_by_name(counter)
            values[counter] = self._counts[frame.message]
            self._counts[frame.message] = (self._counts[frame.message] + 1) % (
                int(signal.maximum or 15) + 1
            )
        data = msg.encode(values)
        return can.Message(
            arbitration_id=msg.frame_id, data=data, is_extended_id=msg.is_extended_frame
        )

    async def execute(self, command: Command) -> Signals:
        frames = self._commands.get(command)
        changed = apply(self._state, command)
        if frames is None:
            if changed:
                raise BodyFault(f"the CAN mapping has no frames for {command.value!r}")
            return {}
        try:
            for frame in frames:
                self._bus.send(self._encode(frame), timeout=1.0)
        except can.CanError as exc:
            raise BodyFault(f"CAN send failed for {command.value}: {exc}") from exc
        self._state.update(changed)
        self._save()
        return changed

    def _save(self) -> None:
        if self._state_path is None:
            return
        tmp = self._state_path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(for_disk(self._state), f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._state_path)

    async def close(self) -> None:
        self._bus.shutdown()
