"""The issue's story end to end: invite, grant, friend unlock, remote revoke, friend refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.cloud.rig import eventually, make_car, pair_owner, run
from tether.cloud.server import Server
from tether.errors import PeerError
from tether.link.b64 import b64, unb64
from tether.phone import cloud
from tether.phone.wallet import PhoneWallet
from tether.protocol import remote
from tether.protocol.commands import Command
from tether.protocol.credentials import Limits


async def test_invite_grant_unlock_remote_revoke(server: Server, tmp_path: Path) -> None:
    car = await make_car(tmp_path / "car")
    owner = PhoneWallet.create(tmp_path / "ada", name="Ada", passphrase="a")
    friend = PhoneWallet.create(tmp_path / "bea", name="Bea", passphrase="b")
    try:
        ada_key = await pair_owner(car, owner)
        await car.connect(server.url)

        # The owner invites; the friend answers with a new key; the owner's phone signs a grant.
        link = await cloud.invite(ada_key, server.url, label="Bea")
        await cloud.request_key(friend, link, label="Bea", now=time.time())
        now = int(time.time())
        issued = await cloud.grant_requests(
            owner,
            ada_key,
            server.url,
            rights=frozenset({"unlock", "lock"}),
            not_before=now - 60,
            expires=now + 3600,
            limits=Limits(),
            now=now,
        )
        assert len(issued) == 1
        [bea_key] = await cloud.fetch_grants(friend, server.url, now=time.time())
        assert bea_key.rights == frozenset({"unlock", "lock"})

        # The friend unlocks at the car (first use enrols her key); start is not hers.
        [unlock, start] = await run(friend, bea_key.name, Command.UNLOCK, Command.START)
        assert unlock.result.ok
        assert not start.result.ok
        assert start.result.reason == "no_right"

        # The owner, far away, revokes through the cloud; the car applies and signs a receipt.
        status = await cloud.revoke(
            owner, ada_key, server.url, keys=[], serials=[issued[0].serial], now=time.time()
        )
        assert status.status == "pending"

        async def applied() -> bool:
            states = await cloud.revocations(ada_key, server.url)
            return [s.status for s in states] == ["applied"]

        await eventually(applied)
        with pytest.raises(PeerError) as refused:
            await run(friend, bea_key.name, Command.UNLOCK)
        assert refused.value.code == "unknown_key"

        # The owner's remote command still works, and its result is signed by the car.
        result = await cloud.command(owner, ada_key, server.url, Command.LOCK, now=time.time())
        assert result.ok
        assert car.body.state()["Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"] is True
    finally:
        await car.close()
        owner.close()
        friend.close()


async def test_a_command_waits_for_an_offline_car_and_one_post_answers_an_online_one(
    server: Server, tmp_path: Path
) -> None:
    car = await make_car(tmp_path / "car")
    owner = PhoneWallet.create(tmp_path / "ada", name="Ada", passphrase="a")
    try:
        ada = await pair_owner(car, owner)
        await car.connect(server.url)
        await car.disconnect()  # registered, now out of reach

        def envelope(which: Command) -> bytes:
            return remote.sign_envelope(
                ada.endpoint_key,
                vehicle_id=ada.vehicle_id,
                command=which,
                counter=owner.next_remote_counter(ada.name, time.time()),
                now=int(time.time()),
            )

        path = f"/v1/vehicles/{ada.vehicle_id.hex()}/commands"
        async with cloud.client_for(server.url, ada.endpoint_key) as http:
            honk = envelope(Command.HONK)
            pending = await http.call(
                "POST", path, body={"envelope": b64(honk)}, params={"wait": 0.3}
            )
            assert pending["status"] == "pending" and pending["result"] is None

            # The car comes back, finds the command in its inbox and answers; every poll gets it.
            polls = [
                asyncio.ensure_future(
                    http.call("GET", f"/v1/commands/{pending['id']}", params={"wait": 10})
                )
                for _ in range(2)
            ]
            await asyncio.sleep(0.2)  # both are waiting
            await car.connect(server.url)
            done, other = await asyncio.gather(*polls)
            assert done["status"] == "done" and other == done
            answered = remote.verify_result(
                unb64(done["result"]), vehicle_key=ada.vehicle_key, envelope_raw=honk
            )
            assert answered.ok

            # Online, one POST carries the command and brings back the car's signed result.
            lock = envelope(Command.LOCK)
            answer = await http.call(
                "POST", path, body={"envelope": b64(lock)}, params={"wait": 10}
            )
            assert answer["status"] == "done"
            result = remote.verify_result(
                unb64(answer["result"]), vehicle_key=ada.vehicle_key, envelope_raw=lock
            )
            assert result.ok
            # The same envelope again is not run twice: the stored answer comes back.
            again = await http.call("POST", path, body={"envelope": b64(lock)}, params={"wait": 1})
            assert again["status"] == "done" and again["result"] == answer["result"]
    finally:
        await car.close()
        owner.close()
