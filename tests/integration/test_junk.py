"""200 hostile connections at once: the car keeps serving its owner, refuses with typed errors,
loses nothing and does not grow without bound."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import struct
import time
from pathlib import Path

import cbor2
import pytest

from tether.phone import client
from tether.phone.wallet import CarKey
from tether.protocol import codec
from tether.protocol.commands import Command
from tether.protocol.crypto import SystemEntropy
from tether.protocol.messages import FastProof, StandardHello
from tether.transport import tcp
from tether.transport.base import MAX_FRAME
from tether.vehicle.keystore import VehicleStore

from .procs import Agent

JUNK_CONNECTIONS = 200


async def owner_unlocks(address: str, car: CarKey, n: int) -> list[float]:
    """n fast lock/unlock round trips from the owner's phone; their times in seconds."""
    times = []
    for i in range(n):
        start = time.perf_counter()
        transport = await tcp.connect(address)
        new_keys: list[bytes] = []
        try:
            (outcome,) = await client.run_commands(
                transport,
                car,
                [Command.UNLOCK if i % 2 else Command.LOCK],
                entropy=SystemEntropy(),
                fast=True,
                persist=new_keys.append,
            )
        finally:
            await transport.close()
        assert outcome.result.ok
        car = dataclasses.replace(car, persistent_key=new_keys[-1])
        times.append(time.perf_counter() - start)
    return times


async def junk(address: str, kind: int) -> None:
    host, port = tcp.parse_address(address)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        if kind == 0:  # random bytes, framed
            payload = os.urandom(64)
            writer.write(struct.pack(">I", len(payload)) + payload)
        elif kind == 1:  # a frame header announcing more than the limit
            writer.write(struct.pack(">I", MAX_FRAME + 1))
        elif kind == 2:  # truncated frame, then silence (half-open)
            writer.write(struct.pack(">I", 100) + b"\x00" * 10)
        elif kind == 3:  # wrong protocol version
            payload = cbor2.dumps([7, 30, {1: b"x" * 65, 2: b"n" * 16}])
            writer.write(struct.pack(">I", len(payload)) + payload)
        elif kind == 4:  # slow loris: one byte at a time
            for b in struct.pack(">I", 50):
                writer.write(bytes([b]))
                await writer.drain()
                await asyncio.sleep(0.2)
        elif kind == 5:  # a well-formed fast proof that matches nothing, then never answer
            payload = codec.encode(FastProof(nonce=os.urandom(16), cryptogram=os.urandom(32)))
            writer.write(struct.pack(">I", len(payload)) + payload)
        elif kind == 6:  # an invalid ephemeral key
            payload = codec.encode(StandardHello(ephemeral=b"\x04" + b"\x01" * 64, nonce=b"n" * 16))
            writer.write(struct.pack(">I", len(payload)) + payload)
        # kind 7: connect and say nothing at all
        await writer.drain()
        await asyncio.wait_for(reader.read(), 8)  # until the car drops us
    except (ConnectionError, TimeoutError, OSError):
        pass
    finally:
        writer.close()


@pytest.mark.slow
def test_two_hundred_junk_connections_do_not_stop_the_owner(tmp_path: Path) -> None:
    car_dir = tmp_path / "car"
    store = VehicleStore.create(car_dir, name="junk", entropy=SystemEntropy(), now=time.time())
    phone = SystemEntropy().new_private_key()
    store.new_pairing_code(now=time.time())
    store.enroll_owner(phone.public_key, name="owner", now=time.time())
    car = CarKey(
        name="c",
        vehicle_key=store.identity.public_key,
        vehicle_name="c",
        address="",
        endpoint_key=phone,
        role="owner",
        persistent_key=None,
        ratchet=0,
        added_at=0,
    )
    store.close()
    agent = Agent(car_dir)
    try:

        async def run() -> tuple[list[float], list[float], list[int]]:
            baseline = await owner_unlocks(agent.address, car, 20)
            rss = [agent.rss_kib()]
            for _wave in range(3):
                attackers = [
                    asyncio.create_task(junk(agent.address, i % 8)) for i in range(JUNK_CONNECTIONS)
                ]
                await asyncio.sleep(0.3)  # let them all connect
                under_attack = await owner_unlocks(agent.address, car, 20)
                await asyncio.gather(*attackers)
                rss.append(agent.rss_kib())
            return baseline, under_attack, rss

        baseline, under_attack, rss = asyncio.run(run())
    finally:
        err = agent.stop()
    base, attacked = statistics.median(baseline), statistics.median(under_attack)
    print(
        f"\nowner unlock median: {base * 1000:.1f} ms alone, {attacked * 1000:.1f} ms under "
        f"{JUNK_CONNECTIONS} junk connections; agent RSS KiB per wave: {rss}"
    )
    assert attacked < max(3 * base, base + 0.05), "the owner was slowed down too much"
    assert rss[-1] - rss[1] < 8 * 1024, "memory grows with every wave of junk"
    assert "Traceback" not in err
    store = VehicleStore.open(car_dir)
    reasons = {e.reason for e in store.audit_entries() if e.result == "error"}
    assert {"malformed", "unsupported_version"} <= reasons
    assert store.integrity_ok() and store.verify_audit() == []
    store.close()
