"""MQTT logins and topic rules (pure), and the embedded broker enforcing them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiomqtt
import pytest

from tests.cloud.rig import make_car, pair_owner
from tether.cloud.server import Server
from tether.link import topics
from tether.phone import cloud
from tether.phone.wallet import PhoneWallet
from tether.protocol.crypto import SystemEntropy

CAR = SystemEntropy().new_private_key()
OTHER = SystemEntropy().new_private_key()
VID = CAR.public_key.key_id.hex()


def test_car_login_is_a_fresh_signature_by_that_car() -> None:
    user, password = topics.car_login(CAR, 1_000_000)
    assert user == f"car:{VID}"
    assert topics.check_car_login(user, password, CAR.public_key, 1_000_100)
    assert not topics.check_car_login(user, password, CAR.public_key, 1_000_400)  # stale
    assert not topics.check_car_login(user, password, OTHER.public_key, 1_000_000)
    _, forged = topics.car_login(OTHER, 1_000_000)
    assert not topics.check_car_login(user, forged, CAR.public_key, 1_000_000)
    for bad in ("", "x", "1.!!", "1000000.", f"1000000.{'A' * 86}"):
        assert not topics.check_car_login(user, bad, CAR.public_key, 1_000_000)


@pytest.mark.parametrize(
    ("user", "topic", "action", "allowed"),
    [
        (topics.SERVER_USER, "tether/v1/x/down", "publish", True),
        (f"car:{VID}", f"tether/v1/{VID}/down", "subscribe", True),
        (f"car:{VID}", f"tether/v1/{VID}/up", "publish", True),
        (f"car:{VID}", f"tether/v1/{VID}/ha/state", "publish", True),
        (f"car:{VID}", f"homeassistant/lock/tether_{VID}/lock/config", "publish", True),
        (f"car:{VID}", f"tether/v1/{VID}/down", "publish", False),  # no commands to itself
        (f"car:{VID}", "tether/v1/+/down", "subscribe", False),
        (f"car:{VID}", "tether/v1/abc/up", "publish", False),  # not another car's voice
        (f"car:{VID}", "homeassistant/lock/tether_abc/lock/config", "publish", False),
        (None, "homeassistant/#", "subscribe", False),  # anonymous: nothing at all
        (None, "tether/v1/+/ha/#", "subscribe", False),
        (None, f"tether/v1/{VID}/ha/state", "receive", False),
        (f"ha:{'0' * 32}", "homeassistant/#", "subscribe", True),  # checked per message
        (f"ha:{'0' * 32}", f"tether/v1/{VID}/ha/state", "receive", False),  # not its owner's
        (f"ha:{'0' * 32}", f"homeassistant/lock/tether_{VID}/lock/config", "receive", False),
        (f"ha:{'0' * 32}", f"tether/v1/{VID}/ha/state", "publish", False),
        (None, f"tether/v1/{VID}/down", "subscribe", False),
        (None, f"tether/v1/{VID}/down", "receive", False),
        (None, f"tether/v1/{VID}/down", "publish", False),
        (None, "homeassistant/lock/x/config", "publish", False),
        ("someone", "tether/v1/+/up", "subscribe", False),
    ],
)
def test_topic_rules(user: str | None, topic: str, action: str, allowed: bool) -> None:
    assert topics.may(user, topic, action) is allowed


def test_home_assistant_reads_only_its_owners_cars() -> None:
    mine = frozenset({bytes.fromhex(VID)})
    user = f"ha:{'0' * 32}"
    assert topics.may(user, f"tether/v1/{VID}/ha/state", "receive", cars=mine)
    assert topics.may(user, f"homeassistant/lock/tether_{VID}/lock/config", "receive", cars=mine)
    assert not topics.may(user, f"tether/v1/{VID}/down", "receive", cars=mine)
    assert not topics.may(user, f"tether/v1/{VID}/up", "receive", cars=mine)
    assert not topics.may(user, f"tether/v1/{VID}/ha/state", "publish", cars=mine)


async def test_embedded_broker_binds_sessions(sqlite_server: Server, tmp_path: Path) -> None:
    car = await make_car(tmp_path / "car")
    try:
        await car.connect(sqlite_server.url)  # registers the car, logs in with its signature
        host, port, _ = topics.parse_broker(sqlite_server.mqtt_url)
        vid = car.store.vehicle_id
        # A login that claims the car without its key is refused.
        user, password = topics.car_login(OTHER, int(time.time()))
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(host, port, username=f"car:{vid.hex()}", password=password):
                pass
        assert user != f"car:{vid.hex()}"
        # An anonymous client is not let in at all.
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(host, port) as eve:
                await eve.subscribe("homeassistant/#")
        # A Home Assistant login of someone else's never hears the car's commands.
        stranger = await make_car(tmp_path / "stranger")
        stranger_owner = PhoneWallet.create(tmp_path / "s", name="S", passphrase="s")
        s_key = await pair_owner(stranger, stranger_owner)
        await stranger.connect(sqlite_server.url)
        login = await cloud.home_assistant_login(s_key, sqlite_server.url)
        async with aiomqtt.Client(
            host, port, username=login["username"], password=login["password"]
        ) as eve:
            await eve.subscribe(topics.down(vid), qos=1)
            assert sqlite_server.relay is not None
            sqlite_server.relay.publish(vid, {"t": "command", "raw": b"x"})
            heard: list[object] = []

            async def listen() -> None:
                async for message in eve.messages:
                    heard.append(message)

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listen(), 0.5)
            assert heard == []
        await stranger.close()
        stranger_owner.close()
    finally:
        await car.close()
