"""Every entry point that changes the car refuses a key its own store does not back.

Four keys that must not open or start the car: one it never enrolled, one whose window ended, one
the owner revoked, and one that may only lock. Each is tried at every door: a standard and a fast
session, early commands, a remote envelope, passive unlock at the door, the walk-away lock, and the
start button with the phone in the cabin. The car must not move, and the readings the caller
passes carry no rights at all: the car looks the key up itself.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest

from tether.errors import ProtocolError
from tether.phone.wallet import CarKey
from tether.protocol import remote
from tether.protocol.commands import Command, DenialReason
from tether.protocol.crypto import PrivateKey
from tether.protocol.vss import DOORS, POWER
from tether.vehicle.body.base import Signals
from tether.vehicle.hands_free import Reading
from tether.vehicle.ranging import Location, Zone

from .conftest import Rig

AT_DOOR = Location(
    zone=Zone.DOOR, distances={"driver door": 0.6}, nearest_door="driver door", door_distance=0.6
)
INSIDE = Location(zone=Zone.INSIDE, distances={"cabin": 0.3}, nearest_door=None, door_distance=1.1)
AWAY = Location(
    zone=Zone.AWAY, distances={"driver door": 40.0}, nearest_door=None, door_distance=None
)

#: (who, what the car answers a command they have no business running)
KEYS = [
    ("unknown", DenialReason.UNKNOWN_KEY),
    ("expired", DenialReason.EXPIRED),
    ("revoked", DenialReason.REVOKED),
    ("lock only", DenialReason.NO_RIGHT),
]


@dataclasses.dataclass
class Key:
    private: PrivateKey
    car: CarKey


def make_key(rig: Rig, who: str) -> Key:
    private = rig.entropy.new_private_key()
    now = rig.agent.now()
    if who != "unknown":
        every = frozenset({"unlock", "lock", "trunk", "drive", "locate"})
        rig.store.enroll(
            private.public_key,
            name=who,
            role="friend",
            rights=frozenset({"lock"}) if who == "lock only" else every,
            not_before=None,
            not_after=now - 60 if who == "expired" else None,
            now=now,
        )
    if who == "revoked":
        rig.store.revoke(private.public_key.key_id, seq=rig.store.revocation_seq() + 1, now=now)
    car = rig.wallet.add_car(
        name=who,
        vehicle_key=rig.store.identity.public_key,
        vehicle_name="Test car",
        address=rig.listener.address,
        endpoint_key=private,
        role="friend",
        now=now,
    )
    return Key(private, car)


def untouched(rig: Rig) -> bool:
    state = rig.body.state()
    return all(state[d] is True for d in DOORS) and state[POWER] == "OFF"


@pytest.mark.parametrize(("who", "reason"), KEYS)
async def test_every_entry_point_refuses_a_key_the_store_does_not_back(
    rig: Rig, who: str, reason: DenialReason
) -> None:
    await rig.pair()  # the owner exists: the car is not in its unpaired state
    key = make_key(rig, who)
    key_hex = key.private.public_key.key_id.hex()

    # Sessions, standard and fast, with early commands behind the proof.
    for fast in (False, True):
        if who in ("unknown", "revoked"):  # no session at all: the car does not know the key
            with pytest.raises(ProtocolError) as refused:
                await rig.run(key.car, Command.UNLOCK, Command.START, fast=fast)
            assert refused.value.code == "unknown_key"
            continue
        for outcome in await rig.run(key.car, Command.UNLOCK, Command.START, fast=fast):
            assert not outcome.result.ok
            assert outcome.result.reason in {reason.value, DenialReason.FAST_NOT_ALLOWED.value}
    assert untouched(rig)

    # A remote envelope through the server.
    envelope = remote.sign_envelope(
        key.private,
        vehicle_id=rig.store.vehicle_id,
        command=Command.UNLOCK,
        counter=1,
        now=int(rig.agent.now()),
    )
    result = remote.verify_result(
        await rig.agent.remote_command(envelope),
        vehicle_key=rig.store.identity.public_key,
        envelope_raw=envelope,
    )
    assert not result.ok
    assert untouched(rig)

    # Passive unlock at the driver door, and the start button with the phone in the cabin.
    assert await rig.agent.hands_free([Reading(key_id=key_hex, location=AT_DOOR)]) == []
    assert await rig.agent.push_button_start(Reading(key_id=key_hex, location=INSIDE)) is reason
    assert untouched(rig)
    audit = [(e.command, e.result, e.reason) for e in rig.store.audit_entries()]
    assert ("push-button start", "denied", reason.value) in audit


@pytest.mark.parametrize("who", ["unknown", "expired", "revoked", "lock only"])
async def test_only_a_key_that_may_lock_locks_the_car_walking_away(rig: Rig, who: str) -> None:
    owner = await rig.pair()
    (opened,) = await rig.run(owner, Command.UNLOCK, fast=False)
    assert opened.result.ok
    key = make_key(rig, who)
    start = rig.agent.clock()
    decisions = []
    for step in range(6):  # every second, the key's phone is measured 40 m away
        rig.agent.clock = functools.partial(float, start + step)
        reading = Reading(key_id=key.car.endpoint_id.hex(), location=AWAY)
        decisions += await rig.agent.hands_free([reading])
    may_lock = who == "lock only"  # its right is exactly this
    assert [d.action for d in decisions] == (["lock"] if may_lock else [])
    assert rig.body.state()[DOORS[0]] is may_lock


async def test_the_owners_readings_still_open_lock_and_start(rig: Rig) -> None:
    owner = await rig.pair()
    key_hex = owner.endpoint_id.hex()
    (unlock,) = await rig.agent.hands_free([Reading(key_id=key_hex, location=AT_DOOR)])
    assert unlock.action == "unlock" and rig.body.state()[DOORS[0]] is False
    assert await rig.agent.push_button_start(Reading(key_id=key_hex, location=INSIDE)) is None
    assert rig.body.state()[POWER] == "ON"
    assert (
        await rig.agent.push_button_start(Reading(key_id=key_hex, location=AT_DOOR))
        is DenialReason.RANGING_REQUIRED
    )
    assert (
        await rig.agent.push_button_start(Reading(key_id="not hex", location=INSIDE))
        is DenialReason.UNKNOWN_KEY
    )


async def test_without_ranging_radios_the_start_button_fails_closed(rig: Rig) -> None:
    await rig.pair()
    assert rig.agent.rangers is None
    assert await rig.agent.press_start_button() is DenialReason.RANGING_REQUIRED
    assert untouched(rig)


@pytest.mark.parametrize("who", ["unknown", "revoked", "lock only"])
async def test_a_profile_moves_the_seat_only_for_a_key_that_may_drive(rig: Rig, who: str) -> None:
    seat: Signals = {"Vehicle.Cabin.Seat.Row1.DriverSide.Position": 300}
    owner = await rig.pair()
    key = make_key(rig, who)
    assert not rig.agent.authority.adjust(key.private.public_key.key_id, seat)
    rig.body.set({"Vehicle.Speed": 40.0})
    assert not rig.agent.authority.adjust(owner.endpoint_id, seat)  # never under a driver
    rig.body.set({"Vehicle.Speed": 0.0})
    assert rig.body.state()["Vehicle.Cabin.Seat.Row1.DriverSide.Position"] == 0
    assert rig.agent.authority.adjust(owner.endpoint_id, seat)
    assert rig.body.state()["Vehicle.Cabin.Seat.Row1.DriverSide.Position"] == 300
