"""kill -9 at random moments while the car enrols, revokes and ratchets: nothing acknowledged is lost.

Each round starts the real agent process, drives phones against it over TCP (pairings and
transactions) while a helper process revokes keys, then SIGKILLs both at a random moment. After
every round the store must pass SQLite's integrity check and the audit chain must verify; every
acknowledged enrolment and revocation must be there; no ratchet, revocation sequence or audit count
may have gone backwards; every transaction a phone saw confirmed must be counted.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tether.errors import TetherError
from tether.phone import client
from tether.phone.wallet import CarKey
from tether.protocol.commands import Command
from tether.protocol.crypto import PrivateKey, SystemEntropy
from tether.transport import tcp
from tether.vehicle.keystore import VehicleStore

from .procs import Agent

ROUNDS = int(os.environ.get("TETHER_SIGKILL_ROUNDS", "100"))  # more: TETHER_SIGKILL_ROUNDS
HERE = Path(__file__).parent


class Ledger:
    """What the car acknowledged, as the phones and the admin saw it."""

    def __init__(self) -> None:
        self.enrolled: dict[bytes, PrivateKey] = {}
        self.revoked: dict[bytes, int] = {}
        self.confirmed = collections.Counter[bytes]()
        self.persistent: dict[bytes, bytes | None] = {}
        self.ratchet_seen: dict[bytes, int] = {}
        self.revocation_seq_seen = 0
        self.audit_seen = 0


async def pair_one(address: str, code: str, ledger: Ledger, vehicle: PrivateKey | None) -> None:
    key = SystemEntropy().new_private_key()
    transport = await tcp.connect(address)
    try:
        await client.pair(transport, code=code, endpoint_key=key, name="p", entropy=SystemEntropy())
    finally:
        await transport.close()
    ledger.enrolled[key.public_key.key_id] = key  # acknowledged: PairAccept arrived
    ledger.persistent[key.public_key.key_id] = None


async def transact_forever(address: str, eid: bytes, ledger: Ledger, vehicle_key: CarKey) -> None:
    rng = random.Random(eid)
    while True:
        car = CarKey(
            name="c",
            vehicle_key=vehicle_key.vehicle_key,
            vehicle_name="c",
            address=address,
            endpoint_key=ledger.enrolled[eid],
            role="owner",
            persistent_key=ledger.persistent[eid],
            ratchet=0,
            added_at=0,
        )

        def persist(key: bytes) -> None:
            ledger.persistent[eid] = key
            ledger.confirmed[eid] += 1  # Finished arrived: the car committed this ratchet

        transport = await tcp.connect(address)
        try:
            await client.run_commands(
                transport,
                car,
                [rng.choice([Command.UNLOCK, Command.LOCK])],
                entropy=SystemEntropy(),
                fast=rng.random() < 0.7,
                persist=persist,
                timeout=2,
            )
        finally:
            await transport.close()


async def round_(car_dir: Path, ledger: Ledger, vehicle_pub: CarKey, rng: random.Random) -> None:
    agent = Agent(car_dir)
    active = [e for e in ledger.enrolled if e not in ledger.revoked]
    victims = [e.hex() for e in active[: max(0, len(active) - 3)]]  # keep three phones alive
    revoker = subprocess.Popen(
        [sys.executable, str(HERE / "revoker.py"), str(car_dir), *victims],
        stdout=subprocess.PIPE,
        text=True,
    )
    admin = VehicleStore.open(car_dir)
    code = admin.new_pairing_code(now=time.time())
    admin.close()
    tasks = [asyncio.create_task(pair_one(agent.address, code, ledger, None))]
    for eid in active[-3:]:
        tasks.append(asyncio.create_task(transact_forever(agent.address, eid, ledger, vehicle_pub)))
    await asyncio.sleep(rng.uniform(0.0, 0.3))
    agent.kill()
    revoker.send_signal(signal.SIGKILL)
    out, _ = revoker.communicate(timeout=10)
    for line in out.splitlines():
        _, hex_id, seq = line.split()
        ledger.revoked[bytes.fromhex(hex_id)] = int(seq)
    for task in tasks:
        task.cancel()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, BaseException) and not isinstance(
            result, (TetherError, asyncio.CancelledError, OSError)
        ):
            raise result


def check(car_dir: Path, ledger: Ledger) -> None:
    store = VehicleStore.open(car_dir)
    try:
        assert store.integrity_ok()
        assert store.verify_audit() == []
        entries = len(store.audit_entries())
        assert entries >= ledger.audit_seen
        ledger.audit_seen = entries
        seq = store.revocation_seq()
        assert seq >= ledger.revocation_seq_seen and seq >= max(ledger.revoked.values(), default=0)
        ledger.revocation_seq_seen = seq
        for eid in ledger.enrolled:
            endpoint = store.endpoint(eid)
            assert endpoint is not None, "an acknowledged enrolment was lost"
            if eid in ledger.revoked:
                assert endpoint.revoked_seq == ledger.revoked[eid], (
                    "an acknowledged revocation was lost"
                )
            assert endpoint.ratchet >= ledger.confirmed[eid], "a confirmed transaction was lost"
            assert endpoint.ratchet >= ledger.ratchet_seen.get(eid, 0), "a ratchet went backwards"
            ledger.ratchet_seen[eid] = endpoint.ratchet
    finally:
        store.close()


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    car_dir = tmp_path / "car"
    store = VehicleStore.create(car_dir, name="kill", entropy=SystemEntropy(), now=time.time())
    vehicle = CarKey(
        name="c",
        vehicle_key=store.identity.public_key,
        vehicle_name="c",
        address="",
        endpoint_key=SystemEntropy().new_private_key(),  # unused: only vehicle_key is read
        role="x",
        persistent_key=None,
        ratchet=0,
        added_at=0,
    )
    store.close()
    ledger = Ledger()
    rng = random.Random(20261125)
    for _ in range(ROUNDS):
        asyncio.run(round_(car_dir, ledger, vehicle, rng))
        check(car_dir, ledger)
    # The stream really exercised every kind of write.
    # (Loose on purpose: on a loaded 2-core machine fewer pairings finish before the kill.)
    assert len(ledger.enrolled) > ROUNDS // 8
    assert len(ledger.revoked) > ROUNDS // 10
    assert sum(ledger.confirmed.values()) > ROUNDS
