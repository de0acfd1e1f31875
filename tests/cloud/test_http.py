"""HTTP behaviour of the server: a signed request is good once, and keep-alive requests do not stall."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from tests.cloud.rig import start_server
from tether.cloud import db
from tether.cloud.api import create_app
from tether.cloud.api.access import NONCE_SWEEP, Hub
from tether.link import httpsig
from tether.link.b64 import b64
from tether.link.client import signed_headers
from tether.protocol.crypto import SystemEntropy


async def test_replays_are_refused_and_nonces_swept_only_when_stale(database: str) -> None:
    engine = db.make_engine(database)
    db.upgrade(engine)
    now = [1_800_000_000.0]
    hub = Hub(engine=engine, clock=lambda: now[0])
    car = SystemEntropy().new_private_key()
    path = f"/v1/vehicles/{car.public_key.key_id.hex()}"
    body = json.dumps(
        {"public_key": b64(car.public_bytes), "name": "car", "address": "", "owners": []}
    ).encode()

    def nonces() -> int:
        with engine.begin() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(db.nonces)).scalar_one())

    transport = httpx.ASGITransport(app=create_app(hub))
    async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:

        async def put(headers: dict[str, str]) -> int:
            headers = {**headers, "content-type": "application/json"}
            return (await http.put(path, content=body, headers=headers)).status_code

        first = signed_headers(car, "PUT", path, "", body, now=now[0])
        assert await put(first) == 200
        assert await put(first) == 401  # the same request again: a replay
        assert nonces() == 1

        # Later, but while the first request would still pass its time check: still refused,
        # and the sweep (due now) keeps its nonce.
        now[0] += httpsig.MAX_SKEW
        assert await put(first) == 401
        assert await put(signed_headers(car, "PUT", path, "", body, now=now[0])) == 200
        assert nonces() == 2

        # Long after: both nonces are stale and swept, and the old request fails on its age.
        now[0] += 2 * httpsig.MAX_SKEW + NONCE_SWEEP
        swept_at = now[0]
        assert await put(signed_headers(car, "PUT", path, "", body, now=now[0])) == 200
        assert nonces() == 1 and hub.next_sweep == swept_at + NONCE_SWEEP
        assert await put(first) == 401

        # Until the next sweep is due, requests only add their nonces.
        for _ in range(3):
            now[0] += 1
            assert await put(signed_headers(car, "PUT", path, "", body, now=now[0])) == 200
        assert nonces() == 4 and hub.next_sweep == swept_at + NONCE_SWEEP
    engine.dispose()


async def test_keep_alive_requests_do_not_wait_for_delayed_acks(tmp_path: Path) -> None:
    """Without TCP_NODELAY every request on a kept-alive connection took ~44 ms here (Nagle)."""
    server = await start_server(tmp_path / "server", database=None, mqtt=None)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            await http.get("/v1/health")
            times = []
            for _ in range(5):
                started = time.perf_counter()
                assert (await http.get("/v1/health")).status_code == 200
                times.append(time.perf_counter() - started)
        assert sorted(times)[2] < 0.02, times
    finally:
        await server.stop()
