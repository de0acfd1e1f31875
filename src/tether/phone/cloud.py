"""What a phone does through the cloud: invite, request, grant, fetch, revoke, command remotely.

The server carries; the phone signs. Every grant, revocation and command is made here with the
wallet's keys and checked by the car; every answer the car signed (a command's result, a
revocation's receipt) is verified here with the car's key before the user is told it happened.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tether.errors import LocalCode, RemoteError, TransportError, UsageError
from tether.link import bundles
from tether.link.b64 import b64, unb64
from tether.link.status import Status
from tether.phone import sharing
from tether.phone.wallet import CarKey, IssuedGrant, PhoneWallet
from tether.protocol import credentials, remote
from tether.protocol.commands import Command
from tether.protocol.crypto import PrivateKey, PublicKey, SystemEntropy
from tether.protocol.names import Role

if TYPE_CHECKING:
    from tether.link.client import CloudClient

INVITE_PREFIX = "tether://invite/"


def client_for(server: str, key: PrivateKey) -> CloudClient:
    # httpx and its kin load only when a command really talks to a server (~50 ms of every
    # other CLI command's start).
    from tether.link.client import CloudClient

    return CloudClient(server, key)


# -- owner: invitations, requests, grants ----------------------------------------------------------
async def invite(car: CarKey, server: str, *, label: str = "", ttl: int = 7 * 86_400) -> str:
    """(Owner) A single-use invitation link for a friend: tether://invite/<server>#<token>."""
    _owner(car)
    async with client_for(server, car.endpoint_key) as client:
        answer = await client.call(
            "POST",
            f"/v1/vehicles/{car.vehicle_id.hex()}/invitations",
            body={"label": label, "ttl": ttl},
        )
    return f"{INVITE_PREFIX}{b64(server.encode())}#{answer['token']}"


def read_invite(link: str) -> tuple[str, str]:
    """(server URL, token) from an invitation link."""
    if not link.startswith(INVITE_PREFIX) or "#" not in link:
        raise UsageError("an invitation link starts with tether://invite/")
    encoded, _, token = link[len(INVITE_PREFIX) :].partition("#")
    try:
        server = unb64(encoded).decode()
    except (ValueError, UnicodeDecodeError):
        raise UsageError("the invitation link is damaged") from None
    if urlsplit(server).scheme not in ("http", "https") or not token:
        raise UsageError("the invitation link is damaged")
    return server, token


async def pending_requests(car: CarKey, server: str) -> list[dict[str, Any]]:
    """(Owner) Key requests that friends sent for this car and that were not granted yet."""
    async with client_for(server, car.endpoint_key) as client:
        answer = await client.call("GET", f"/v1/vehicles/{car.vehicle_id.hex()}/requests")
    return [r for r in answer.get("requests", []) if r.get("status") == Status.PENDING]


async def grant_requests(
    wallet: PhoneWallet,
    car: CarKey,
    server: str,
    *,
    rights: frozenset[str],
    not_before: int,
    expires: int,
    limits: credentials.Limits,
    now: int,
    only: str | None = None,
) -> list[IssuedGrant]:
    """(Owner) Sign a grant for each pending request (or the one whose key id starts ``only``)."""
    requests = await pending_requests(car, server)
    if only is not None:
        requests = [r for r in requests if r["key_id"].startswith(only.lower())]
    issued = []
    async with client_for(server, car.endpoint_key) as client:
        for request in requests:
            bundle, grant = sharing.grant(
                car,
                _key_request(request),
                rights=rights,
                not_before=not_before,
                expires=expires,
                limits=limits,
                now=now,
            )
            await client.call(
                "POST",
                f"/v1/vehicles/{car.vehicle_id.hex()}/grants",
                body={"bundle": b64(bundle.encode())},
            )
            wallet.record_issued(grant)
            issued.append(grant)
    return issued


# -- friend: answer an invitation, fetch the grant -------------------------------------------------
async def request_key(wallet: PhoneWallet, link: str, *, label: str, now: float) -> dict[str, Any]:
    """(Friend) Make a new key for the invited car and send its request through the server."""
    server, token = read_invite(link)
    key = SystemEntropy().new_private_key()
    async with client_for(server, key) as client:
        info = await client.call("GET", f"/v1/invitations/{token}", signed=False)
        answer = await client.call(
            "POST",
            f"/v1/invitations/{token}/requests",
            body={"public_key": b64(key.public_bytes), "label": label[:64]},
        )
    wallet.add_request(key, now=now)
    return {**answer, "vehicle_name": info.get("vehicle_name", ""), "server": server}


async def fetch_grants(wallet: PhoneWallet, server: str, *, now: float) -> list[CarKey]:
    """(Friend) Collect grants waiting for this phone's requested keys and store them."""
    accepted = []
    for key in wallet.pending_requests():
        async with client_for(server, key) as client:
            try:
                answer = await client.call("GET", "/v1/mailbox")
            except UsageError:
                continue
        for item in answer.get("grants", []):
            bundle = bundles.read_bundle(unb64(item["bundle"]))
            if bundle.leaf.grantee.key_id != key.public_key.key_id:
                continue  # not ours: the server may not slip us another key's grant
            accepted.append(sharing.accept(wallet, bundle, name="", now=now))
            break
    return accepted


# -- owner: revocations ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RevocationStatus:
    id: str
    seq: int
    status: Status  # applied and refused only with the car's verified receipt
    reason: str = ""


async def revoke(
    wallet: PhoneWallet,
    car: CarKey,
    server: str,
    *,
    keys: list[bytes],
    serials: list[bytes],
    now: float,
) -> RevocationStatus:
    """(Owner) Sign a revocation and queue it for the car, which may be far away and offline."""
    seq, raw = sharing.make_revocation(wallet, car, keys=keys, serials=serials, now=now)
    async with client_for(server, car.endpoint_key) as client:
        answer = await client.call(
            "POST",
            f"/v1/vehicles/{car.vehicle_id.hex()}/revocations",
            body={"revocation": b64(raw)},
        )
    wallet.mark_revoked(serials=serials, keys=keys, seq=seq)
    return RevocationStatus(id=answer["id"], seq=seq, status=answer["status"])


async def revocations(car: CarKey, server: str) -> list[RevocationStatus]:
    """(Owner) This car's revocations: 'applied' only with the car's verified signature."""
    async with client_for(server, car.endpoint_key) as client:
        answer = await client.call("GET", f"/v1/vehicles/{car.vehicle_id.hex()}/revocations")
    out = []
    for item in answer.get("revocations", []):
        status, reason = Status.PENDING, ""
        if item.get("receipt"):
            try:
                receipt = remote.verify_receipt(unb64(item["receipt"]), vehicle_key=car.vehicle_key)
            except RemoteError:
                status, reason = Status.UNVERIFIED, "the server's receipt is not signed by the car"
            else:
                if receipt.revocation.hex() == item["id"]:
                    status = Status.APPLIED if receipt.ok else Status.REFUSED
                    reason = receipt.reason
                else:
                    status, reason = Status.UNVERIFIED, "the receipt is for another revocation"
        out.append(RevocationStatus(id=item["id"], seq=item["seq"], status=status, reason=reason))
    return out


# -- remote commands -------------------------------------------------------------------------------
async def command(
    wallet: PhoneWallet, car: CarKey, server: str, which: Command, *, now: float, wait: float = 15.0
) -> remote.Result:
    """Send one signed command through the cloud; return the car's verified, signed result."""
    counter = wallet.next_remote_counter(car.name, now)
    envelope = remote.sign_envelope(
        car.endpoint_key, vehicle_id=car.vehicle_id, command=which, counter=counter, now=int(now)
    )
    async with client_for(server, car.endpoint_key) as client:
        # One round trip: the server relays the command and answers with the car's result.
        status = await client.call(
            "POST",
            f"/v1/vehicles/{car.vehicle_id.hex()}/commands",
            body={"envelope": b64(envelope)},
            params={"wait": wait},
            timeout=wait + 10,
        )
    if status.get("status") != Status.DONE or not status.get("result"):
        raise TransportError(
            "the car did not answer in time (it may be offline; the command expires by itself)",
            code=LocalCode.CAR_OFFLINE,
            may_have_succeeded=True,
        )
    return remote.verify_result(
        unb64(status["result"]), vehicle_key=car.vehicle_key, envelope_raw=envelope
    )


def _key_request(request: dict[str, Any]) -> bundles.KeyRequest:
    """A key request as the server lists it (the key is checked again when it is signed for)."""
    return bundles.KeyRequest(key=PublicKey(unb64(request["public_key"])), label=request["label"])


def _owner(car: CarKey) -> None:
    if car.role != Role.OWNER:
        raise UsageError("only an owner key can do this")


# -- fleets (an operator's wallet holds the owner key of every car, and one fleet key) -------------
FLEET_KEY = "fleet_key"


def fleet_key(wallet: PhoneWallet) -> PrivateKey:
    """The operator's fleet key (made on first use, sealed in the wallet like every key)."""
    scalar = wallet.read_sealed(FLEET_KEY)
    if scalar is None:
        key = SystemEntropy().new_private_key()
        wallet.write_sealed(FLEET_KEY, key.scalar())
        return key
    return PrivateKey.from_scalar(scalar)


async def create_fleet(wallet: PhoneWallet, server: str, *, name: str) -> str:
    key = fleet_key(wallet)
    async with client_for(server, key) as client:
        answer = await client.call(
            "POST", "/v1/fleets", body={"public_key": b64(key.public_bytes), "name": name}
        )
    return str(answer["fleet_id"])


async def fleet_add(wallet: PhoneWallet, car: CarKey, server: str) -> str:
    """(The car's owner, who is also the operator) Put the car in this wallet's fleet: asked as
    its owner, accepted as the operator; the car's membership status."""
    _owner(car)
    key = fleet_key(wallet)
    fleet = key.public_key.key_id.hex()
    body = {"vehicle_id": car.vehicle_id.hex()}
    async with client_for(server, car.endpoint_key) as client:
        await client.call("POST", f"/v1/fleets/{fleet}/vehicles", body=body)
    async with client_for(server, key) as client:
        answer = await client.call("POST", f"/v1/fleets/{fleet}/vehicles", body=body)
    return str(answer["status"])


async def fleet_accept(wallet: PhoneWallet, server: str, vehicle_id: str) -> str:
    """(Operator) Accept a car its owner offered to this wallet's fleet; its status."""
    key = fleet_key(wallet)
    fleet = key.public_key.key_id.hex()
    async with client_for(server, key) as client:
        answer = await client.call(
            "POST", f"/v1/fleets/{fleet}/vehicles", body={"vehicle_id": vehicle_id}
        )
    return str(answer["status"])


async def fleet_show(wallet: PhoneWallet, server: str) -> dict[str, Any]:
    key = fleet_key(wallet)
    async with client_for(server, key) as client:
        return await client.call("GET", f"/v1/fleets/{key.public_key.key_id.hex()}")


def _owned(wallet: PhoneWallet) -> dict[str, CarKey]:
    return {c.vehicle_id.hex(): c for c in wallet.cars() if c.role == Role.OWNER}


async def fleet_grant_pending(
    wallet: PhoneWallet,
    server: str,
    *,
    rights: frozenset[str],
    not_before: int,
    expires: int,
    now: int,
) -> list[IssuedGrant]:
    """(Operator) Grant every renter's pending key request, on every car of the fleet, at once."""
    key = fleet_key(wallet)
    fleet = key.public_key.key_id.hex()
    owned = _owned(wallet)
    bundles: list[str] = []
    issued: list[IssuedGrant] = []
    async with client_for(server, key) as client:
        listing = await client.call("GET", f"/v1/fleets/{fleet}")
        for vehicle in listing["vehicles"]:
            car = owned.get(vehicle["vehicle_id"])
            if car is None or not vehicle["pending_requests"]:
                continue
            answer = await client.call("GET", f"/v1/vehicles/{vehicle['vehicle_id']}/requests")
            for request in answer["requests"]:
                if request["status"] != Status.PENDING:
                    continue
                bundle, grant = sharing.grant(
                    car,
                    _key_request(request),
                    rights=rights,
                    not_before=not_before,
                    expires=expires,
                    limits=credentials.Limits(),
                    now=now,
                )
                bundles.append(b64(bundle.encode()))
                issued.append(grant)
        if bundles:
            await client.call("POST", f"/v1/fleets/{fleet}/grants", body={"bundles": bundles})
    for grant in issued:
        wallet.record_issued(grant)
    return issued


async def fleet_revoke_all(wallet: PhoneWallet, server: str, *, now: float) -> int:
    """(Operator) Revoke every unrevoked grant this wallet issued on the fleet's cars, at once."""
    key = fleet_key(wallet)
    fleet = key.public_key.key_id.hex()
    cars = {c.name: c for c in _owned(wallet).values()}
    async with client_for(server, key) as client:
        listing = await client.call("GET", f"/v1/fleets/{fleet}")
        in_fleet = {v["vehicle_id"] for v in listing["vehicles"]}
        by_car: dict[str, list[bytes]] = {}
        for grant in wallet.issued():
            car = cars.get(grant.car)
            if grant.revoked_seq is None and car is not None and car.vehicle_id.hex() in in_fleet:
                by_car.setdefault(grant.car, []).append(grant.serial)
        revocations = []
        for name, serials in by_car.items():
            _, raw = sharing.make_revocation(wallet, cars[name], keys=[], serials=serials, now=now)
            revocations.append((serials, raw))
        if revocations:
            await client.call(
                "POST",
                f"/v1/fleets/{fleet}/revocations",
                body={"revocations": [b64(raw) for _, raw in revocations]},
            )
    for serials, raw in revocations:
        wallet.mark_revoked(serials=serials, keys=[], seq=credentials.parse_revocation(raw).seq)
    return sum(len(s) for s, _ in revocations)


async def audit(client_key: PrivateKey, vehicle_id: bytes, server: str) -> list[dict[str, Any]]:
    """(Owner or fleet) The car's audit entries as uploaded to the server."""
    async with client_for(server, client_key) as client:
        answer = await client.call("GET", f"/v1/vehicles/{vehicle_id.hex()}/audit")
    return list(answer["entries"])


async def telemetry(car: CarKey, server: str, *, limit: int = 20) -> dict[str, Any]:
    """(Owner) The car's latest state and recent history."""
    async with client_for(server, car.endpoint_key) as client:
        info = await client.call("GET", f"/v1/vehicles/{car.vehicle_id.hex()}")
        history = await client.call(
            "GET", f"/v1/vehicles/{car.vehicle_id.hex()}/telemetry", params={"limit": limit}
        )
    return {**info, "history": history["history"]}


async def home_assistant_login(car: CarKey, server: str) -> dict[str, Any]:
    """(Owner) A Home Assistant MQTT login scoped to the cars this key owns (password once)."""
    _owner(car)
    async with client_for(server, car.endpoint_key) as client:
        answer: dict[str, Any] = await client.call("POST", "/v1/homeassistant/credentials")
    return answer
