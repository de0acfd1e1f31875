"""Fleets (bulk grants and revocations, audit copies), telemetry, and Home Assistant discovery."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiomqtt
import pytest

from tests.cloud.rig import eventually, make_car, pair_owner, run
from tether.cloud.server import Server
from tether.errors import CloudError, PeerError
from tether.link import topics
from tether.phone import cloud
from tether.phone.wallet import PhoneWallet
from tether.protocol.commands import Command


async def test_operator_grants_and_revokes_renters_in_bulk(server: Server, tmp_path: Path) -> None:
    url = server.url
    operator = PhoneWallet.create(tmp_path / "operator", name="Rent-a-car", passphrase="o")
    cars = [await make_car(tmp_path / f"car{i}", name=f"Car {i}") for i in range(3)]
    renters = [
        PhoneWallet.create(tmp_path / f"renter{i}", name=f"Renter {i}", passphrase="r")
        for i in range(3)
    ]
    try:
        keys = [await pair_owner(car, operator, name=f"car{i}") for i, car in enumerate(cars)]
        for car in cars:
            await car.connect(url)
        await cloud.create_fleet(operator, url, name="Rent-a-car")
        for key in keys:
            await cloud.fleet_add(operator, key, url)
        for key, renter in zip(keys, renters, strict=True):
            link = await cloud.invite(key, url, label=renter.name)
            await cloud.request_key(renter, link, label=renter.name, now=time.time())
        fleet = await cloud.fleet_show(operator, url)
        assert [v["pending_requests"] for v in fleet["vehicles"]] == [1, 1, 1]

        now = int(time.time())
        issued = await cloud.fleet_grant_pending(
            operator,
            url,
            rights=frozenset({"unlock", "lock", "drive"}),
            not_before=now - 60,
            expires=now + 7200,
            now=now,
        )
        assert sorted(g.car for g in issued) == ["car0", "car1", "car2"]
        for renter in renters:
            [key] = await cloud.fetch_grants(renter, url, now=time.time())
            [unlocked, started] = await run(renter, key.name, Command.UNLOCK, Command.START)
            assert unlocked.result.ok and started.result.ok

        # The end of the rentals: one batch; every car applies it, even one that was offline.
        await cars[2].disconnect()
        assert await cloud.fleet_revoke_all(operator, url, now=time.time()) == 3

        async def applied(count: int) -> bool:
            done = 0
            for key in keys:
                done += sum(s.status == "applied" for s in await cloud.revocations(key, url))
            return done == count

        await eventually(lambda: applied(2))
        await cars[2].connect(url)  # back online: it catches up from its inbox
        await eventually(lambda: applied(3))
        for renter in renters:
            [key] = renter.cars()
            with pytest.raises(PeerError) as refused:
                await run(renter, key.name, Command.UNLOCK)
            assert refused.value.code == "unknown_key"

        # The operator reads each car's audit log, copied to the server, chain intact.
        fleet_key = cloud.fleet_key(operator)

        async def uploaded() -> list[dict[str, object]]:
            entries = await cloud.audit(fleet_key, keys[0].vehicle_id, url)
            return entries if any(e["command"] == "revoke" for e in entries) else []

        entries = await eventually(uploaded)
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
        assert {"unlock", "start", "revoke"} <= {str(e["command"]) for e in entries}
        # ...but not the audit of a car outside its fleet.
        other = await make_car(tmp_path / "other", name="Not in the fleet")
        try:
            other_key = await pair_owner(other, operator, name="other")
            await other.connect(url)
            with pytest.raises(CloudError) as refused_audit:
                await cloud.audit(fleet_key, other_key.vehicle_id, url)
            assert refused_audit.value.status == 403
        finally:
            await other.close()
    finally:
        for car in cars:
            await car.close()
        for wallet in (operator, *renters):
            wallet.close()


async def test_telemetry_and_home_assistant_discovery(
    sqlite_server: Server, tmp_path: Path
) -> None:
    url = sqlite_server.url
    car = await make_car(tmp_path / "car")
    owner = PhoneWallet.create(tmp_path / "ada", name="Ada", passphrase="a")
    host, port, _ = topics.parse_broker(sqlite_server.mqtt_url)
    try:
        ada = await pair_owner(car, owner)
        await car.connect(url)
        login = await cloud.home_assistant_login(ada, url)  # scoped to Ada's cars
        await car.disconnect()
        async with aiomqtt.Client(
            host,
            port,
            protocol=aiomqtt.ProtocolVersion.V311,
            username=login["username"],
            password=login["password"],
        ) as ha:
            await ha.subscribe("homeassistant/#", qos=1)
            await ha.subscribe(topics.ha_state(car.store.vehicle_id), qos=1)
            await car.connect(url)
            assert (await cloud.command(owner, ada, url, Command.UNLOCK, now=time.time())).ok
            configs: dict[str, dict[str, object]] = {}
            states: list[dict[str, object]] = []

            async def listen() -> None:
                async for message in ha.messages:
                    payload = json.loads(bytes(message.payload))
                    if str(message.topic).startswith("homeassistant/"):
                        configs[str(message.topic)] = payload
                    else:
                        states.append(payload)
                    if len(configs) >= 5 and any(not s["locked"] for s in states):
                        return

            await asyncio.wait_for(listen(), 10)
        vid = car.store.vehicle_id.hex()
        components = sorted(t.split("/")[1] for t in configs)
        assert components == [
            "binary_sensor",
            "binary_sensor",
            "binary_sensor",
            "device_tracker",
            "sensor",
        ]
        lock = configs[f"homeassistant/binary_sensor/tether_{vid}/lock/config"]
        assert lock["device_class"] == "lock" and "command_topic" not in lock
        assert all("command_topic" not in c for c in configs.values())  # state only
        assert states[-1]["locked"] is False and states[-1]["battery"] == 80.0

        async def reported() -> dict[str, object]:
            info = await cloud.telemetry(ada, url)
            state = info.get("state", {})
            assert isinstance(state, dict)
            unlocked = state.get("Vehicle.Cabin.Door.Row1.DriverSide.IsLocked") is False
            return info if unlocked and info["history"] else {}

        info = await eventually(reported)
        state = info["state"]
        assert isinstance(state, dict)
        assert not any("Seat" in name or "HVAC" in name for name in state)
    finally:
        await car.close()
        owner.close()
