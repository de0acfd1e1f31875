"""Who is calling and what they may do: the hub, RFC 9421 request checks, roles on a car."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import sqlalchemy as sa
from anyio import to_thread
from fastapi import Depends, HTTPException, Path, Request
from pydantic import BaseModel
from sqlalchemy.engine import Connection, Engine

from tether.cloud import db
from tether.cloud.api.rates import RateLimits
from tether.cloud.mosquitto import DynamicSecurity
from tether.errors import MalformedMessage, SignatureRefused
from tether.link import b64 as link_b64
from tether.link import httpsig
from tether.protocol.crypto import PublicKey

log = logging.getLogger(__name__)
INVITATION_TTL = 7 * 86_400
MAX_WAIT = 30.0
NONCE_SWEEP = 60.0
HEX16 = r"^[0-9a-f]{32}$"
HEX32 = r"^[0-9a-f]{64}$"


# -- wire helpers ----------------------------------------------------------------------------------
def unb64(text: str, what: str) -> bytes:
    """A request field's bytes, or 400."""
    try:
        return link_b64.unb64(text, what)
    except MalformedMessage as exc:
        raise HTTPException(400, exc.message) from None


def public_key_from(text: str, what: str) -> PublicKey:
    try:
        return PublicKey(unb64(text, what))
    except MalformedMessage:
        raise HTTPException(400, f"{what} is not a P-256 public key") from None


# -- the hub: database, clock, and the relay to the cars -------------------------------------------
@dataclasses.dataclass(slots=True)
class Hub:
    """What the routes share; nothing here is state a second server instance would need."""

    engine: Engine
    clock: Callable[[], float]
    publish: Callable[[bytes, dict[str, Any]], None] = lambda vehicle_id, message: None
    #: The requests of this process waiting for a command's result (other instances poll).
    results: dict[bytes, list[asyncio.Event]] = dataclasses.field(default_factory=dict)
    #: Results stored by this process for waiting requests, handed over without a re-read.
    delivered: dict[bytes, bytes] = dataclasses.field(default_factory=dict)
    loop: asyncio.AbstractEventLoop | None = None
    #: When expired nonces are next swept (once a minute, not on every request).
    next_sweep: float = 0.0
    limits: RateLimits = dataclasses.field(default_factory=RateLimits)
    #: Mosquitto's dynamic-security admin, when the server runs against a broker tether set up.
    dynsec: DynamicSecurity | None = None
    #: True while this process hears other instances' result notifications (PostgreSQL).
    listening: bool = False
    #: This process among the instances serving one database (random per start; for operators).
    instance: str = dataclasses.field(default_factory=lambda: secrets.token_hex(4))

    def provision(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a broker change from a route's worker thread, and wait for it (at most 10 s)."""
        if self.dynsec is None or self.loop is None:
            coroutine.close()
            return
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            future.result(10.0)
        except Exception:  # the broker is down: the car's next registration provisions again
            log.warning("could not update the broker's logins", exc_info=True)

    def vehicle_key(self, vehicle_id: bytes) -> PublicKey | None:
        """A registered car's public key (the embedded broker checks car logins with it)."""
        with self.engine.begin() as conn:
            return find_vehicle_key(conn, vehicle_id)

    def ha_login(self, cred_id: bytes, secret: str) -> bool:
        """Whether ``secret`` is the Home Assistant credential ``cred_id``'s (constant time)."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(db.ha_credentials.c.secret_hash).where(
                    db.ha_credentials.c.cred_id == cred_id
                )
            ).first()
        digest = hashlib.sha256(secret.encode()).digest()
        return row is not None and hmac.compare_digest(bytes(row.secret_hash), digest)

    def ha_cars(self, cred_id: bytes) -> frozenset[bytes]:
        """The cars a Home Assistant credential may see: those its owner key owns right now."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(db.members.c.vehicle_id)
                .join(db.ha_credentials, db.ha_credentials.c.owner_id == db.members.c.key_id)
                .where(
                    db.ha_credentials.c.cred_id == cred_id,
                    db.members.c.role == "owner",
                    db.members.c.revoked == sa.false(),
                )
            ).all()
        return frozenset(bytes(r.vehicle_id) for r in rows)

    def wake(self, digest: bytes, result: bytes) -> None:
        """Hand a stored, verified result to a long-poll for ``digest``, from any thread."""
        if digest in self.results and self.loop is not None:
            self.loop.call_soon_threadsafe(self._deliver, digest, result)

    def _deliver(self, digest: bytes, result: bytes) -> None:
        waiting = self.results.get(digest)
        if waiting:  # still waiting (in the loop's thread, so no race with their end)
            self.delivered[digest] = result
            for event in waiting:
                event.set()


@dataclasses.dataclass(frozen=True, slots=True)
class Caller:
    key_id: bytes
    kind: str


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def check_signature(
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
            raise SignatureRefused("this key is not known here")
        httpsig.verify_request(
            key,
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            body=body,
            headers=headers,
            now=now,
        )
        if now >= hub.next_sweep:
            # Kept twice as long as a request stays acceptable, so a replay always meets its nonce.
            hub.next_sweep = now + NONCE_SWEEP
            conn.execute(
                sa.delete(db.nonces).where(db.nonces.c.created_at < now - 2 * httpsig.MAX_SKEW)
            )
        nonce = {"key_id": claimed.key_id, "nonce": claimed.nonce, "created_at": now}
        if not db.insert_new(conn, db.nonces, nonce):
            raise SignatureRefused("this request was already received (a replay)")
    return Caller(key_id=claimed.key_id, kind=kind)


async def signed(request: Request) -> Caller:
    """Dependency: the verified caller of a request signed by a key the server knows."""
    body = await request.body()
    hub = hub_of(request)
    return await to_thread.run_sync(check_signature, hub, request, body)


SignedBy = Annotated[Caller, Depends(signed)]
HubDep = Annotated[Hub, Depends(hub_of)]
VehicleId = Annotated[str, Path(pattern=HEX16, description="the car's key id, hex")]


def forbidden(what: str = "you may not act on this car") -> HTTPException:
    return HTTPException(403, what)


def role_of(conn: Connection, vehicle_id: bytes, key_id: bytes, now: float) -> str | None:
    """owner, friend (unrevoked, unexpired), or None."""
    row = conn.execute(
        sa.select(db.members.c.role, db.members.c.not_after, db.members.c.revoked).where(
            db.members.c.vehicle_id == vehicle_id, db.members.c.key_id == key_id
        )
    ).first()
    if row is None or row.revoked or (row.not_after is not None and now >= row.not_after):
        return None
    return str(row.role)


def fleet_has(conn: Connection, fleet_id: bytes, vehicle_id: bytes) -> bool:
    return vehicle_id in fleet_cars(conn, fleet_id, {vehicle_id})


def require(conn: Connection, vehicle_id: bytes, caller: Caller, now: float, *allowed: str) -> str:
    """The caller's standing on this car if it is one of ``allowed`` (owner/friend/fleet/car)."""
    if "car" in allowed and caller.key_id == vehicle_id:
        return "car"
    role = role_of(conn, vehicle_id, caller.key_id, now)
    if role is not None and role in allowed:
        return role
    if "fleet" in allowed and caller.kind == "fleet" and fleet_has(conn, caller.key_id, vehicle_id):
        return "fleet"
    raise forbidden()


def find_vehicle_key(conn: Connection, vehicle_id: bytes) -> PublicKey | None:
    row = conn.execute(
        sa.select(db.vehicles.c.public_key).where(db.vehicles.c.vehicle_id == vehicle_id)
    ).first()
    return PublicKey(bytes(row.public_key)) if row is not None else None


def vehicle_key(conn: Connection, vehicle_id: bytes) -> PublicKey:
    """The car's key, or 404 for a car the server does not know."""
    key = find_vehicle_key(conn, vehicle_id)
    if key is None:
        raise HTTPException(404, "no such car here")
    return key


def owners_of(conn: Connection, vehicle_ids: set[bytes]) -> dict[bytes, dict[bytes, PublicKey]]:
    """The unrevoked owner keys of each car, by key id, in one query."""
    owners: dict[bytes, dict[bytes, PublicKey]] = {}
    for r in conn.execute(
        sa.select(db.members.c.vehicle_id, db.principals.c.key_id, db.principals.c.public_key)
        .join(db.members, db.members.c.key_id == db.principals.c.key_id)
        .where(
            db.members.c.vehicle_id.in_(vehicle_ids),
            db.members.c.role == "owner",
            db.members.c.revoked == sa.false(),
        )
    ):
        owners.setdefault(bytes(r.vehicle_id), {})[bytes(r.key_id)] = PublicKey(bytes(r.public_key))
    return owners


def owner_lookup(conn: Connection, vehicle_id: bytes) -> Callable[[bytes], PublicKey | None]:
    return owners_of(conn, {vehicle_id}).get(vehicle_id, {}).get


def fleet_cars(conn: Connection, fleet_id: bytes, vehicle_ids: set[bytes]) -> set[bytes]:
    """Which of ``vehicle_ids`` are in the fleet, in one query."""
    return {
        bytes(r.vehicle_id)
        for r in conn.execute(
            sa.select(db.fleet_vehicles.c.vehicle_id).where(
                db.fleet_vehicles.c.fleet_id == fleet_id,
                db.fleet_vehicles.c.vehicle_id.in_(vehicle_ids),
                db.fleet_vehicles.c.owner_ok == sa.true(),  # both the owner and the operator
                db.fleet_vehicles.c.fleet_ok == sa.true(),
            )
        )
    }


def add_principal(
    conn: Connection, key: PublicKey, kind: str, now: float, *, proven: bool = True
) -> None:
    """Record a key the server may hear from, as a car, a phone or a fleet.

    ``proven`` is True only when the key's holder signed the request at hand. A key that someone
    else merely listed (a car naming its owners, a grant naming its grantee) is recorded unproven:
    listing proves nothing and blocks nobody, so the holder's own claim replaces it (a stranger who
    lists a victim car's public key as an owner of a made-up car can no longer squat it).
    """
    row = conn.execute(
        sa.select(db.principals.c.kind, db.principals.c.proven).where(
            db.principals.c.key_id == key.key_id
        )
    ).first()
    if row is None:
        conn.execute(
            sa.insert(db.principals).values(
                key_id=key.key_id, public_key=key.encoded, kind=kind, created_at=now, proven=proven
            )
        )
        return
    if row.kind == kind:
        if proven and not row.proven:
            conn.execute(
                sa.update(db.principals)
                .where(db.principals.c.key_id == key.key_id)
                .values(proven=True)
            )
        return
    if proven and not row.proven:
        # The holder claims a key that someone else only listed: whatever the listing said
        # about it (owner of a made-up car) goes with it.
        conn.execute(
            sa.update(db.principals)
            .where(db.principals.c.key_id == key.key_id)
            .values(kind=kind, proven=True)
        )
        conn.execute(sa.delete(db.members).where(db.members.c.key_id == key.key_id))
        return
    if not proven:
        raise HTTPException(
            400, f"that key belongs to a {row.kind}; it cannot be listed as a {kind}"
        )
    raise HTTPException(409, f"this key is already registered as a {row.kind}")


def set_owner(conn: Connection, vehicle_id: bytes, key_id: bytes) -> None:
    """Make ``key_id`` an owner of the car: only the car's own registration may (its authority)."""
    where = (db.members.c.vehicle_id == vehicle_id) & (db.members.c.key_id == key_id)
    row = conn.execute(sa.select(db.members.c.role, db.members.c.revoked).where(where)).first()
    if row is None:
        conn.execute(
            sa.insert(db.members).values(
                vehicle_id=vehicle_id, key_id=key_id, role="owner", not_after=None, revoked=False
            )
        )
    elif row.role != "owner" or row.revoked:
        # The car lists this key as its owner now (it paired it): the car is the authority.
        conn.execute(
            sa.update(db.members).where(where).values(role="owner", not_after=None, revoked=False)
        )


def add_friend(conn: Connection, vehicle_id: bytes, key_id: bytes, not_after: float) -> None:
    """Record the holder of a verified grant as a friend of the car.

    A grant is a friend's only authority, and it can never name a key that already stands for
    this car in another role: a friend holding ``share`` who signs a sub-grant for the owner's key
    (recoverable from any of the owner's signatures) is refused, not allowed to demote the owner.
    """
    where = (db.members.c.vehicle_id == vehicle_id) & (db.members.c.key_id == key_id)
    row = conn.execute(sa.select(db.members.c.role, db.members.c.revoked).where(where)).first()
    if row is not None and row.role != "friend":
        raise HTTPException(
            409, f"this key is already the car's {row.role}; a grant cannot change that"
        )
    if key_id == vehicle_id:
        raise HTTPException(409, "a grant cannot name the car's own key")
    if row is None:
        conn.execute(
            sa.insert(db.members).values(
                vehicle_id=vehicle_id,
                key_id=key_id,
                role="friend",
                not_after=not_after,
                revoked=False,
            )
        )
    elif not row.revoked:
        conn.execute(sa.update(db.members).where(where).values(not_after=not_after))


class Problem(BaseModel):
    """Why a request was refused: a sentence, and for signature refusals a stable code."""

    detail: str
    code: str | None = None


PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "a signed object or value is refused, and why"},
    401: {"model": Problem, "description": "missing, stale, replayed or bad request signature"},
    403: {"model": Problem, "description": "the signing key may not do this"},
    404: {"model": Problem, "description": "no such thing (or not yours)"},
    409: {"model": Problem, "description": "conflicts with what the server holds"},
    413: {"model": Problem, "description": "the body is over the route's size limit"},
    422: {"model": Problem, "description": "the request does not match the API (nothing echoed)"},
    429: {"model": Problem, "description": "too many requests from this source or key; wait"},
}


FleetId = Annotated[str, Path(pattern=HEX16, description="the fleet key's id, hex")]


def fleet_caller(caller: Caller, fleet_id: str) -> bytes:
    fid = bytes.fromhex(fleet_id)
    if caller.kind != "fleet" or caller.key_id != fid:
        raise forbidden("only the fleet's operator key may do this")
    return fid
