"""Attacks on the car agent that once got through (issue 14): each is refused now.

Who plays whom: "a stranger near the car" writes into the audit log and holds connections; "the
owner" revokes from the car's own command line while a friend's session is open.
"""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path

import pytest

from tether.errors import TransportClosed
from tether.phone import client
from tether.phone.wallet import CarKey
from tether.protocol import codec, credentials
from tether.protocol.commands import Command
from tether.protocol.crypto import PrivateKey, SystemEntropy
from tether.protocol.machine import Event
from tether.protocol.messages import Error, StandardHello, VehicleHello
from tether.protocol.session import PhoneSession, ResultReceived, SessionClosed
from tether.protocol.vss import SPEED, SPEED_LIMIT
from tether.transport.base import Transport

from ..integration.procs import tether
from .conftest import Rig

FRIEND_RIGHTS = frozenset({"unlock", "lock", "drive"})


def enrol(rig: Rig, name: str, **limits: int) -> CarKey:
    """A key the car enrolled on an authority the test has already checked (as an admin would)."""
    key = rig.entropy.new_private_key()
    rig.store.enroll(
        key.public_key,
        name=name,
        role="friend",
        rights=FRIEND_RIGHTS,
        not_before=None,
        not_after=None,
        now=1000.0,
        limits=credentials.Limits(**limits),  # type: ignore[arg-type]
    )
    return _car_key(rig, key)


def _car_key(rig: Rig, key: PrivateKey) -> CarKey:
    return CarKey(
        name="car",
        vehicle_key=rig.store.identity.public_key,
        vehicle_name="Test car",
        address="memory",
        endpoint_key=key,
        role="friend",
        persistent_key=None,
        ratchet=0,
        added_at=0,
    )


async def open_session(rig: Rig, car: CarKey) -> tuple[Transport, PhoneSession]:
    transport = await rig.listener.connect()
    session, _ = await client._establish(
        transport,
        car,
        entropy=rig.entropy,
        fast=False,
        persist=lambda key: None,
        early=[],
        timeout=2.0,
    )
    return transport, session


async def command(transport: Transport, session: PhoneSession, cmd: Command) -> list[Event]:
    session.request(cmd)
    for data in session.data_to_send():
        await transport.send(data)
    return session.receive(await transport.receive(2.0), now=0.0)


async def test_a_local_revoke_ends_an_open_session_at_once(rig: Rig, tmp_path: Path) -> None:
    rig.agent.idle_timeout = 30.0
    friend = enrol(rig, "Bea")
    transport, session = await open_session(rig, friend)
    [unlocked] = await command(transport, session, Command.UNLOCK)
    assert isinstance(unlocked, ResultReceived) and unlocked.result.ok
    rig.agent.headunit.show(friend.endpoint_id.hex(), {"contacts": ["Zed Canary"]}, ())
    watcher = asyncio.create_task(rig.agent.watch(0.05))
    try:
        # The owner, at the car, with another process: `tether vehicle revoke`.
        await asyncio.to_thread(
            tether,
            "vehicle",
            "revoke",
            "--dir",
            str(tmp_path / "car"),
            "--key",
            friend.endpoint_id.hex(),
        )
        # The car closes the friend's session by itself, within the watch interval.
        events = session.receive(await transport.receive(2.0), now=0.0)
        assert any(isinstance(e, SessionClosed) for e in events)
        assert friend.endpoint_id.hex() not in rig.agent.headunit.screens()
        assert rig.agent.active_connections == 0
    finally:
        watcher.cancel()
        await transport.close()


async def test_a_revocation_from_the_cloud_ends_other_sessions(rig: Rig) -> None:
    rig.agent.idle_timeout = 30.0
    owner = await rig.pair()
    friend = enrol(rig, "Bea")
    transport, session = await open_session(rig, friend)
    rig.agent.headunit.show(friend.endpoint_id.hex(), {"contacts": ["Zed Canary"]}, ())
    raw = credentials.issue_revocation(
        owner.endpoint_key,
        vehicle_id=owner.vehicle_id,
        seq=1,
        keys=[friend.endpoint_id],
        grants=[],
        issued_at=1000,
    )
    outcome = rig.agent.apply_revocation(raw)  # what the cloud link does with a pushed one
    assert outcome.ok
    events = session.receive(await transport.receive(2.0), now=0.0)
    assert any(isinstance(e, SessionClosed) for e in events)
    assert friend.endpoint_id.hex() not in rig.agent.headunit.screens()
    await transport.close()


async def test_a_peers_error_text_is_never_stored(rig: Rig) -> None:
    markup = "[/red][bold]owned[/bold]\x1b[2J"
    for i in range(50):  # unique codes, each with hostile text
        transport = await rig.listener.connect()
        await transport.receive(1.0)  # the car's greeting
        hello = StandardHello(
            ephemeral=SystemEntropy().new_private_key().public_bytes, nonce=os.urandom(16)
        )
        await transport.send(codec.encode(hello))
        await transport.receive(1.0)  # VehicleAuth: the phone's Error comes mid-handshake
        await transport.send(codec.encode(Error(code=f"x{i}" + "[/red]", message=markup)))
        with pytest.raises(TransportClosed):  # the car hangs up
            await transport.receive(1.0)
        await transport.close()
    entries = rig.store.audit_entries()
    for entry in entries:
        assert (
            "red" not in entry.reason + entry.detail + entry.command and "\x1b" not in entry.detail
        )
    peer = [e for e in entries if e.reason == "unknown"]
    assert len(peer) == 1  # the first at once; the rest are summarised, not one entry each
    assert set(rig.agent.errors) <= {"unknown", "timeout", "closed"}  # a closed set of counters
    rig.agent.flush_summaries(force=True)
    summary = rig.store.audit_entries()[-1]
    assert summary.reason == "unknown" and summary.detail.startswith("49 more")


async def test_flood_of_refusals_writes_a_bounded_number_of_entries(rig: Rig) -> None:
    before = len(rig.store.audit_entries())
    for _ in range(300):
        transport = await rig.listener.connect()
        await transport.send(os.urandom(40))
        await transport.receive(1.0)
        await transport.close()
    assert len(rig.store.audit_entries()) - before <= 2


async def test_max_speed_sets_the_limiter_and_audits_a_breach(rig: Rig) -> None:
    rig.agent.idle_timeout = 30.0
    rig.agent.data_timeout = 0.05
    friend = enrol(rig, "Bea", max_speed=80)
    transport, session = await open_session(rig, friend)
    session.request(Command.START)
    for data in session.data_to_send():
        await transport.send(data)
    result = None
    while result is None:  # the head unit asks first; the start goes ahead without an answer
        for event in session.receive(await transport.receive(2.0), now=0.0):
            if isinstance(event, ResultReceived):
                result = event.result
    assert result.ok
    assert rig.body.state()[SPEED_LIMIT] == 80
    rig.body.set({SPEED: 95.0})
    rig.agent._check_speed()
    rig.agent._check_speed()  # one entry per breach, not one per look
    breaches = [e for e in rig.store.audit_entries() if e.reason == "speed_limit_breach"]
    assert len(breaches) == 1 and breaches[0].key_id == friend.endpoint_id.hex()
    rig.body.set({SPEED: 0.0})
    [stopped] = await command(transport, session, Command.STOP)
    assert isinstance(stopped, ResultReceived) and stopped.result.ok
    assert rig.body.state()[SPEED_LIMIT] == 0
    await transport.close()


async def test_an_unknown_command_name_is_not_stored(rig: Rig) -> None:
    rig.agent.idle_timeout = 30.0
    friend = enrol(rig, "Bea")
    transport, session = await open_session(rig, friend)
    session.request("[/red]pwn")
    for data in session.data_to_send():
        await transport.send(data)
    session.receive(await transport.receive(2.0), now=0.0)
    last = rig.store.audit_entries()[-1]
    assert last.command == "unknown" and last.reason == "unknown_command"
    await transport.close()


@pytest.mark.parametrize(
    "header",
    [
        (200).to_bytes(4, "little"),  # a little-endian prefix reads as 3.3 GB
        (200).to_bytes(2, "big") + b"\x83\x02",  # a 2-byte prefix and the message's first bytes
        bytes(4),  # an empty frame
    ],
)
async def test_a_frame_header_of_the_wrong_shape_gets_an_error_and_an_audit_entry(
    rig: Rig, header: bytes
) -> None:
    from tether.transport import tcp

    listener = await tcp.listen("tcp://127.0.0.1:0", rig.agent.handle)
    host, port = listener.address.removeprefix("tcp://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        assert isinstance(codec.decode(await reader.readexactly(size)), VehicleHello)
        writer.write(header + bytes(16))
        await writer.drain()
        (size,) = struct.unpack(">I", await asyncio.wait_for(reader.readexactly(4), 5))
        error = codec.decode_as(await reader.readexactly(size), Error)
        assert error.code == "malformed" and "frame" in error.message
        assert await asyncio.wait_for(reader.read(), 5) == b""  # then the car hangs up
    finally:
        writer.close()
        await listener.close()
    assert any(e.reason == "malformed" for e in rig.store.audit_entries())
