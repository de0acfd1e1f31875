"""An attacker holds the whole server database and its broker: the car refuses everything forged.

The server keeps no key that can sign a grant, a revocation or a command, so what the attacker
writes into its tables or publishes on the broker is refused by the car (and audited there), and
what it claims the car said (results, receipts) is refused by the owner's phone.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiomqtt
import cbor2
import pytest
import sqlalchemy as sa

from tests.cloud.rig import eventually, make_car, pair_owner, run
from tether.cloud import db
from tether.cloud.server import Server
from tether.errors import PeerError, RemoteError
from tether.link import topics
from tether.link.b64 import b64
from tether.phone import cloud, sharing
from tether.phone.wallet import PhoneWallet
from tether.protocol import credentials, remote
from tether.protocol.commands import Command
from tether.protocol.crypto import SystemEntropy, sha256

LOCKED = "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"


async def test_attacker_with_the_database_cannot_open_the_car(
    sqlite_server: Server, tmp_path: Path
) -> None:
    url = sqlite_server.url
    assert sqlite_server.hub is not None
    engine = sqlite_server.hub.engine
    car = await make_car(tmp_path / "car")
    owner = PhoneWallet.create(tmp_path / "ada", name="Ada", passphrase="a")
    mallory = PhoneWallet.create(tmp_path / "mallory", name="Mallory", passphrase="m")
    try:
        ada = await pair_owner(car, owner)
        await car.connect(url)
        vid = car.store.vehicle_id
        assert (await cloud.command(owner, ada, url, Command.LOCK, now=time.time())).ok
        assert car.body.state()[LOCKED] is True

        # 1. Mallory writes herself into the database as an owner of the car, signs a grant for
        #    her own key and gets it through the server's mailbox: the car does not know her key.
        evil = SystemEntropy().new_private_key()
        with engine.begin() as conn:
            conn.execute(
                sa.insert(db.principals).values(
                    key_id=evil.public_key.key_id,
                    public_key=evil.public_bytes,
                    kind="phone",
                    created_at=time.time(),
                )
            )
            conn.execute(
                sa.insert(db.members).values(
                    vehicle_id=vid, key_id=evil.public_key.key_id, role="owner", revoked=False
                )
            )
        fake_owner = mallory.add_car(
            name="stolen",
            vehicle_key=ada.vehicle_key,
            vehicle_name=ada.vehicle_name,
            address=car.address,
            endpoint_key=evil,
            role="owner",
            now=time.time(),
        )
        link = await cloud.invite(fake_owner, url)  # the server believes its database
        await cloud.request_key(mallory, link, label="Mallory", now=time.time())
        now = int(time.time())
        await cloud.grant_requests(
            mallory,
            fake_owner,
            url,
            rights=frozenset({"unlock", "drive"}),
            not_before=now - 10,
            expires=now + 3600,
            limits=credentials.Limits(),
            now=now,
        )
        [granted] = await cloud.fetch_grants(mallory, url, now=time.time())
        with pytest.raises(PeerError) as refused:
            await run(mallory, granted.name, Command.UNLOCK)
        assert refused.value.code == "grant_unknown_issuer"

        # 2. Commands signed by her key, sent through the API as the "owner" the database says
        #    she is: the car does not know the key.
        result = await cloud.command(mallory, fake_owner, url, Command.UNLOCK, now=time.time())
        assert not result.ok and result.reason == "unknown_key"

        # 3. She replays the owner's stored envelope on the broker, and tampers with another.
        with engine.begin() as conn:
            [stored] = conn.execute(
                sa.select(db.commands.c.envelope).where(db.commands.c.key_id == ada.endpoint_id)
            ).all()
        envelope = bytes(stored.envelope)
        tag = cbor2.loads(envelope)
        body = cbor2.loads(tag.value[2])
        body["cmd"] = "unlock"
        tampered = cbor2.dumps(
            cbor2.CBORTag(
                18, [tag.value[0], tag.value[1], cbor2.dumps(body, canonical=True), tag.value[3]]
            ),
            canonical=True,
        )
        host, port, _ = topics.parse_broker(sqlite_server.mqtt_url)
        # A stranger on the broker is not even let in (no anonymous clients)...
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V311) as anon:
                await anon.publish(
                    topics.down(vid), topics.encode({"t": "command", "raw": tampered}), qos=1
                )
        await asyncio.sleep(0.3)
        assert "command_bad_signature" not in {e.reason for e in car.store.audit_entries()}
        # ...but Mallory holds the whole server, its broker password included.
        assert sqlite_server.broker is not None
        async with aiomqtt.Client(
            host,
            port,
            protocol=aiomqtt.ProtocolVersion.V311,
            username=topics.SERVER_USER,
            password=sqlite_server.broker.secret,
        ) as mqtt:
            for raw in (envelope, tampered):
                await mqtt.publish(
                    topics.down(vid), topics.encode({"t": "command", "raw": raw}), qos=1
                )
            # 4. A revocation of the real owner, signed by Mallory.
            revocation = credentials.issue_revocation(
                evil,
                vehicle_id=vid,
                seq=int(time.time() * 1000) + 10**9,
                keys=[ada.endpoint_id],
                issued_at=int(time.time()),
            )
            await mqtt.publish(
                topics.down(vid), topics.encode({"t": "revocation", "raw": revocation}), qos=1
            )

        async def audited() -> set[str]:
            reasons = {e.reason for e in car.store.audit_entries()}
            wanted = {"command_bad_signature", "revocation_unknown_issuer", "unknown_key"}
            return reasons if wanted <= reasons else set()

        reasons = await eventually(audited)
        assert "grant_unknown_issuer" in reasons
        # The stored envelope's replay was refused as a replay (its copy was answered from cache
        # with the first result, or refused by its counter after a restart).
        assert car.body.state()[LOCKED] is True
        assert car.store.owner_key(ada.endpoint_id) is not None

        # 5. The database says a command succeeded and a revocation was applied: the phone checks
        #    the car's signature and is not fooled.
        fake = remote.sign_result(evil, envelope, ok=True, reason="", message="Done.", now=now)
        with pytest.raises(RemoteError):
            remote.verify_result(fake, vehicle_key=ada.vehicle_key, envelope_raw=envelope)
        seq, raw = sharing.make_revocation(
            owner, ada, keys=[evil.public_key.key_id], serials=[], now=time.time()
        )
        await car.disconnect()  # the car is offline: the revocation stays pending
        async with cloud.client_for(url, ada.endpoint_key) as client:
            await client.call(
                "POST", f"/v1/vehicles/{vid.hex()}/revocations", body={"revocation": b64(raw)}
            )
        forged_receipt = remote.sign_receipt(evil, raw, seq=seq, ok=True, reason="", now=now)
        with engine.begin() as conn:
            conn.execute(
                sa.update(db.revocations)
                .where(db.revocations.c.digest == sha256(raw))
                .values(status="applied", receipt=forged_receipt)
            )
        [state] = [s for s in await cloud.revocations(ada, url) if s.seq == seq]
        assert state.status == "unverified"

        # 6. Everything refused was audited on the car; the owner still opens it.
        [ok] = await run(owner, ada.name, Command.UNLOCK)
        assert ok.result.ok
    finally:
        await car.close()
        owner.close()
        mallory.close()
