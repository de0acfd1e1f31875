"""Standing on the server comes only from its authority (issue 14): a friend holding `share` who
knows the owner's public key, and a stranger who registers first, against SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from tests.cloud.rig import make_car, pair_owner
from tether.cloud.server import Server
from tether.errors import CloudError
from tether.link import bundles
from tether.link.client import CloudClient
from tether.phone import cloud, sharing
from tether.phone.wallet import PhoneWallet
from tether.protocol.credentials import Limits
from tether.protocol.crypto import SystemEntropy


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def test_a_friend_with_share_cannot_demote_or_revoke_the_owner(
    server: Server, tmp_path: Path
) -> None:
    car = await make_car(tmp_path / "car")
    owner = PhoneWallet.create(tmp_path / "ada", name="Ada", passphrase="a")
    friend = PhoneWallet.create(tmp_path / "bea", name="Bea", passphrase="b")
    try:
        ada = await pair_owner(car, owner)
        await car.connect(server.url)
        link = await cloud.invite(ada, server.url, label="Bea")
        await cloud.request_key(friend, link, label="Bea", now=time.time())
        now = int(time.time())
        [issued] = await cloud.grant_requests(
            owner,
            ada,
            server.url,
            rights=frozenset({"unlock", "lock", "share"}),
            not_before=now - 60,
            expires=now + 3600,
            limits=Limits(),
            now=now,
        )
        [bea] = await cloud.fetch_grants(friend, server.url, now=time.time())
        # Bea recovers Ada's public key (it is in every grant Ada signs) and signs a sub-grant
        # naming it, then posts it: the server must not let that make Ada a friend.
        trap, _ = sharing.grant(
            bea,
            bundles.KeyRequest(key=ada.endpoint_key.public_key, label="Ada"),
            rights=frozenset({"unlock"}),
            not_before=now - 60,
            expires=now + 600,
            limits=Limits(),
            now=now,
        )
        async with CloudClient(server.url, bea.endpoint_key) as client:
            with pytest.raises(CloudError) as refused:
                await client.call(
                    "POST",
                    f"/v1/vehicles/{car.store.vehicle_id.hex()}/grants",
                    body={"bundle": _b64(trap.encode())},
                )
        assert refused.value.status == 409
        info = await cloud.telemetry(ada, server.url)  # Ada is still the owner
        assert info["your_role"] == "owner"
        # Ada revokes Bea through the cloud: the cascade reaches Bea, never Ada.
        await cloud.revoke(
            owner, ada, server.url, keys=[], serials=[issued.serial], now=time.time()
        )
        info = await cloud.telemetry(ada, server.url)
        assert info["your_role"] == "owner"
        async with CloudClient(server.url, bea.endpoint_key) as client:
            with pytest.raises(CloudError) as closed:
                await client.call("GET", f"/v1/vehicles/{car.store.vehicle_id.hex()}")
        assert closed.value.status == 403
    finally:
        await car.close()
        owner.close()
        friend.close()


async def test_listing_a_key_claims_nothing(server: Server, tmp_path: Path) -> None:
    """A stranger registers a made-up car that lists the victim car's public key as an owner: the
    victim car still registers, and the made-up car gains nothing over it."""
    victim = await make_car(tmp_path / "victim")
    fake = SystemEntropy().new_private_key()
    try:
        async with CloudClient(server.url, fake) as client:
            await client.call(
                "PUT",
                f"/v1/vehicles/{fake.public_key.key_id.hex()}",
                body={
                    "public_key": _b64(fake.public_key.encoded),
                    "name": "squatter",
                    "owners": [_b64(victim.store.identity.public_key.encoded)],
                },
            )
        await victim.connect(server.url)  # registers itself: not "already registered as a phone"
        async with CloudClient(server.url, victim.store.identity) as client:
            with pytest.raises(CloudError) as refused:  # the victim is no owner of the fake car
                await client.call("GET", f"/v1/vehicles/{fake.public_key.key_id.hex()}/telemetry")
            assert refused.value.status == 403
        # And a real car's key can no longer be listed by anyone as a phone.
        async with CloudClient(server.url, fake) as client:
            with pytest.raises(CloudError) as listed:
                await client.call(
                    "PUT",
                    f"/v1/vehicles/{fake.public_key.key_id.hex()}",
                    body={
                        "public_key": _b64(fake.public_key.encoded),
                        "name": "squatter",
                        "owners": [_b64(victim.store.identity.public_key.encoded)],
                    },
                )
            assert listed.value.status == 400
    finally:
        await victim.close()


async def test_no_car_joins_a_fleet_without_its_operator(server: Server, tmp_path: Path) -> None:
    car = await make_car(tmp_path / "car", name="[/red][bold]Eve's car")
    eve = PhoneWallet.create(tmp_path / "eve", name="Eve", passphrase="e")
    operator = PhoneWallet.create(tmp_path / "op", name="Op", passphrase="o")
    try:
        eve_key = await pair_owner(car, eve)
        await car.connect(server.url)
        fleet = await cloud.create_fleet(operator, server.url, name="Rentals")
        async with CloudClient(server.url, eve_key.endpoint_key) as client:
            offered = await client.call(
                "POST",
                f"/v1/fleets/{fleet}/vehicles",
                body={"vehicle_id": car.store.vehicle_id.hex()},
            )
        assert offered["status"] == "waiting for the operator"
        shown = await cloud.fleet_show(operator, server.url)
        assert shown["vehicles"] == []  # not in the fleet: no state, no grants through it
        assert [o["name"] for o in shown["offers"]] == ["[/red][bold]Eve's car"]
        status = await cloud.fleet_accept(operator, server.url, car.store.vehicle_id.hex())
        assert status == "member"
        shown = await cloud.fleet_show(operator, server.url)
        assert [v["vehicle_id"] for v in shown["vehicles"]] == [car.store.vehicle_id.hex()]
    finally:
        await car.close()
        eve.close()
        operator.close()
