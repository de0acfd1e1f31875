"""Policy decisions and the two bodies (virtual, and CAN checked on python-can's virtual bus)."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path
from typing import Any

import can
import cantools
import pytest

from tether.errors import BodyFault, UsageError
from tether.protocol.commands import Command, DenialReason
from tether.protocol.credentials import Limits
from tether.protocol.crypto import DeterministicEntropy
from tether.protocol.vss import DOORS, POWER, SPEED, TRUNK_OPEN
from tether.vehicle.body.can import CanBody
from tether.vehicle.body.virtual import SAVE_DELAY, VirtualBody
from tether.vehicle.keystore import Endpoint
from tether.vehicle.policy import authorize

EXAMPLES = Path(__file__).parents[2] / "examples" / "can"
KEY = DeterministicEntropy(b"k").new_private_key().public_key
NO_LIMITS = Limits()


def endpoint(**changes: object) -> Endpoint:
    values: dict[str, object] = {
        "endpoint_id": KEY.key_id,
        "public_key": KEY,
        "name": "p",
        "role": "friend",
        "rights": frozenset({"unlock", "lock"}),
        "not_before": 100.0,
        "not_after": 200.0,
        "enrolled_at": 0.0,
        "revoked_seq": None,
        "ratchet": 0,
        "last_used": 0.0,
    }
    values.update(changes)
    return Endpoint(**values)  # type: ignore[arg-type]


def decide(
    e: Endpoint,
    command: Command,
    *,
    now: float = 150.0,
    speed: float = 0.0,
    hour: int = 12,
    weekday: int = 2,
    limits: Limits = NO_LIMITS,
) -> DenialReason | None:
    return authorize(
        dataclasses.replace(e, limits=limits),
        command,
        now=now,
        local_hour=hour,
        local_weekday=weekday,
        signals={SPEED: speed},
    )


@pytest.mark.parametrize(
    ("changes", "command", "kwargs", "expected"),
    [
        ({}, Command.UNLOCK, {}, None),
        ({}, Command.START, {}, DenialReason.NO_RIGHT),
        ({}, Command.TRUNK, {}, DenialReason.NO_RIGHT),
        ({"revoked_seq": 3}, Command.UNLOCK, {}, DenialReason.REVOKED),
        ({}, Command.UNLOCK, {"now": 99.0}, DenialReason.NOT_YET_VALID),
        ({}, Command.UNLOCK, {"now": 200.0}, DenialReason.EXPIRED),
        ({}, Command.UNLOCK, {"speed": 30.0}, DenialReason.VEHICLE_STATE),
        ({}, Command.LOCK, {"speed": 30.0}, None),
        (
            {"rights": frozenset({"drive"})},
            Command.STOP,
            {"speed": 50.0},
            DenialReason.VEHICLE_STATE,
        ),
        ({"rights": frozenset({"drive"})}, Command.START, {}, None),
        (
            {},
            Command.UNLOCK,
            {"hour": 23, "limits": Limits(hours=(7, 22))},
            DenialReason.OUTSIDE_HOURS,
        ),
        ({}, Command.UNLOCK, {"hour": 8, "limits": Limits(hours=(7, 22))}, None),
        ({}, Command.UNLOCK, {"hour": 1, "limits": Limits(hours=(22, 6))}, None),
        (
            {},
            Command.UNLOCK,
            {"hour": 12, "limits": Limits(hours=(22, 6))},
            DenialReason.OUTSIDE_HOURS,
        ),
        (
            {},
            Command.UNLOCK,
            {"weekday": 6, "limits": Limits(weekdays=frozenset(range(5)))},
            DenialReason.OUTSIDE_HOURS,
        ),
        ({"not_before": None, "not_after": None}, Command.UNLOCK, {"now": 1e12}, None),
    ],
)
def test_policy(
    changes: dict[str, object],
    command: Command,
    kwargs: dict[str, object],
    expected: DenialReason | None,
) -> None:
    assert decide(endpoint(**changes), command, **kwargs) == expected  # type: ignore[arg-type]


async def test_virtual_body_applies_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    body = VirtualBody(path)
    assert all(body.state()[d] for d in DOORS)
    changed = await body.execute(Command.UNLOCK)
    assert all(changed[d] is False for d in DOORS)
    await body.execute(Command.START)
    await body.execute(Command.TRUNK)
    assert await body.execute(Command.LOCATE) == {}
    await body.execute(Command.HONK)
    body.set({SPEED: 12.5})
    await asyncio.sleep(SAVE_DELAY * 2)  # saved shortly after the change, off the hot path
    again = VirtualBody(path)
    assert again.state()[POWER] == "ON" and again.state()[TRUNK_OPEN] is True
    assert again.state()[SPEED] == 12.5
    await again.execute(Command.LOCK)
    await again.close()  # close saves at once
    assert VirtualBody(path).state()[DOORS[0]] is True


def test_virtual_body_refuses_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_text("{not json")
    with pytest.raises(Exception, match="cannot read the body state"):
        VirtualBody(path)


@pytest.fixture
def mapping(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    for name in ("tether-demo.dbc", "mapping.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    path = tmp_path / "mapping.toml"
    path.write_text(
        path.read_text().replace('channel = "tether-demo"', f'channel = "t-{request.node.name}"')
    )
    return path


async def test_can_body_sends_the_mapped_frames(mapping: Path, tmp_path: Path) -> None:
    channel = f"t-{'test_can_body_sends_the_mapped_frames'}"
    db = cantools.database.load_file(str(tmp_path / "tether-demo.dbc"))
    assert isinstance(db, cantools.database.can.Database)
    listener = can.Bus(interface="virtual", channel=channel)
    body = CanBody.from_mapping(mapping, state_path=tmp_path / "body.json")
    try:
        await body.execute(Command.UNLOCK)
        await body.execute(Command.START)
        await body.execute(Command.HONK)
        frames = [listener.recv(1.0) for _ in range(4)]
        decoded: list[tuple[str, Any]] = [
            (
                db.get_message_by_frame_id(f.arbitration_id).name,
                db.decode_message(f.arbitration_id, bytes(f.data)),
            )
            for f in frames
            if f is not None
        ]
        assert decoded[0][0] == "BCM_Command" and str(decoded[0][1]["DoorLockRequest"]) == "Unlock"
        assert decoded[1][0] == "PCM_Command" and str(decoded[1][1]["PowerModeRequest"]) == "On"
        assert decoded[2][1]["HornRequest"] == 1 and decoded[3][1]["HornRequest"] == 0
        # the rolling counter of BCM_Command went 0, 1, 2
        assert [d[1]["AliveCounter"] for d in decoded if d[0] == "BCM_Command"] == [0, 1, 2]
        assert body.state()[POWER] == "ON"
        assert await body.execute(Command.LOCATE) == {}
    finally:
        await body.close()
        listener.shutdown()
    reopened_state = (tmp_path / "body.json").read_text()
    assert '"Vehicle.LowVoltageSystemState": "ON"' in reopened_state


async def test_can_body_without_a_mapping_for_a_command_faults(mapping: Path) -> None:
    text = mapping.read_text()
    mapping.write_text(text.split("[[commands.trunk]]")[0])
    body = CanBody.from_mapping(mapping)
    try:
        with pytest.raises(BodyFault, match="no frames for 'start'"):
            await body.execute(Command.START)
    finally:
        await body.close()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace('DoorLockRequest = "Lock"', 'DoorLockRequest = "Jam"'),
            "no value named",
        ),
        (lambda t: t.replace('DoorLockRequest = "Lock"', "DoorLockRequest = 9"), "outside"),
        (
            lambda t: t.replace('DoorLockRequest = "Lock"', "DoorLockRequest = true"),
            "must be a number",
        ),
        (lambda t: t.replace('DoorLockRequest = "Lock"', "NoSuchSignal = 1"), "no signal"),
        (lambda t: t.replace('message = "PCM_Command"', 'message = "Nope"', 1), "no message"),
        (lambda t: t.replace("[[commands.lock]]", "[[commands.fly]]"), "unknown command"),
        (
            lambda t: t.replace('dbc = "tether-demo.dbc"', 'dbc = "missing.dbc"'),
            "cannot load the DBC",
        ),
        (
            lambda t: t.replace('interface = "virtual"', 'interface = "no-such-bus"'),
            "cannot open the CAN bus",
        ),
        (lambda t: t.replace("[bus]", "[bux]"), "needs 'dbc'"),
        (lambda t: t + "\n[[[broken", "cannot read"),
        (
            lambda t: t.replace(
                'message = "BCM_Command"\nsignals = { DoorLockRequest = "Lock" }', "signals = {}"
            ),
            "needs a message",
        ),
    ],
)
def test_can_mapping_errors_are_clear(mapping: Path, edit: object, message: str) -> None:
    mapping.write_text(edit(mapping.read_text()))  # type: ignore[operator]
    with pytest.raises(UsageError, match=message):
        CanBody.from_mapping(mapping)


async def test_can_body_reads_speed_and_writes_the_limiter(mapping: Path, tmp_path: Path) -> None:
    """The mapping's [signals]: Vehicle.Speed comes from the bus, the limiter goes out on it."""
    channel = "t-test_can_body_reads_speed_and_writes_the_limiter"
    db = cantools.database.load_file(str(tmp_path / "tether-demo.dbc"))
    assert isinstance(db, cantools.database.can.Database)
    car_bus = can.Bus(interface="virtual", channel=channel)
    body = CanBody.from_mapping(mapping, state_path=tmp_path / "body.json")
    try:
        speed = db.get_message_by_name("ESP_Speed")
        car_bus.send(
            can.Message(arbitration_id=speed.frame_id, data=speed.encode({"VehicleSpeed": 97.5}))
        )
        await asyncio.sleep(0.05)
        assert body.state()["Vehicle.Speed"] == pytest.approx(97.5)
        body.set({"Vehicle.Private.Tether.SpeedLimiter.MaxSpeed": 80})
        frame = car_bus.recv(1.0)
        assert frame is not None
        decoded = db.decode_message(frame.arbitration_id, bytes(frame.data))
        assert db.get_message_by_frame_id(frame.arbitration_id).name == "PCM_SpeedLimit"
        assert decoded["MaxSpeed"] == 80  # type: ignore[call-overload]
    finally:
        await body.close()
        car_bus.shutdown()
