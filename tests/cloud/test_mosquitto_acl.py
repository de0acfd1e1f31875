"""Mosquitto as tether configures it (`tether mosquitto-setup`), a real broker process: no
anonymous reads, cars only on their own topics, Home Assistant only on its owner's cars."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from tests.cloud.rig import make_car, pair_owner
from tether.cloud.server import Server, ServerSettings
from tether.link import topics
from tether.phone import cloud
from tether.phone.wallet import PhoneWallet

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs mosquitto")


@pytest.fixture
async def mosquitto_server(
    broker: tuple[int, Path], tmp_path: Path
) -> AsyncIterator[tuple[Server, int]]:
    port, secrets = broker
    server = Server(
        ServerSettings(
            directory=tmp_path / "server",
            listen="http://127.0.0.1:0",
            mqtt=f"mqtt://127.0.0.1:{port}",
            mqtt_secrets=secrets,
        )
    )
    await server.start()
    yield server, port
    await server.stop()


async def _hears(client: aiomqtt.Client, seconds: float) -> list[str]:
    heard: list[str] = []

    async def listen() -> None:
        async for message in client.messages:
            heard.append(str(message.topic))

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(listen(), seconds)
    return heard


async def test_rules_on_a_real_mosquitto(
    mosquitto_server: tuple[Server, int], tmp_path: Path
) -> None:
    server, port = mosquitto_server
    car = await make_car(tmp_path / "car")
    other = await make_car(tmp_path / "other", name="Someone else's car")
    ada_wallet = PhoneWallet.create(tmp_path / "ada", name="Ada", passphrase="a")
    try:
        ada = await pair_owner(car, ada_wallet)
        await car.connect(server.url)  # registers, gets its broker login, connects with it
        await other.connect(server.url)
        vid, other_vid = car.store.vehicle_id, other.store.vehicle_id
        # Anonymous clients are not let in at all.
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", port) as anonymous:
                await anonymous.subscribe("homeassistant/#")
        # A car logged in as itself cannot listen to another car's commands.
        username, password = server.hub.dynsec.car_login(vid)  # type: ignore[union-attr]
        async with aiomqtt.Client("127.0.0.1", port, username=username, password=password) as c:
            await c.subscribe(topics.down(other_vid), qos=1)
            await c.subscribe(f"{topics.PREFIX}/+/up", qos=1)
            assert server.relay is not None
            server.relay.publish(other_vid, {"t": "command", "raw": b"x"})
            assert await _hears(c, 0.5) == []
        # Home Assistant with Ada's credential: Ada's car's discovery and state, never the other.
        login = await cloud.home_assistant_login(ada, server.url)
        async with aiomqtt.Client(
            "127.0.0.1", port, username=login["username"], password=login["password"]
        ) as ha:
            await ha.subscribe("homeassistant/#", qos=1)
            await ha.subscribe(f"{topics.PREFIX}/+/ha/#", qos=1)
            heard = await _hears(ha, 1.0)  # the retained discovery of both cars is on the broker
        assert any(f"tether_{vid.hex()}" in t for t in heard)
        assert not any(other_vid.hex() in t for t in heard)
    finally:
        await car.close()
        await other.close()
        ada_wallet.close()
