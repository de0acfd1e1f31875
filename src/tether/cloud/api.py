"""The server's HTTP API (FastAPI, OpenAPI): every route signed, every caller checked.

Callers are keys, not accounts: a car signs with its identity key, a phone with its endpoint key
for that car, a fleet operator with its fleet key (RFC 9421, :mod:`tether.cloud.httpsig`).
Who may act on a car is what the car itself declared (its owners) plus the grantees of grants its
owners signed; a revocation the server relays also closes the server's doors to the revoked keys.
The server verifies every signed object it stores but can make none of them (docs/cloud.md).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import secrets
from collections.abc import Callable
from typing import Annotated, Any

import sqlalchemy as sa
from anyio import to_thread
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection, Engine

from tether.cloud import db, httpsig
from tether.errors import MalformedMessage, TetherError
from tether.phone.sharing import read_bundle
from tether.protocol import credentials, remote
from tether.protocol.credentials import Revocation
from tether.protocol.crypto import PublicKey, sha256

INVITATION_TTL = 7 * 86_400
MAX_WAIT = 30.0
HEX16 = r"^[0-9a-f]{32}$"
HEX32 = r"^[0-9a-f]{64}$"


# -- wire helpers ----------------------------------------------------------------------------------
def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise HTTPException(400, f"{what} is not base64url") from None


def _key(text: str, what: str) -> PublicKey:
    try:
        return PublicKey(unb64(text, what))
    except MalformedMessage:
        raise HTTPException(400, f"{what} is not a P-256 public key") from None


# -- request bodies (the OpenAPI document is generated from these) ---------------------------------
class VehicleRegistration(BaseModel):
    """A car declares itself: its key, its name, how phones reach it, and who its owners are."""

    public_key: str = Field(description="the car's identity key, SEC1 uncompressed, base64url")
    name: str = Field(max_length=128)
    address: str = Field("", max_length=256, description="tcp://HOST:PORT where phones reach it")
    owners: list[str] = Field(max_length=64, description="owner endpoint public keys, base64url")


class InvitationIn(BaseModel):
    label: str = Field("", max_length=64, description="who the invitation is for")
    ttl: int = Field(INVITATION_TTL, ge=60, le=30 * 86_400)


class KeyRequestIn(BaseModel):
    public_key: str = Field(description="the friend's new key for this car, base64url")
    label: str = Field("", max_length=64)


class GrantIn(BaseModel):
    bundle: str = Field(description="a grant bundle (phone.sharing) signed by an owner, base64url")


class RevocationIn(BaseModel):
    revocation: str = Field(description="an owner-signed revocation (COSE_Sign1), base64url")


class CommandIn(BaseModel):
    envelope: str = Field(description="a phone-signed remote command envelope, base64url")


class AuditIn(BaseModel):
    entries: list[dict[str, Any]] = Field(max_length=1000)


class FleetIn(BaseModel):
    public_key: str = Field(description="the operator's fleet key, base64url")
    name: str = Field(max_length=128)


class FleetVehicleIn(BaseModel):
    vehicle_id: str = Field(pattern=HEX16)


class BulkGrantsIn(BaseModel):
    bundles: list[str] = Field(max_length=1000)


class BulkRevocationsIn(BaseModel):
    revocations: list[str] = Field(max_length=1000)


# -- the hub: database, clock, and the relay to the cars -------------------------------------------
@dataclasses.dataclass(slots=True)
class Hub:
    """What the routes share; nothing here is state a second server instance would need."""

    engine: Engine
    clock: Callable[[], float]
    publish: Callable[[bytes, dict[str, Any]], None] = lambda vehicle_id, message: None
    #: Wakes long-polls in this process early; other instances poll the database.
    results: dict[bytes, asyncio.Event] = dataclasses.field(default_factory=dict)
    loop: asyncio.AbstractEventLoop | None = None

    def vehicle_key(self, vehicle_id: bytes) -> PublicKey | None:
        """A registered car's public key (the embedded broker checks car logins with it)."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(db.vehicles.c.public_key).where(db.vehicles.c.vehicle_id == vehicle_id)
            ).first()
        return PublicKey(bytes(row.public_key)) if row is not None else None

    def wake(self, digest: bytes) -> None:
        """Wake a long-poll for ``digest`` from whatever thread its result arrived on."""
        event = self.results.get(digest)
        if event is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(event.set)


@dataclasses.dataclass(frozen=True, slots=True)
class Caller:
    key_id: bytes
    kind: str


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _check_signature(
    hub: Hub, request: Request, body: bytes, introduced: PublicKey | None = None
) -> Caller:
    headers = {k.lower(): v for k, v in request.headers.items()}
    claimed, _, _ = httpsig.read_signature(headers)
    now = hub.clock()
    with hub.engine.begin() as conn:
        row = conn.execute(
            sa.select(db.principals.c.public_key, db.principals.c.kind).where(
                db.principals.c.key_id == claimed.key_id
            )
        ).first()
        if row is not None:
            key, kind = PublicKey(bytes(row.public_key)), str(row.kind)
        elif introduced is not None and introduced.key_id == claimed.key_id:
            key, kind = introduced, "new"
        else:
            raise httpsig.SignatureRefused("this key is not known here")
        httpsig.verify_request(
            key,
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            body=body,
            headers=headers,
            now=now,
        )
        conn.execute(
            sa.delete(db.nonces).where(db.nonces.c.created_at < now - 2 * httpsig.MAX_SKEW)
        )
        try:
            with conn.begin_nested():
                conn.execute(
                    sa.insert(db.nonces).values(
                        key_id=claimed.key_id, nonce=claimed.nonce, created_at=now
                    )
                )
        except sa.exc.IntegrityError:
            raise httpsig.SignatureRefused("this request was already received (a replay)") from None
    return Caller(key_id=claimed.key_id, kind=kind)


async def signed(request: Request) -> Caller:
    """Dependency: the verified caller of a request signed by a key the server knows."""
    body = await request.body()
    hub = _hub(request)
    return await to_thread.run_sync(_check_signature, hub, request, body)


SignedBy = Annotated[Caller, Depends(signed)]
HubDep = Annotated[Hub, Depends(_hub)]
VehicleId = Annotated[str, Path(pattern=HEX16, description="the car's key id, hex")]


def _forbidden(what: str = "you may not act on this car") -> HTTPException:
    return HTTPException(403, what)


def _role(conn: Connection, vehicle_id: bytes, key_id: bytes, now: float) -> str | None:
    """owner, friend (unrevoked, unexpired), or None."""
    row = conn.execute(
        sa.select(db.members.c.role, db.members.c.not_after, db.members.c.revoked).where(
            db.members.c.vehicle_id == vehicle_id, db.members.c.key_id == key_id
        )
    ).first()
    if row is None or row.revoked or (row.not_after is not None and now >= row.not_after):
        return None
    return str(row.role)


def _fleet_has(conn: Connection, fleet_id: bytes, vehicle_id: bytes) -> bool:
    return (
        conn.execute(
            sa.select(db.fleet_vehicles.c.vehicle_id).where(
                db.fleet_vehicles.c.fleet_id == fleet_id,
                db.fleet_vehicles.c.vehicle_id == vehicle_id,
            )
        ).first()
        is not None
    )


def _require(conn: Connection, vehicle_id: bytes, caller: Caller, now: float, *allowed: str) -> str:
    """The caller's standing on this car if it is one of ``allowed`` (owner/friend/fleet/car)."""
    if "car" in allowed and caller.key_id == vehicle_id:
        return "car"
    role = _role(conn, vehicle_id, caller.key_id, now)
    if role is not None and role in allowed:
        return role
    if (
        "fleet" in allowed
        and caller.kind == "fleet"
        and _fleet_has(conn, caller.key_id, vehicle_id)
    ):
        return "fleet"
    raise _forbidden()


def _vehicle_key(conn: Connection, vehicle_id: bytes) -> PublicKey:
    row = conn.execute(
        sa.select(db.vehicles.c.public_key).where(db.vehicles.c.vehicle_id == vehicle_id)
    ).first()
    if row is None:
        raise HTTPException(404, "no such car here")
    return PublicKey(bytes(row.public_key))


def _owner_lookup(conn: Connection, vehicle_id: bytes) -> Callable[[bytes], PublicKey | None]:
    owners = {
        bytes(r.key_id): PublicKey(bytes(r.public_key))
        for r in conn.execute(
            sa.select(db.principals.c.key_id, db.principals.c.public_key)
            .join(db.members, db.members.c.key_id == db.principals.c.key_id)
            .where(
                db.members.c.vehicle_id == vehicle_id,
                db.members.c.role == "owner",
                db.members.c.revoked == sa.false(),
            )
        )
    }
    return owners.get


def _add_principal(conn: Connection, key: PublicKey, kind: str, now: float) -> None:
    exists = conn.execute(
        sa.select(db.principals.c.kind).where(db.principals.c.key_id == key.key_id)
    ).first()
    if exists is None:
        conn.execute(
            sa.insert(db.principals).values(
                key_id=key.key_id, public_key=key.encoded, kind=kind, created_at=now
            )
        )
    elif exists.kind != kind:
        raise HTTPException(409, f"this key is already registered as a {exists.kind}")


def _upsert_member(
    conn: Connection, vehicle_id: bytes, key_id: bytes, role: str, not_after: float | None
) -> None:
    where = (db.members.c.vehicle_id == vehicle_id) & (db.members.c.key_id == key_id)
    row = conn.execute(sa.select(db.members.c.revoked).where(where)).first()
    if row is None:
        conn.execute(
            sa.insert(db.members).values(
                vehicle_id=vehicle_id, key_id=key_id, role=role, not_after=not_after, revoked=False
            )
        )
    elif not row.revoked:
        conn.execute(sa.update(db.members).where(where).values(role=role, not_after=not_after))


# -- the relay's views of signed objects -----------------------------------------------------------
def _store_grant(conn: Connection, vehicle_id: bytes, raw_bundle: bytes, now: float) -> str:
    """Check a bundle like the car will (owner-signed chain, this car) and put it in the mailbox."""
    try:
        bundle = read_bundle(raw_bundle)
        # A grant may start later: check it as of its start (expiry is still checked then).
        starts = max(credentials.parse_grant(g).not_before for g in bundle.chain)
        chain = credentials.verify_chain(
            bundle.chain,
            vehicle_id=vehicle_id,
            owner_key=_owner_lookup(conn, vehicle_id),
            is_revoked=lambda some_id: _is_revoked(conn, vehicle_id, some_id),
            now=max(now, float(starts)),
            max_depth=credentials.MAX_CHAIN,
        )
    except TetherError as exc:
        raise HTTPException(400, f"grant refused ({exc.code}): {exc.message}") from None
    leaf = chain.leaf
    if bundle.vehicle_key.key_id != vehicle_id:
        raise HTTPException(400, "the grant's car key is not this car's")
    exists = conn.execute(
        sa.select(db.grants.c.serial).where(db.grants.c.serial == leaf.serial)
    ).first()
    if exists is None:
        conn.execute(
            sa.insert(db.grants).values(
                serial=leaf.serial,
                vehicle_id=vehicle_id,
                grantee_id=leaf.grantee.key_id,
                issuer_id=leaf.issuer_id,
                bundle=raw_bundle,
                not_after=float(leaf.expires),
                created_at=now,
            )
        )
    _add_principal(conn, leaf.grantee, "phone", now)
    _upsert_member(conn, vehicle_id, leaf.grantee.key_id, "friend", float(leaf.expires))
    conn.execute(
        sa.update(db.key_requests)
        .where(db.key_requests.c.key_id == leaf.grantee.key_id)
        .values(status="granted")
    )
    return leaf.serial.hex()


def _is_revoked(conn: Connection, vehicle_id: bytes, some_id: bytes) -> bool:
    return (
        conn.execute(
            sa.select(db.members.c.key_id).where(
                db.members.c.vehicle_id == vehicle_id,
                db.members.c.key_id == some_id,
                db.members.c.revoked == sa.true(),
            )
        ).first()
        is not None
    )


def _verify_revocation(conn: Connection, vehicle_id: bytes, raw: bytes) -> Revocation:
    try:
        return credentials.verify_revocation(
            raw, vehicle_id=vehicle_id, owner_key=_owner_lookup(conn, vehicle_id)
        )
    except TetherError as exc:
        raise HTTPException(400, f"revocation refused ({exc.code}): {exc.message}") from None


def _store_revocation(
    conn: Connection,
    hub: Hub,
    vehicle_id: bytes,
    raw: bytes,
    now: float,
    *,
    verified: Revocation | None = None,
) -> dict[str, Any]:
    """Queue an owner-signed revocation for its car and close the server's doors to its keys."""
    revocation = verified or _verify_revocation(conn, vehicle_id, raw)
    digest = sha256(raw)
    exists = conn.execute(
        sa.select(db.revocations.c.status).where(db.revocations.c.digest == digest)
    ).first()
    if exists is None:
        conn.execute(
            sa.insert(db.revocations).values(
                digest=digest,
                vehicle_id=vehicle_id,
                seq=revocation.seq,
                raw=raw,
                created_at=now,
                status="pending",
            )
        )
    # The server's own view: revoked keys, and the holders of revoked grants (and their chains).
    keys = set(revocation.keys)
    serials = set(revocation.grants)
    rows = conn.execute(
        sa.select(db.grants.c.serial, db.grants.c.grantee_id, db.grants.c.bundle).where(
            db.grants.c.vehicle_id == vehicle_id
        )
    ).all()
    changed = True
    while changed:
        changed = False
        for row in rows:
            serial, grantee = bytes(row.serial), bytes(row.grantee_id)
            parents = {g.serial for g in _chain_of(bytes(row.bundle))[:-1]}
            hit = serial in serials or grantee in keys or bool(parents & serials)
            if hit and (serial not in serials or grantee not in keys):
                serials.add(serial)
                keys.add(grantee)
                changed = True
    if keys:
        conn.execute(
            sa.update(db.members)
            .where(db.members.c.vehicle_id == vehicle_id, db.members.c.key_id.in_(keys))
            .values(revoked=True)
        )
    status = "pending" if exists is None else str(exists.status)
    if status == "pending":
        hub.publish(vehicle_id, {"t": "revocation", "raw": raw})
    return {"id": digest.hex(), "seq": revocation.seq, "status": status}


def _chain_of(raw_bundle: bytes) -> list[credentials.Grant]:
    return [credentials.parse_grant(g) for g in read_bundle(raw_bundle).chain]


def _revocation_json(row: Any) -> dict[str, Any]:
    return {
        "id": bytes(row.digest).hex(),
        "seq": row.seq,
        "status": row.status,
        "created_at": row.created_at,
        "done_at": row.done_at,
        "receipt": b64(bytes(row.receipt)) if row.receipt is not None else None,
    }


# -- what the relay does with what the cars send ---------------------------------------------------
def accept_uplink(hub: Hub, vehicle_id: bytes, message: dict[str, Any]) -> str:
    """Store a car's signed result, receipt or state; anything not signed by that car is dropped."""
    kind, body = message.get("t"), message.get("body")
    if type(body) is not bytes:
        return "malformed"
    now = hub.clock()
    with hub.engine.begin() as conn:
        try:
            key = _vehicle_key(conn, vehicle_id)
        except HTTPException:
            return "unknown car"
        if kind == "result":
            outcome = _accept_result(conn, key, body, now)
        elif kind == "receipt":
            outcome = _accept_receipt(conn, key, body, now)
        elif kind == "state":
            outcome = _accept_state(conn, key, body, now)
        else:
            outcome = "unknown kind"
    if kind == "result" and outcome == "stored":
        hub.wake(remote.result_request(body))  # after the commit: the poll must see it
    return outcome


def _accept_result(conn: Connection, key: PublicKey, body: bytes, now: float) -> str:
    try:
        digest = remote.result_request(body)
    except remote.RemoteError:
        return "malformed"
    row = conn.execute(
        sa.select(db.commands.c.envelope, db.commands.c.status).where(
            db.commands.c.digest == digest, db.commands.c.vehicle_id == key.key_id
        )
    ).first()
    if row is None:
        return "unknown command"
    if row.status == "done":
        return "duplicate"
    try:
        remote.verify_result(body, vehicle_key=key, envelope_raw=bytes(row.envelope))
    except remote.RemoteError:
        return "forged"
    conn.execute(
        sa.update(db.commands)
        .where(db.commands.c.digest == digest)
        .values(status="done", result=body, done_at=now)
    )
    return "stored"


def _accept_receipt(conn: Connection, key: PublicKey, body: bytes, now: float) -> str:
    try:
        receipt = remote.verify_receipt(body, vehicle_key=key)
    except remote.RemoteError:
        return "forged"
    updated = conn.execute(
        sa.update(db.revocations)
        .where(
            db.revocations.c.digest == receipt.revocation,
            db.revocations.c.vehicle_id == key.key_id,
            db.revocations.c.status == "pending",
        )
        .values(status="applied" if receipt.ok else "refused", receipt=body, done_at=now)
    )
    return "stored" if updated.rowcount else "duplicate"


def _accept_state(conn: Connection, key: PublicKey, body: bytes, now: float) -> str:
    try:
        state = remote.verify_state(body, vehicle_key=key)
    except remote.RemoteError:
        return "forged"
    conn.execute(
        sa.update(db.vehicles)
        .where(db.vehicles.c.vehicle_id == key.key_id)
        .values(state=state.signals, state_at=float(state.at), last_seen=now)
    )
    conn.execute(
        sa.insert(db.telemetry).values(
            vehicle_id=key.key_id, at=float(state.at), state=state.signals
        )
    )
    return "stored"


# -- routes ----------------------------------------------------------------------------------------
class Problem(BaseModel):
    """Why a request was refused: a sentence, and for signature refusals a stable code."""

    detail: str
    code: str | None = None


_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "a signed object or value is refused, and why"},
    401: {"model": Problem, "description": "missing, stale, replayed or bad request signature"},
    403: {"model": Problem, "description": "the signing key may not do this"},
    404: {"model": Problem, "description": "no such thing (or not yours)"},
    409: {"model": Problem, "description": "conflicts with what the server holds"},
}
router = APIRouter(prefix="/v1")


@router.put("/vehicles/{vehicle_id}", tags=["cars"])
async def register_vehicle(
    vehicle_id: VehicleId, body: VehicleRegistration, request: Request, hub: HubDep
) -> dict[str, Any]:
    """A car registers itself (signed by its own key) and declares its owners."""
    key = _key(body.public_key, "public_key")
    if key.key_id.hex() != vehicle_id:
        raise HTTPException(400, "the public key does not match the car's id")
    raw = await request.body()
    caller = await to_thread.run_sync(_check_signature, hub, request, raw, key)
    if caller.key_id != key.key_id:
        raise _forbidden("only the car itself may register it")
    owners = [_key(o, "owners[]") for o in body.owners]

    def work() -> dict[str, Any]:
        now = hub.clock()
        vid = key.key_id
        with hub.engine.begin() as conn:
            _add_principal(conn, key, "vehicle", now)
            exists = conn.execute(
                sa.select(db.vehicles.c.vehicle_id).where(db.vehicles.c.vehicle_id == vid)
            ).first()
            values = {"name": body.name, "address": body.address, "last_seen": now}
            if exists is None:
                conn.execute(
                    sa.insert(db.vehicles).values(
                        vehicle_id=vid,
                        public_key=key.encoded,
                        registered_at=now,
                        state={},
                        **values,
                    )
                )
            else:
                conn.execute(
                    sa.update(db.vehicles).where(db.vehicles.c.vehicle_id == vid).values(**values)
                )
            declared = {o.key_id for o in owners}
            for owner in owners:
                _add_principal(conn, owner, "phone", now)
                _upsert_member(conn, vid, owner.key_id, "owner", None)
            # An owner the car no longer lists (revoked there) loses its standing here too.
            conn.execute(
                sa.update(db.members)
                .where(
                    db.members.c.vehicle_id == vid,
                    db.members.c.role == "owner",
                    db.members.c.key_id.not_in(declared) if declared else sa.true(),
                )
                .values(revoked=True)
            )
        return {
            "vehicle_id": vehicle_id,
            "owners": len(owners),
            "mqtt": getattr(request.app.state, "mqtt_url", ""),
        }

    return await to_thread.run_sync(work)


@router.get("/vehicles/{vehicle_id}", tags=["cars"])
def get_vehicle(vehicle_id: VehicleId, caller: SignedBy, hub: HubDep) -> dict[str, Any]:
    """The car's name, address, key, and (owners and fleets) its latest state."""
    vid = bytes.fromhex(vehicle_id)
    now = hub.clock()
    with hub.engine.begin() as conn:
        role = _require(conn, vid, caller, now, "owner", "friend", "fleet", "car")
        row = conn.execute(sa.select(db.vehicles).where(db.vehicles.c.vehicle_id == vid)).first()
        if row is None:
            raise HTTPException(404, "no such car here")
    out: dict[str, Any] = {
        "vehicle_id": vehicle_id,
        "name": row.name,
        "address": row.address,
        "public_key": b64(bytes(row.public_key)),
        "last_seen": row.last_seen,
        "your_role": role,
    }
    if role in ("owner", "fleet", "car"):
        out["state"] = row.state
        out["state_at"] = row.state_at
    return out


@router.get("/vehicles/{vehicle_id}/telemetry", tags=["cars"])
def get_telemetry(
    vehicle_id: VehicleId,
    caller: SignedBy,
    hub: HubDep,
    since: Annotated[float, Query(ge=0)] = 0.0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The car's state history (owners and its fleet)."""
    vid = bytes.fromhex(vehicle_id)
    with hub.engine.begin() as conn:
        _require(conn, vid, caller, hub.clock(), "owner", "fleet")
        rows = conn.execute(
            sa.select(db.telemetry.c.at, db.telemetry.c.state)
            .where(db.telemetry.c.vehicle_id == vid, db.telemetry.c.at >= since)
            .order_by(db.telemetry.c.at.desc())
            .limit(limit)
        ).all()
    return {"history": [{"at": r.at, "state": r.state} for r in rows]}


@router.post("/vehicles/{vehicle_id}/invitations", tags=["sharing"], status_code=201)
def create_invitation(
    vehicle_id: VehicleId, body: InvitationIn, caller: SignedBy, hub: HubDep
) -> dict[str, Any]:
    """(Owner) A single-use invitation; its token goes to the friend as a link or QR code."""
    vid = bytes.fromhex(vehicle_id)
    now = hub.clock()
    token = secrets.token_urlsafe(24)
    with hub.engine.begin() as conn:
        _require(conn, vid, caller, now, "owner")
        conn.execute(
            sa.insert(db.invitations).values(
                token_hash=hashlib.sha256(token.encode()).digest(),
                vehicle_id=vid,
                created_by=caller.key_id,
                label=body.label,
                created_at=now,
                expires_at=now + body.ttl,
                used=False,
            )
        )
    return {"token": token, "vehicle_id": vehicle_id, "expires_at": now + body.ttl}


@router.get("/invitations/{token}", tags=["sharing"])
def read_invitation(token: Annotated[str, Path(max_length=64)], hub: HubDep) -> dict[str, Any]:
    """What an invitation is for (the token is the secret; no signature needed to look)."""
    with hub.engine.begin() as conn:
        row = conn.execute(
            sa.select(db.invitations, db.vehicles.c.name, db.vehicles.c.public_key)
            .join(db.vehicles, db.vehicles.c.vehicle_id == db.invitations.c.vehicle_id)
            .where(db.invitations.c.token_hash == hashlib.sha256(token.encode()).digest())
        ).first()
    if row is None or row.used or row.expires_at <= hub.clock():
        raise HTTPException(404, "no such invitation, or it was used or has expired")
    return {
        "vehicle_id": bytes(row.vehicle_id).hex(),
        "vehicle_name": row.name,
        "vehicle_key": b64(bytes(row.public_key)),
        "label": row.label,
        "expires_at": row.expires_at,
    }


@router.post("/invitations/{token}/requests", tags=["sharing"], status_code=201)
async def answer_invitation(
    token: Annotated[str, Path(max_length=64)],
    body: KeyRequestIn,
    request: Request,
    hub: HubDep,
) -> dict[str, Any]:
    """(Friend) Send a key request for the invitation, signed by the new key it names."""
    key = _key(body.public_key, "public_key")
    raw = await request.body()
    caller = await to_thread.run_sync(_check_signature, hub, request, raw, key)
    if caller.key_id != key.key_id:
        raise _forbidden("sign the key request with the key it names")

    def work() -> dict[str, Any]:
        now = hub.clock()
        digest = hashlib.sha256(token.encode()).digest()
        with hub.engine.begin() as conn:
            row = conn.execute(
                sa.select(db.invitations)
                .where(db.invitations.c.token_hash == digest)
                .with_for_update()
            ).first()
            if row is None or row.used or row.expires_at <= now:
                raise HTTPException(404, "no such invitation, or it was used or has expired")
            conn.execute(
                sa.update(db.invitations)
                .where(db.invitations.c.token_hash == digest)
                .values(used=True)
            )
            _add_principal(conn, key, "phone", now)
            conn.execute(
                sa.insert(db.key_requests).values(
                    key_id=key.key_id,
                    vehicle_id=row.vehicle_id,
                    public_key=key.encoded,
                    label=body.label or row.label,
                    created_at=now,
                    status="pending",
                )
            )
            return {"vehicle_id": bytes(row.vehicle_id).hex(), "key_id": key.key_id.hex()}

    try:
        return await to_thread.run_sync(work)
    except sa.exc.IntegrityError:
        raise HTTPException(409, "this key already asked for a grant") from None


@router.get("/vehicles/{vehicle_id}/requests", tags=["sharing"])
def list_requests(vehicle_id: VehicleId, caller: SignedBy, hub: HubDep) -> dict[str, Any]:
    """(Owner, fleet) Key requests that friends sent through invitations."""
    vid = bytes.fromhex(vehicle_id)
    with hub.engine.begin() as conn:
        _require(conn, vid, caller, hub.clock(), "owner", "fleet")
        rows = conn.execute(
            sa.select(db.key_requests)
            .where(db.key_requests.c.vehicle_id == vid)
            .order_by(db.key_requests.c.created_at)
        ).all()
    return {
        "requests": [
            {
                "key_id": bytes(r.key_id).hex(),
                "public_key": b64(bytes(r.public_key)),
                "label": r.label,
                "created_at": r.created_at,
                "status": r.status,
            }
            for r in rows
        ]
    }


@router.post("/vehicles/{vehicle_id}/grants", tags=["sharing"], status_code=201)
def post_grant(
    vehicle_id: VehicleId, body: GrantIn, caller: SignedBy, hub: HubDep
) -> dict[str, Any]:
    """(Owner, or a friend holding `share`) Put a signed grant in its grantee's mailbox."""
    vid = bytes.fromhex(vehicle_id)
    raw = unb64(body.bundle, "bundle")
    now = hub.clock()
    with hub.engine.begin() as conn:
        _require(conn, vid, caller, now, "owner", "friend")
        try:
            issuer = credentials.parse_grant(read_bundle(raw).chain[-1]).issuer_id
        except TetherError as exc:
            raise HTTPException(400, f"grant refused: {exc.message}") from None
        if issuer != caller.key_id:
            raise _forbidden("you may only post grants you signed")
        serial = _store_grant(conn, vid, raw, now)
    return {"serial": serial}


@router.get("/mailbox", tags=["sharing"])
def mailbox(caller: SignedBy, hub: HubDep) -> dict[str, Any]:
    """(Friend) Grants waiting for the calling key."""
    now = hub.clock()
    with hub.engine.begin() as conn:
        rows = conn.execute(
            sa.select(db.grants.c.serial, db.grants.c.vehicle_id, db.grants.c.bundle).where(
                db.grants.c.grantee_id == caller.key_id
            )
        ).all()
        live = [r for r in rows if not _is_revoked(conn, bytes(r.vehicle_id), caller.key_id)]
        conn.execute(
            sa.update(db.grants)
            .where(db.grants.c.grantee_id == caller.key_id, db.grants.c.fetched_at.is_(None))
            .values(fetched_at=now)
        )
    return {
        "grants": [{"serial": bytes(r.serial).hex(), "bundle": b64(bytes(r.bundle))} for r in live]
    }


@router.post("/vehicles/{vehicle_id}/revocations", tags=["revocation"], status_code=202)
def post_revocation(
    vehicle_id: VehicleId, body: RevocationIn, caller: SignedBy, hub: HubDep
) -> dict[str, Any]:
    """(Owner) Queue an owner-signed revocation; it is pushed to the car and applied there."""
    vid = bytes.fromhex(vehicle_id)
    raw = unb64(body.revocation, "revocation")
    now = hub.clock()
    with hub.engine.begin() as conn:
        _require(conn, vid, caller, now, "owner")
        _vehicle_key(conn, vid)
        return _store_revocation(conn, hub, vid, raw, now)


@router.get("/vehicles/{vehicle_id}/revocations", tags=["revocation"])
def list_revocations(vehicle_id: VehicleId, caller: SignedBy, hub: HubDep) -> dict[str, Any]:
    """(Owner, fleet) Revocations and their delivery status, with the car's signed receipts."""
    vid = bytes.fromhex(vehicle_id)
    with hub.engine.begin() as conn:
        _require(conn, vid, caller, hub.clock(), "owner", "fleet")
        rows = conn.execute(
            sa.select(db.revocations)
            .where(db.revocations.c.vehicle_id == vid)
            .order_by(db.revocations.c.seq)
        ).all()
    return {"revocations": [_revocation_json(r) for r in rows]}


@router.post("/vehicles/{vehicle_id}/commands", tags=["commands"], status_code=202)
def post_command(
    vehicle_id: VehicleId, body: CommandIn, caller: SignedBy, hub: HubDep
) -> dict[str, Any]:
    """(Owner, friend) Relay a phone-signed command envelope to the car."""
    vid = bytes.fromhex(vehicle_id)
    raw = unb64(body.envelope, "envelope")
    now = hub.clock()
    with hub.engine.begin() as conn:
        _require(conn, vid, caller, now, "owner", "friend")
        _vehicle_key(conn, vid)
        try:
            envelope = remote.parse_envelope(raw)
        except remote.RemoteError as exc:
            raise HTTPException(400, f"command refused ({exc.code}): {exc.message}") from None
        if envelope.vehicle_id != vid or envelope.key_id != caller.key_id:
            raise HTTPException(400, "the envelope is not for this car or not signed by you")
        if envelope.expires <= now:
            raise HTTPException(400, "the envelope has expired")
        exists = conn.execute(
            sa.select(db.commands.c.status).where(db.commands.c.digest == envelope.digest)
        ).first()
        if exists is None:
            conn.execute(
                sa.insert(db.commands).values(
                    digest=envelope.digest,
                    vehicle_id=vid,
                    key_id=caller.key_id,
                    command=envelope.command.value,
                    envelope=raw,
                    expires_at=float(envelope.expires),
                    created_at=now,
                    status="pending",
                )
            )
    if exists is None:
        hub.publish(vid, {"t": "command", "raw": raw})
    return {"id": envelope.digest.hex(), "status": "pending" if exists is None else exists.status}


@router.get("/commands/{command_id}", tags=["commands"])
async def get_command(
    command_id: Annotated[str, Path(pattern=HEX32)],
    caller: SignedBy,
    hub: HubDep,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0.0,
) -> dict[str, Any]:
    """(The phone that sent it) The command's status and the car's signed result; long-polls."""
    digest = bytes.fromhex(command_id)

    def read() -> Any:
        with hub.engine.begin() as conn:
            return conn.execute(
                sa.select(db.commands.c.key_id, db.commands.c.status, db.commands.c.result).where(
                    db.commands.c.digest == digest
                )
            ).first()

    # Listen before the first read: a result that lands in between still wakes this poll.
    hub.loop = asyncio.get_running_loop()
    event = hub.results.setdefault(digest, asyncio.Event())
    try:
        row = await to_thread.run_sync(read)
        if row is None or bytes(row.key_id) != caller.key_id:
            raise HTTPException(404, "no such command of yours")
        deadline = hub.clock() + wait
        while row.status == "pending" and hub.clock() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=min(0.5, deadline - hub.clock()))
            event.clear()
            row = await to_thread.run_sync(read)
    finally:
        hub.results.pop(digest, None)
    return {
        "id": command_id,
        "status": row.status,
        "result": b64(bytes(row.result)) if row.result is not None else None,
    }


@router.get("/vehicles/{vehicle_id}/inbox", tags=["cars"])
def inbox(vehicle_id: VehicleId, caller: SignedBy, hub: HubDep) -> dict[str, Any]:
    """(The car) What is waiting for it: pending revocations and unexpired commands."""
    vid = bytes.fromhex(vehicle_id)
    now = hub.clock()
    with hub.engine.begin() as conn:
        _require(conn, vid, caller, now, "car")
        conn.execute(
            sa.update(db.vehicles).where(db.vehicles.c.vehicle_id == vid).values(last_seen=now)
        )
        revs = conn.execute(
            sa.select(db.revocations.c.raw)
            .where(db.revocations.c.vehicle_id == vid, db.revocations.c.status == "pending")
            .order_by(db.revocations.c.seq)
        ).all()
        cmds = conn.execute(
            sa.select(db.commands.c.envelope)
            .where(
                db.commands.c.vehicle_id == vid,
                db.commands.c.status == "pending",
                db.commands.c.expires_at > now,
            )
            .order_by(db.commands.c.created_at)
        ).all()
    return {
        "revocations": [b64(bytes(r.raw)) for r in revs],
        "commands": [b64(bytes(c.envelope)) for c in cmds],
    }


@router.post("/vehicles/{vehicle_id}/uplink", tags=["cars"])
def uplink(
    vehicle_id: VehicleId, body: dict[str, str], caller: SignedBy, hub: HubDep
) -> dict[str, Any]:
    """(The car) A signed result, receipt or state, when MQTT is not at hand."""
    vid = bytes.fromhex(vehicle_id)
    if caller.key_id != vid:
        raise _forbidden()
    kind = body.get("t", "")
    outcome = accept_uplink(hub, vid, {"t": kind, "body": unb64(body.get("body", ""), "body")})
    return {"outcome": outcome}


@router.post("/vehicles/{vehicle_id}/audit", tags=["cars"])
def post_audit(
    vehicle_id: VehicleId, body: AuditIn, caller: SignedBy, hub: HubDep
) -> dict[str, Any]:
    """(The car) Append entries of its audit log; returns the highest sequence number held."""
    vid = bytes.fromhex(vehicle_id)
    with hub.engine.begin() as conn:
        _require(conn, vid, caller, hub.clock(), "car")
        have = conn.execute(
            sa.select(sa.func.max(db.audit.c.seq)).where(db.audit.c.vehicle_id == vid)
        ).scalar()
        head = int(have or 0)
        for entry in sorted(body.entries, key=lambda e: int(e.get("seq", 0))):
            seq = entry.get("seq")
            if type(seq) is not int or seq != head + 1:
                continue  # only a contiguous continuation of the chain
            conn.execute(sa.insert(db.audit).values(vehicle_id=vid, seq=seq, entry=entry))
            head = seq
    return {"head": head}


@router.get("/vehicles/{vehicle_id}/audit", tags=["cars"])
def get_audit(
    vehicle_id: VehicleId,
    caller: SignedBy,
    hub: HubDep,
    since: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """(Owner, fleet, the car) The car's uploaded audit entries."""
    vid = bytes.fromhex(vehicle_id)
    with hub.engine.begin() as conn:
        _require(conn, vid, caller, hub.clock(), "owner", "fleet", "car")
        rows = conn.execute(
            sa.select(db.audit.c.entry)
            .where(db.audit.c.vehicle_id == vid, db.audit.c.seq > since)
            .order_by(db.audit.c.seq)
            .limit(limit)
        ).all()
    return {"entries": [r.entry for r in rows]}


@router.post("/fleets", tags=["fleets"], status_code=201)
async def create_fleet(body: FleetIn, request: Request, hub: HubDep) -> dict[str, Any]:
    """(Operator) Create a fleet whose id is the operator key's id (signed by that key)."""
    key = _key(body.public_key, "public_key")
    raw = await request.body()
    caller = await to_thread.run_sync(_check_signature, hub, request, raw, key)
    if caller.key_id != key.key_id:
        raise _forbidden("sign with the fleet key")

    def work() -> dict[str, Any]:
        now = hub.clock()
        with hub.engine.begin() as conn:
            _add_principal(conn, key, "fleet", now)
            exists = conn.execute(
                sa.select(db.fleets.c.fleet_id).where(db.fleets.c.fleet_id == key.key_id)
            ).first()
            if exists is None:
                conn.execute(
                    sa.insert(db.fleets).values(fleet_id=key.key_id, name=body.name, created_at=now)
                )
        return {"fleet_id": key.key_id.hex(), "name": body.name}

    return await to_thread.run_sync(work)


FleetId = Annotated[str, Path(pattern=HEX16, description="the fleet key's id, hex")]


def _fleet_caller(caller: Caller, fleet_id: str) -> bytes:
    fid = bytes.fromhex(fleet_id)
    if caller.kind != "fleet" or caller.key_id != fid:
        raise _forbidden("only the fleet's operator key may do this")
    return fid


@router.post("/fleets/{fleet_id}/vehicles", tags=["fleets"], status_code=201)
def add_fleet_vehicle(
    fleet_id: FleetId, body: FleetVehicleIn, caller: SignedBy, hub: HubDep
) -> dict[str, Any]:
    """(The car's owner) Put a car in a fleet: its operator may then relay grants and read audit."""
    fid, vid = bytes.fromhex(fleet_id), bytes.fromhex(body.vehicle_id)
    now = hub.clock()
    with hub.engine.begin() as conn:
        _require(conn, vid, caller, now, "owner")
        if conn.execute(sa.select(db.fleets).where(db.fleets.c.fleet_id == fid)).first() is None:
            raise HTTPException(404, "no such fleet")
        if not _fleet_has(conn, fid, vid):
            conn.execute(
                sa.insert(db.fleet_vehicles).values(fleet_id=fid, vehicle_id=vid, added_at=now)
            )
    return {"fleet_id": fleet_id, "vehicle_id": body.vehicle_id}


@router.get("/fleets/{fleet_id}", tags=["fleets"])
def get_fleet(fleet_id: FleetId, caller: SignedBy, hub: HubDep) -> dict[str, Any]:
    """(Operator) The fleet's cars, their latest state, pending revocations and key requests."""
    fid = _fleet_caller(caller, fleet_id)
    with hub.engine.begin() as conn:
        fleet = conn.execute(sa.select(db.fleets).where(db.fleets.c.fleet_id == fid)).first()
        if fleet is None:
            raise HTTPException(404, "no such fleet")
        cars = conn.execute(
            sa.select(db.vehicles)
            .join(db.fleet_vehicles, db.fleet_vehicles.c.vehicle_id == db.vehicles.c.vehicle_id)
            .where(db.fleet_vehicles.c.fleet_id == fid)
            .order_by(db.vehicles.c.name)
        ).all()
        out = []
        for car in cars:
            pending = conn.execute(
                sa.select(sa.func.count())
                .select_from(db.revocations)
                .where(
                    db.revocations.c.vehicle_id == car.vehicle_id,
                    db.revocations.c.status == "pending",
                )
            ).scalar()
            requests = conn.execute(
                sa.select(sa.func.count())
                .select_from(db.key_requests)
                .where(
                    db.key_requests.c.vehicle_id == car.vehicle_id,
                    db.key_requests.c.status == "pending",
                )
            ).scalar()
            out.append(
                {
                    "vehicle_id": bytes(car.vehicle_id).hex(),
                    "name": car.name,
                    "last_seen": car.last_seen,
                    "state": car.state,
                    "pending_revocations": pending,
                    "pending_requests": requests,
                }
            )
    return {"fleet_id": fleet_id, "name": fleet.name, "vehicles": out}


@router.post("/fleets/{fleet_id}/grants", tags=["fleets"], status_code=201)
def bulk_grants(
    fleet_id: FleetId, body: BulkGrantsIn, caller: SignedBy, hub: HubDep
) -> dict[str, Any]:
    """(Operator) Put many owner-signed grants, for cars of the fleet, in their mailboxes."""
    fid = _fleet_caller(caller, fleet_id)
    now = hub.clock()
    serials = []
    with hub.engine.begin() as conn:
        for text in body.bundles:
            raw = unb64(text, "bundle")
            try:
                vid = read_bundle(raw).vehicle_key.key_id
            except TetherError as exc:
                raise HTTPException(400, f"grant refused: {exc.message}") from None
            if not _fleet_has(conn, fid, vid):
                raise _forbidden(f"car {vid.hex()} is not in this fleet")
            serials.append(_store_grant(conn, vid, raw, now))
    return {"serials": serials}


@router.post("/fleets/{fleet_id}/revocations", tags=["fleets"], status_code=202)
def bulk_revocations(
    fleet_id: FleetId, body: BulkRevocationsIn, caller: SignedBy, hub: HubDep
) -> dict[str, Any]:
    """(Operator) Queue many owner-signed revocations for cars of the fleet."""
    fid = _fleet_caller(caller, fleet_id)
    now = hub.clock()
    checked: list[tuple[bytes, bytes, Revocation]] = []
    # Signatures first, reading only: the write transaction that follows stays short.
    with hub.engine.connect().execution_options(readonly=True) as conn:
        for text in body.revocations:
            raw = unb64(text, "revocation")
            try:
                vid = credentials.parse_revocation(raw).vehicle_id
            except TetherError as exc:
                raise HTTPException(400, f"revocation refused: {exc.message}") from None
            if not _fleet_has(conn, fid, vid):
                raise _forbidden(f"car {vid.hex()} is not in this fleet")
            checked.append((vid, raw, _verify_revocation(conn, vid, raw)))
    with hub.engine.begin() as conn:
        out = [
            _store_revocation(conn, hub, vid, raw, now, verified=rev) for vid, raw, rev in checked
        ]
    return {"revocations": out}


@router.get("/health", tags=["server"])
def health(hub: HubDep) -> dict[str, Any]:
    """Liveness and database reachability (no signature)."""
    with hub.engine.begin() as conn:
        conn.execute(sa.select(1))
    return {"ok": True}


def create_app(hub: Hub, *, lifespan: Any = None) -> FastAPI:
    """The ASGI app over ``hub``."""
    app = FastAPI(
        title="tether cloud",
        version="1",
        description=(
            "Relays and stores for phones and cars; holds no key that can open a car. Every "
            "route except /v1/health and invitation lookup needs an RFC 9421 signature by a "
            "device key (docs/cloud.md)."
        ),
        lifespan=lifespan,
    )
    app.state.hub = hub
    app.include_router(router, responses=_PROBLEMS)

    @app.exception_handler(httpsig.SignatureRefused)
    async def refused(_: Request, exc: httpsig.SignatureRefused) -> JSONResponse:
        return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=401)

    return app
