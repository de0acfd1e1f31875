"""Privacy is a test: canaries planted in every category of the phones' vaults never reach the car's
disk, logs or audit log; the head unit shows each driver's own data and forgets it."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tether.phone import client, consent
from tether.phone.vault import Vault
from tether.phone.wallet import CarKey, PhoneWallet
from tether.protocol.commands import Command
from tether.protocol.vss import POWER, SPEED
from tether.vehicle.agent import AgentEvent
from tether.vehicle.body import base as body_base
from tether.vehicle.headunit import HeadUnitEvent

from .conftest import Rig
from .test_sharing import NOW, share

SEAT = "Vehicle.Cabin.Seat.Row1.DriverSide.Position"
PERSONAL = body_base.PERSONAL


def plant(wallet: PhoneWallet, tag: str, seat: int) -> list[str]:
    """Fill every category with unique canary strings; return them."""
    canaries = [
        f"CANARY-{tag}-{what}"
        for what in ("name", "mail", "event", "place", "fav", "song", "preset")
    ]
    name, mail, event, place, fav, song, preset = canaries
    vault = Vault(wallet)
    vault.import_text(
        f"BEGIN:VCARD\nVERSION:4.0\nFN:{name}\nTEL:+49 89 {seat}0 777\nEMAIL:{mail}@example.org\nEND:VCARD\n",
        now=datetime.datetime.now(datetime.UTC),
    )
    day = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d")
    vault.import_text(
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//t//EN\nBEGIN:VEVENT\nUID:1@x\n"
        f"DTSTART:{day}T235000Z\nDTEND:{day}T235900Z\nSUMMARY:{event}\nLOCATION:{place}\n"
        "END:VEVENT\nEND:VCALENDAR\n",
        now=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1),
    )
    vault.import_text(
        json.dumps(
            {
                "favourites": [{"name": fav, "kind": "home"}],
                "media": [{"title": song}],
                "profile": {
                    "seat": {"position": seat},
                    "climate": {"temperature": 20.5},
                    "radio_presets": [preset],
                },
            }
        ),
        now=datetime.datetime.now(datetime.UTC),
    )
    return canaries


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Everything tether logs during the test, at DEBUG."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tether")
    old = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old)


async def drive(
    rig: Rig, wallet: PhoneWallet, key: CarKey, *, ask: bool | consent.Asker | None
) -> None:
    """Start the car from ``wallet``; ``ask`` answers consent prompts (a fixed answer, or a person)."""
    key = wallet.car(key.name)

    async def fixed(car: CarKey, category: str, purpose: str) -> bool:
        return bool(ask)

    person = fixed if isinstance(ask, bool) else ask
    answer = consent.responder(wallet, key, ask=person, clock=lambda: NOW)
    transport = await rig.listener.connect()
    try:
        (outcome,) = await client.run_commands(
            transport,
            key,
            [Command.START],
            entropy=rig.entropy,
            fast=False,
            persist=lambda k: wallet.set_persistent_key(key.name, k),
            data=answer,
        )
    finally:
        await transport.close()
    assert outcome.result.ok


async def settle(condition: Callable[[], bool]) -> None:
    """Let the agent's connection task catch up (it reads the phone's Close on its own time)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the agent did not get there")


def watch_seat(rig: Rig) -> list[object]:
    """Every seat position the agent sets on the body, in order."""
    seats: list[object] = []
    real = rig.body.set

    def spy(signals: dict[str, bool | int | float | str]) -> None:
        if SEAT in signals:
            seats.append(signals[SEAT])
        real(signals)

    rig.body.set = spy  # type: ignore[method-assign]
    return seats


def car_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


async def test_the_car_keeps_nothing_personal(rig: Rig, tmp_path: Path, logs: io.StringIO) -> None:
    shown: list[HeadUnitEvent] = []
    rig.agent.headunit.listeners.append(shown.append)
    seats = watch_seat(rig)
    owner_key = await rig.pair()
    owner_canaries = plant(rig.wallet, "ADA", seat=42)
    friend = PhoneWallet.create(tmp_path / "friend", name="Bea", passphrase="bea")
    bea = share(rig, owner_key, friend, rights={"unlock", "lock", "drive"}, name="car")
    friend_canaries = plant(friend, "BEA", seat=17)

    await drive(rig, rig.wallet, owner_key, ask=None)  # the owner's own car: allowed by default
    screen = [e for e in shown if e.kind == "shown"][-1].screen
    assert screen is not None and screen.data["contacts"][0]["name"] == owner_canaries[0]
    await settle(lambda: len(shown) == 2)
    assert [e.kind for e in shown] == ["shown", "forgotten"]  # forgotten when the session ended
    assert seats == [42, 0]  # set from Ada's profile, then back to neutral: easy exit

    await drive(rig, friend, bea, ask=True)  # Bea consents when asked
    screen = [e for e in shown if e.kind == "shown"][-1].screen
    assert screen is not None and screen.data["contacts"][0]["name"] == friend_canaries[0]
    assert owner_canaries[0] not in json.dumps(screen.data)  # Bea sees her data, not Ada's
    await settle(lambda: shown[-1].kind == "forgotten")
    assert rig.agent.headunit.screens() == {}
    await settle(lambda: seats == [42, 0, 17, 0])  # Bea's seat, from Bea's phone, then neutral

    rig.body.save()
    rig.store.close()
    saved = json.loads((rig.store.directory / "body.json").read_text())
    assert {name: saved[name] for name in PERSONAL} == PERSONAL  # no driver's number on disk
    disk = car_bytes(rig.store.directory)  # the database, its WAL and the body file
    for canary in owner_canaries + friend_canaries:
        assert canary.encode() not in disk, f"{canary} reached the car's disk"
        assert canary.encode("utf-16-le") not in disk
        assert canary not in logs.getvalue(), f"{canary} reached the car's logs"
    friend.close()
    # The phones, not the car, know what was disclosed.
    assert [r[2] for r in rig.wallet.disclosures() if r[5] == "disclosed"] == [
        "profile",
        "contacts",
        "calendar",
    ]


async def test_a_denied_or_unanswered_request_discloses_nothing(rig: Rig, tmp_path: Path) -> None:
    shown: list[HeadUnitEvent] = []
    rig.agent.headunit.listeners.append(shown.append)
    owner_key = await rig.pair()
    friend = PhoneWallet.create(tmp_path / "friend", name="Bea", passphrase="bea")
    bea = share(rig, owner_key, friend, rights={"drive", "unlock"}, name="car")
    canaries = plant(friend, "BEA", seat=17)
    await drive(rig, friend, bea, ask=None)  # "ask" with nobody to ask: refused
    screen = shown[0].screen
    assert screen is not None and screen.data == {}
    assert set(screen.denied) == {"profile", "contacts", "calendar"}
    assert rig.body.state()[SEAT] == 0

    # A phone that never answers: the car starts after its timeout, with nothing shown.
    rig.agent.data_timeout = 0.2
    key = friend.car("car")
    transport = await rig.listener.connect()
    from tether.protocol.session import DataRequested

    async def silent(request: DataRequested) -> tuple[dict[str, object], list[str]]:
        raise TimeoutError  # stands for a phone that does not answer

    try:
        with pytest.raises(TimeoutError):
            await client.run_commands(
                transport,
                key,
                [Command.START],
                entropy=rig.entropy,
                fast=False,
                persist=lambda k: None,
                data=silent,
            )
    finally:
        await transport.close()
    rig.store.close()
    disk = car_bytes(rig.store.directory)
    assert all(c.encode() not in disk for c in canaries)
    friend.close()


async def test_a_late_answer_still_reaches_the_screen_but_moves_no_seat_while_driving(
    rig: Rig, tmp_path: Path
) -> None:
    shown: list[HeadUnitEvent] = []
    rig.agent.headunit.listeners.append(shown.append)
    owner_key = await rig.pair()
    friend = PhoneWallet.create(tmp_path / "friend", name="Bea", passphrase="bea")
    bea = share(rig, owner_key, friend, rights={"unlock", "lock", "drive"}, name="car")
    canaries = plant(friend, "BEA", seat=17)
    rig.agent.data_timeout = 0.2  # the car starts without her data after this long

    async def slow_person(car: CarKey, category: str, purpose: str) -> bool:
        await settle(lambda: rig.body.state()[POWER] != "OFF")  # answers after the car started
        rig.body.set({SPEED: 20.0})  # by now she is driving
        return True

    await drive(rig, friend, bea, ask=slow_person)
    # The start did not wait; the answer came later and the screen still showed it.
    await settle(lambda: any(e.kind == "shown" for e in shown))
    screens = [e.screen for e in shown if e.kind == "shown" and e.screen is not None]
    assert screens and screens[0].data["contacts"][0]["name"] == canaries[0]
    assert rig.body.state()[SEAT] == 0  # the seat does not move under a driver
    await settle(lambda: shown[-1].kind == "forgotten")
    friend.close()


async def test_a_session_that_ends_on_the_move_keeps_the_seat_until_the_ignition_is_off(
    rig: Rig, tmp_path: Path
) -> None:
    seats = watch_seat(rig)
    owner_key = await rig.pair()
    plant(rig.wallet, "ADA", seat=42)

    def drive_off(event: AgentEvent) -> None:
        if event.command == "start" and event.ok:
            rig.body.set({SPEED: 30.0})  # the phone's session ends while Ada drives

    rig.agent.listeners.append(drive_off)
    await drive(rig, rig.wallet, owner_key, ask=None)
    await settle(lambda: rig.agent.headunit.screens() == {})
    assert seats == [42] and rig.body.state()[SEAT] == 42  # never moved under the driver
    rig.agent.listeners.remove(drive_off)
    rig.body.set({SPEED: 0.0})
    (stop,) = await rig.run(owner_key, Command.STOP, fast=False)
    assert stop.result.ok and seats == [42, 0]  # ignition off: easy exit
