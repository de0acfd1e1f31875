"""The vehicle agent end to end in memory: pairing, commands, denials, and hostile input."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tether.errors import AuthenticationFailed, PeerError, TransportClosed, TransportError
from tether.phone import client
from tether.protocol import codec
from tether.protocol.commands import Command
from tether.protocol.crypto import DeterministicEntropy
from tether.protocol.messages import Error, PairRequest, Record, VehicleHello
from tether.protocol.vss import DOORS, POWER, SPEED
from tether.transport.memory import MemoryListener
from tether.vehicle.agent import VehicleAgent
from tether.vehicle.body.virtual import VirtualBody
from tether.vehicle.keystore import VehicleStore

from .conftest import Rig


async def test_pair_unlock_lock_start(rig: Rig) -> None:
    car = await rig.pair()
    assert car.vehicle_id == rig.store.vehicle_id
    (unlock,) = await rig.run(car, Command.UNLOCK)
    assert unlock.result.ok and not unlock.fast
    assert all(rig.body.state()[d] is False for d in DOORS)
    (lock,) = await rig.run(car, Command.LOCK)
    assert lock.result.ok and lock.fast
    (start,) = await rig.run(car, Command.START, fast=False)
    assert start.result.ok and rig.body.state()[POWER] == "ON"
    assert start.result.state is not None and start.result.state[POWER] == "ON"
    entries = [(e.command, e.result, e.detail) for e in rig.store.audit_entries()]
    assert ("unlock", "ok", "standard") in entries and ("lock", "ok", "fast") in entries
    assert rig.store.verify_audit() == []
    kinds = [str(e.kind) for e in rig.events]
    assert kinds.count("command") == 3 and "paired" in kinds


async def test_several_commands_in_one_session(rig: Rig) -> None:
    car = await rig.pair()
    outcomes = await rig.run(
        car, Command.UNLOCK, Command.TRUNK, Command.LOCATE, Command.HONK, Command.LOCK, fast=False
    )
    assert [o.result.ok for o in outcomes] == [True] * 5


async def test_fast_session_cannot_start_and_it_is_audited(rig: Rig) -> None:
    car = await rig.pair()
    await rig.run(car, Command.UNLOCK)
    (start,) = await rig.run(car, Command.START)
    assert start.fast and not start.result.ok and start.result.reason == "fast_not_allowed"
    last = rig.store.audit_entries()[-1]
    assert (last.command, last.result, last.reason) == ("start", "denied", "fast_not_allowed")


async def test_unknown_command_is_denied_and_audited(rig: Rig) -> None:
    car = await rig.pair()
    (fly,) = await rig.run(car, "fly")
    assert fly.result.reason == "unknown_command"
    assert rig.store.audit_entries()[-1].reason == "unknown_command"


async def test_unlock_refused_while_driving(rig: Rig) -> None:
    car = await rig.pair()
    rig.body.set({SPEED: 50.0})
    (unlock,) = await rig.run(car, Command.UNLOCK, fast=False)
    assert unlock.result.reason == "vehicle_state"
    assert rig.store.audit_entries()[-1].reason == "vehicle_state"


async def test_wrong_codes_count_and_lock_pairing(rig: Rig) -> None:
    code = rig.store.new_pairing_code(now=1000.0)
    wrong = "0" * 8 if code != "0" * 8 else "1" * 8
    for _ in range(5):
        with pytest.raises(PeerError) as info:
            await rig.pair(wrong)
        assert info.value.code == "wrong_code"
    assert rig.store.pairing_code().failures == 5  # type: ignore[union-attr]
    with pytest.raises(PeerError) as locked:
        await rig.pair(code)
    assert locked.value.code == "pairing_locked"
    reasons = [e.reason for e in rig.store.audit_entries() if e.command == "pair"]
    assert reasons.count("wrong_code") == 5 and "pairing_locked" in reasons


async def test_code_is_single_use_and_expires(rig: Rig) -> None:
    code = rig.store.new_pairing_code(now=1000.0)
    await rig.pair(code)
    with pytest.raises(PeerError, match="no pairing code"):
        await rig.pair(code, name="again")
    code = rig.store.new_pairing_code(now=0.0, ttl=10)  # expired long ago
    with pytest.raises(PeerError) as info:
        await rig.pair(code, name="late")
    assert info.value.code == "code_expired"


async def test_revoked_phone_is_refused_even_fast(rig: Rig) -> None:
    car = await rig.pair()
    await rig.run(car, Command.UNLOCK)
    rig.store.revoke(car.endpoint_id, seq=1, now=1000.0)
    with pytest.raises((PeerError, AuthenticationFailed)) as info:
        await rig.run(car, Command.UNLOCK)
    assert "no valid key" in str(info.value)
    assert rig.store.audit_entries()[-1].reason == "unknown_key"


async def _raw(rig: Rig, *messages: bytes, wait: bool = True) -> list[bytes]:
    """Send ``messages`` on a new connection; the replies after the car's greeting."""
    transport = await rig.listener.connect()
    assert isinstance(codec.decode(await transport.receive(1)), VehicleHello)
    for m in messages:
        await transport.send(m)
    replies = []
    try:
        while wait:
            replies.append(await transport.receive(1))
    except (TransportClosed, TransportError):
        pass
    await transport.close()
    return replies


async def test_garbage_first_message_gets_a_typed_error_and_an_audit_entry(rig: Rig) -> None:
    (reply,) = await _raw(rig, b"\x00garbage")
    assert codec.decode(reply) == Error(code="malformed", message=codec.decode(reply).message)  # type: ignore[attr-defined]
    assert rig.store.audit_entries()[-1].reason == "malformed"
    assert rig.agent.errors["malformed"] == 1


async def test_a_connection_may_not_start_mid_flow(rig: Rig) -> None:
    (reply,) = await _raw(rig, codec.encode(Record(ciphertext=b"x" * 20)))
    error = codec.decode(reply)
    assert isinstance(error, Error) and error.code == "unexpected_message"


async def test_wrong_version_is_refused(rig: Rig) -> None:
    import cbor2

    (reply,) = await _raw(rig, cbor2.dumps([9, 34, {1: b"n" * 16}]))
    error = codec.decode(reply)
    assert isinstance(error, Error) and error.code == "unsupported_version"


async def test_silent_peer_is_dropped_after_the_deadline(rig: Rig) -> None:
    transport = await rig.listener.connect()
    await transport.receive(1)  # the greeting
    with pytest.raises(TransportClosed):
        await transport.receive(2)  # the agent gives up after its 0.5 s deadline
    assert rig.agent.errors["timeout"] == 1


async def test_garbage_inside_a_session_closes_it_and_is_audited(rig: Rig) -> None:
    car = await rig.pair()
    await rig.run(car, Command.UNLOCK)
    car = rig.wallet.car(car.name)
    from tether.protocol.transaction import Established, PhoneTransaction

    transport = await rig.listener.connect()
    machine = PhoneTransaction(
        endpoint_key=car.endpoint_key,
        vehicle_key=car.vehicle_key,
        persistent_key=car.persistent_key,
        entropy=rig.entropy,
    )
    machine.start()
    session = None
    for m in machine.data_to_send():
        await transport.send(m)
    while session is None:
        for event in machine.receive(await transport.receive(1), now=0.0):
            if isinstance(event, Established):
                session = event.session
        for m in machine.data_to_send():
            await transport.send(m)
    await transport.send(codec.encode(Record(ciphertext=b"\x00" * 40)))
    with pytest.raises(TransportClosed):
        await transport.receive(1)
    last = rig.store.audit_entries()[-1]
    assert (last.command, last.reason) == ("session", "bad_record")


async def test_pairing_garbage_is_audited(rig: Rig) -> None:
    rig.store.new_pairing_code(now=1000.0)
    replies = await _raw(rig, codec.encode(PairRequest(share=b"\x04" + b"\xff" * 64)))
    assert codec.decode(replies[0]).code == "bad_pake_message"  # type: ignore[attr-defined]
    assert rig.store.audit_entries()[-1].reason == "bad_pake_message"


async def test_connection_cap_evicts_the_oldest_unauthenticated(tmp_path: Path) -> None:
    entropy = DeterministicEntropy(b"cap")
    store = VehicleStore.create(tmp_path / "car", name="c", entropy=entropy, now=1.0)
    agent = VehicleAgent(
        store, VirtualBody(), entropy=entropy, max_connections=2, handshake_timeout=3.0
    )
    listener = MemoryListener(agent.handle)
    idle = [await listener.connect() for _ in range(2)]
    for t in idle:
        await t.receive(1)  # the greeting
    extra = await listener.connect()  # the cap is reached: the oldest idle one makes room
    await extra.receive(1)
    with pytest.raises(TransportClosed):
        await idle[0].receive(1)
    assert agent.errors["evicted"] == 1 and agent.active_connections == 2
    await extra.send(codec.encode(PairRequest(share=b"\x04" + b"\xff" * 64)))
    reply = codec.decode(await extra.receive(1))  # the newcomer is served
    assert reply.code == "no_code"  # type: ignore[attr-defined]
    for t in [*idle, extra]:
        await t.close()
    await listener.close()
    store.close()


async def test_client_reports_a_car_that_goes_silent(rig: Rig) -> None:
    car = await rig.pair()

    async def mute(transport: object) -> None:
        await asyncio.sleep(5)

    silent = MemoryListener(mute)
    transport = await silent.connect()
    with pytest.raises(TransportError) as info:
        await client.run_commands(
            transport,
            rig.wallet.car(car.name),
            [Command.UNLOCK],
            entropy=rig.entropy,
            fast=True,
            persist=lambda k: None,
            timeout=0.2,
        )
    assert info.value.code == "timeout"
    await silent.close()


async def test_ignition_off_ends_the_sessions_held_while_driving(rig: Rig) -> None:
    car = await rig.pair()
    (started,) = await rig.run(car, Command.START, fast=False)
    assert started.result.ok
    held = await rig.listener.connect()
    stop_holding = asyncio.get_running_loop().create_future()
    holding = asyncio.create_task(
        client.drive(
            held,
            rig.wallet.car(car.name),
            entropy=rig.entropy,
            persist=lambda key: rig.wallet.set_persistent_key(car.name, key),
            stop=stop_holding,
        )
    )
    for _ in range(100):  # until the car holds the session
        if any(c.open is not None for c in rig.agent._connections):
            break
        await asyncio.sleep(0.01)
    (stopped,) = await rig.run(car, Command.STOP, fast=False)  # another connection, same key
    assert stopped.result.ok
    assert await asyncio.wait_for(holding, 5) == "the car closed the session"
    await held.close()
