"""Every endpoint, called by a stranger, by a key of another car and by a revoked friend."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.rig import eventually, make_car, pair_owner
from tether.cloud.api import create_app
from tether.cloud.server import Server
from tether.errors import CloudError
from tether.link.client import CloudClient
from tether.phone import cloud
from tether.phone.wallet import PhoneWallet
from tether.protocol import remote
from tether.protocol.commands import Command
from tether.protocol.credentials import Limits
from tether.protocol.crypto import PrivateKey, SystemEntropy


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def _status(
    server: str, key: PrivateKey, method: str, path: str, body: dict[str, Any] | None
) -> int:
    async with CloudClient(server, key) as client:
        try:
            await client.call(method, path, body=body)
        except CloudError as exc:
            return exc.status
    return 200


async def test_every_endpoint_refuses_strangers_and_revoked_friends(
    sqlite_server: Server, tmp_path: Path
) -> None:
    url = sqlite_server.url
    car = await make_car(tmp_path / "car")
    other = await make_car(tmp_path / "other", name="Someone else's car")
    owner = PhoneWallet.create(tmp_path / "ada", name="Ada", passphrase="a")
    friend = PhoneWallet.create(tmp_path / "bea", name="Bea", passphrase="b")
    eve = PhoneWallet.create(tmp_path / "eve", name="Eve", passphrase="e")
    try:
        ada = await pair_owner(car, owner)
        eve_key = await pair_owner(other, eve)  # Eve owns another car: a key the server knows
        await car.connect(url)
        await other.connect(url)
        vid = car.store.vehicle_id.hex()
        fleet = SystemEntropy().new_private_key()
        async with CloudClient(url, fleet) as client:
            await client.call(
                "POST", "/v1/fleets", body={"public_key": _b64(fleet.public_bytes), "name": "F"}
            )
        eve_fleet = SystemEntropy().new_private_key()  # Eve's own fleet, without Ada's car
        async with CloudClient(url, eve_fleet) as client:
            await client.call(
                "POST", "/v1/fleets", body={"public_key": _b64(eve_fleet.public_bytes), "name": "E"}
            )
        link = await cloud.invite(ada, url)
        await cloud.request_key(friend, link, label="Bea", now=time.time())
        now = int(time.time())
        [grant] = await cloud.grant_requests(
            owner,
            ada,
            url,
            rights=frozenset({"unlock", "lock", "share"}),
            not_before=now - 60,
            expires=now + 3600,
            limits=Limits(),
            now=now,
        )
        [bea] = await cloud.fetch_grants(friend, url, now=time.time())
        result = await cloud.command(owner, ada, url, Command.LOCK, now=time.time())
        assert result.ok
        async with CloudClient(url, ada.endpoint_key) as client:
            command_id = await _owner_command(client, vid)
        used_token = cloud.read_invite(link)[1]
        await cloud.revoke(owner, ada, url, keys=[], serials=[grant.serial], now=time.time())

        async def applied() -> bool:
            return [s.status for s in await cloud.revocations(ada, url)] == ["applied"]

        await eventually(applied)

        ha_login = await cloud.home_assistant_login(ada, url)  # Ada's: no one else may delete it
        stranger = SystemEntropy().new_private_key()
        body_key = _b64(stranger.public_bytes)
        routes: dict[tuple[str, str], dict[str, Any] | None] = {
            ("PUT", f"/v1/vehicles/{vid}"): {
                "public_key": _b64(car.store.identity.public_key.encoded),
                "name": "mine now",
                "owners": [body_key],
            },
            ("GET", f"/v1/vehicles/{vid}"): None,
            ("GET", f"/v1/vehicles/{vid}/telemetry"): None,
            ("POST", f"/v1/vehicles/{vid}/invitations"): {"label": "x"},
            ("POST", f"/v1/invitations/{used_token}/requests"): {"public_key": body_key},
            ("GET", f"/v1/vehicles/{vid}/requests"): None,
            ("POST", f"/v1/vehicles/{vid}/grants"): {"bundle": _b64(b"\xa0")},
            ("POST", f"/v1/vehicles/{vid}/revocations"): {"revocation": _b64(b"\xa0")},
            ("GET", f"/v1/vehicles/{vid}/revocations"): None,
            ("POST", f"/v1/vehicles/{vid}/commands"): {"envelope": _b64(b"\xa0")},
            ("GET", f"/v1/commands/{command_id}"): None,
            ("GET", f"/v1/vehicles/{vid}/inbox"): None,
            ("POST", f"/v1/vehicles/{vid}/uplink"): {"t": "state", "body": _b64(b"\xa0")},
            ("POST", f"/v1/vehicles/{vid}/audit"): {"entries": []},
            ("GET", f"/v1/vehicles/{vid}/audit"): None,
            ("POST", f"/v1/fleets/{fleet.public_key.key_id.hex()}/vehicles"): {"vehicle_id": vid},
            ("GET", f"/v1/fleets/{fleet.public_key.key_id.hex()}"): None,
            ("POST", f"/v1/fleets/{fleet.public_key.key_id.hex()}/grants"): {"bundles": []},
            ("POST", f"/v1/fleets/{fleet.public_key.key_id.hex()}/revocations"): {
                "revocations": []
            },
            ("DELETE", f"/v1/homeassistant/credentials/{ha_login['id']}"): None,
        }
        # Open by design: the mailbox (a key sees only its own grants), creating one's own fleet,
        # health, reading an invitation (its token is the secret), an owner's Home Assistant login.
        open_routes = {
            ("GET", "/v1/mailbox"),
            ("POST", "/v1/fleets"),
            ("GET", "/v1/health"),
            ("GET", "/v1/invitations/{token}"),
            ("POST", "/v1/homeassistant/credentials"),  # any owner, for its own cars only
        }
        spec = create_app(sqlite_server.hub).openapi()["paths"]  # type: ignore[arg-type]
        documented = {(m.upper(), p) for p, ops in spec.items() for m in ops}
        covered = {(m, _template(p, spec)) for m, p in routes} | open_routes
        assert documented == covered, documented ^ covered

        callers = {"stranger": stranger, "other owner": eve_key.endpoint_key}
        callers["other fleet"] = eve_fleet
        callers["revoked friend"] = bea.endpoint_key
        table: dict[str, dict[str, int]] = {}
        for who, key in callers.items():
            for (method, path), body in routes.items():
                table.setdefault(f"{method} {path}", {})[who] = await _status(
                    url, key, method, path, body
                )
        for route, answers in table.items():
            assert answers["stranger"] in (401, 404), (route, answers)
            for who in ("other owner", "other fleet", "revoked friend"):
                assert answers[who] in (401, 403, 404), (route, who, answers)
        # The revoked friend's mailbox no longer offers the grant.
        async with CloudClient(url, bea.endpoint_key) as client:
            assert (await client.call("GET", "/v1/mailbox"))["grants"] == []
        # The car still has its real owner, and the owner can still act.
        assert car.store.owner_key(ada.endpoint_id) is not None
        assert (await cloud.command(owner, ada, url, Command.UNLOCK, now=time.time())).ok
    finally:
        await car.close()
        await other.close()
        for wallet in (owner, friend, eve):
            wallet.close()


async def _owner_command(client: CloudClient, vid: str) -> str:
    """The id of a command the owner sent (others must not read it)."""
    envelope = remote.sign_envelope(
        client.key,
        vehicle_id=bytes.fromhex(vid),
        command=Command.HONK,
        counter=int(time.time() * 1000) + 7,
        now=int(time.time()),
    )
    answer = await client.call(
        "POST", f"/v1/vehicles/{vid}/commands", body={"envelope": _b64(envelope)}
    )
    return str(answer["id"])


def _template(path: str, spec: dict[str, Any]) -> str:
    parts = path.split("/")
    for candidate in spec:
        cparts = candidate.split("/")
        if len(cparts) == len(parts) and all(
            c == p or (c.startswith("{") and c.endswith("}"))
            for c, p in zip(cparts, parts, strict=True)
        ):
            return str(candidate)
    pytest.fail(f"{path} is not a documented route")
