"""PostgreSQL and the broker restarted under load: nothing acknowledged is lost, cars catch up.

Real services, really restarted (the machine's PostgreSQL cluster and Mosquitto): an owner keeps
queueing revocations for three cars while first the broker and then the database go down and
come back. Every revocation the server acknowledged must end applied on its car, with the car's
signed receipt, and each car's revocation sequence must be the newest one acknowledged for it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.cloud.conftest import MOSQUITTO, reset_pg
from tests.cloud.rig import eventually, make_car, pair_owner, start_server
from tether.cloud.server import Server
from tether.errors import CloudError, TransportError
from tether.link.b64 import b64
from tether.phone import cloud, sharing
from tether.phone.wallet import CarKey, PhoneWallet

pytestmark = pytest.mark.slow


def _restart_broker() -> None:
    subprocess.run(["pkill", "-x", "mosquitto"], check=False)
    for _ in range(50):
        if subprocess.run(
            ["pgrep", "-x", "mosquitto"], check=False, capture_output=True
        ).returncode:
            break
        time.sleep(0.1)
    time.sleep(1.0)  # the cars and the relay notice, and retry
    subprocess.run(["mosquitto", "-d", "-c", "/etc/mosquitto/mosquitto.conf"], check=True)


def _restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True,
        capture_output=True,
    )


async def test_restarts_under_load_lose_nothing(pg_url: str, tmp_path: Path) -> None:
    reset_pg(pg_url)
    server: Server = await start_server(tmp_path / "server", database=pg_url, mqtt=MOSQUITTO)
    owner = PhoneWallet.create(tmp_path / "ada", name="Ada", passphrase="a")
    cars = [await make_car(tmp_path / f"car{i}", name=f"Car {i}") for i in range(3)]
    acknowledged: dict[str, list[int]] = {}
    failures = 0
    try:
        keys = [await pair_owner(car, owner, name=f"car{i}") for i, car in enumerate(cars)]
        for car in cars:
            await car.connect(server.url, poll=1.0)

        async def post(key: CarKey, raw: bytes) -> None:
            nonlocal failures
            while True:  # the same bytes again until the server acknowledges (idempotent)
                try:
                    async with cloud.client_for(server.url, key.endpoint_key) as client:
                        await client.call(
                            "POST",
                            f"/v1/vehicles/{key.vehicle_id.hex()}/revocations",
                            body={"revocation": b64(raw)},
                        )
                    return
                except (CloudError, TransportError):
                    failures += 1
                    await asyncio.sleep(0.2)

        async def load() -> None:
            for n in range(30):
                key = keys[n % 3]
                victim = os.urandom(16)
                seq, raw = sharing.make_revocation(
                    owner, key, keys=[victim], serials=[], now=time.time()
                )
                await post(key, raw)
                acknowledged.setdefault(key.name, []).append(seq)
                await asyncio.sleep(0.1)

        task = asyncio.create_task(load())
        await asyncio.sleep(0.5)
        await asyncio.to_thread(_restart_broker)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(_restart_postgres)
        await asyncio.wait_for(task, 120)

        async def all_applied() -> bool:
            for key in keys:
                try:
                    states = await cloud.revocations(key, server.url)
                except (CloudError, TransportError):
                    return False
                applied = sorted(s.seq for s in states if s.status == "applied")
                if applied != sorted(acknowledged[key.name]):
                    return False
            return True

        await eventually(all_applied, timeout=60, every=0.5)
        for key, car in zip(keys, cars, strict=True):
            assert car.store.revocation_seq() == max(acknowledged[key.name])
        assert sum(len(v) for v in acknowledged.values()) == 30
        # The restarts were felt, and the cars came back to the broker.

        async def reconnected() -> bool:
            return all(car.link is not None and car.link.stats.mqtt_connects >= 2 for car in cars)

        await eventually(reconnected, timeout=30)
    finally:
        for car in cars:
            await car.close()
        owner.close()
        await server.stop()
