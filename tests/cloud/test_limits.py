"""A stranger on the internet with big bodies, chunked bodies, bad shapes (issue 14, items 10, 13)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.cloud.rig import make_car
from tether.cloud.server import Server
from tether.errors import CloudError, RemoteError
from tether.link.client import CloudClient
from tether.protocol import remote
from tether.protocol.crypto import PrivateKey, SystemEntropy

CANARY = "canary-3f9c1e"


async def test_a_big_body_is_refused_before_it_is_read(sqlite_server: Server) -> None:
    vid = os.urandom(16).hex()
    async with httpx.AsyncClient(base_url=sqlite_server.url) as http:
        big = await http.put(
            f"/v1/vehicles/{vid}",
            content=b"{" + b" " * (48 * 1024 * 1024) + b"}",
            headers={"content-type": "application/json"},
        )
        assert big.status_code == 413 and big.json()["code"] == "too_large"

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(200):  # 12.8 MiB without a Content-Length
                yield b" " * 65536

        chunked = await http.post(
            f"/v1/vehicles/{vid}/grants",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert chunked.status_code == 413


async def test_a_refusal_echoes_nothing(sqlite_server: Server) -> None:
    vid = os.urandom(16).hex()
    async with httpx.AsyncClient(base_url=sqlite_server.url) as http:
        bad = await http.put(f"/v1/vehicles/{vid}", json={"public_key": CANARY, "name": [CANARY]})
    assert bad.status_code == 422
    assert CANARY not in bad.text


async def test_bad_audit_seq_and_byte_string_state_are_400s(
    sqlite_server: Server, tmp_path: Path
) -> None:
    car = await make_car(tmp_path / "car")
    try:
        await car.connect(sqlite_server.url)
        vid = car.store.vehicle_id
        async with CloudClient(sqlite_server.url, car.store.identity) as client:
            with pytest.raises(CloudError) as audit:
                await client.call(
                    "POST", f"/v1/vehicles/{vid.hex()}/audit", body={"entries": [{"seq": "x"}]}
                )
            assert audit.value.status == 400
            # A state the car signed, holding a CBOR byte string: refused as malformed.
            # The car's own signature over a hostile payload.
            state = remote.sign_state(
                car.store.identity, {"Vehicle.Speed": b"\x00"}, now=int(time.time())
            )
            answer = await client.call(
                "POST",
                f"/v1/vehicles/{vid.hex()}/uplink",
                body={"t": "state", "body": base64.urlsafe_b64encode(state).decode().rstrip("=")},
            )
            assert answer["outcome"] == "forged"
    finally:
        await car.close()


def test_state_values_are_plain() -> None:
    key = SystemEntropy().new_private_key()
    for value in (b"\x00", [1], {"a": 1}, float("nan")):
        raw = remote.sign_state(key, {"x": value}, now=1)
        with pytest.raises(RemoteError):
            remote.verify_state(raw, vehicle_key=key.public_key)


async def _register(url: str, key: PrivateKey, owners: int = 1) -> None:
    async with CloudClient(url, key) as client:
        await client.call(
            "PUT",
            f"/v1/vehicles/{key.public_key.key_id.hex()}",
            body={
                "public_key": _b64(key.public_key.encoded),
                "name": "made up",
                "owners": [
                    _b64(SystemEntropy().new_private_key().public_key.encoded)
                    for _ in range(owners)
                ],
            },
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def test_made_up_cars_cost_a_bounded_amount(server: Server) -> None:
    assert server.hub is not None
    limits = server.hub.limits
    with pytest.raises(CloudError) as owners:  # a cap on owners per car
        await _register(server.url, SystemEntropy().new_private_key(), owners=64)
    assert owners.value.status == 422
    for _ in range(limits.new_cars_per_source):
        await _register(server.url, SystemEntropy().new_private_key())
    with pytest.raises(CloudError) as limited:  # then this address waits
        await _register(server.url, SystemEntropy().new_private_key())
    assert limited.value.status == 429


async def test_a_car_that_never_comes_online_is_forgotten(server: Server) -> None:
    assert server.hub is not None
    server.hub.limits = dataclasses.replace(server.hub.limits, unseen_car_ttl=0.0)
    ghost = SystemEntropy().new_private_key()
    await _register(server.url, ghost)
    await asyncio.sleep(0.01)
    await _register(server.url, SystemEntropy().new_private_key())  # sweeps as it registers
    async with CloudClient(server.url, ghost) as client:
        with pytest.raises(CloudError) as gone:
            await client.call("GET", f"/v1/vehicles/{ghost.public_key.key_id.hex()}")
    assert gone.value.status == 401  # the server no longer knows its key at all
