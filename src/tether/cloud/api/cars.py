"""Routes for cars: registration, state, telemetry, inbox, uplink, audit copies, health."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from anyio import to_thread
from fastapi import APIRouter, HTTPException, Query, Request

from tether.cloud import db
from tether.cloud.api import rates
from tether.cloud.api.access import (
    HubDep,
    SignedBy,
    VehicleId,
    add_principal,
    check_signature,
    forbidden,
    public_key_from,
    require,
    set_owner,
    unb64,
)
from tether.cloud.api.bodies import (
    AuditIn,
    VehicleRegistration,
)
from tether.cloud.api.objects import (
    accept_uplink,
)
from tether.link import topics
from tether.link.b64 import b64
from tether.link.status import Status

router = APIRouter(prefix="/v1")


@router.put("/vehicles/{vehicle_id}", tags=["cars"])
async def register_vehicle(
    vehicle_id: VehicleId, body: VehicleRegistration, request: Request, hub: HubDep
) -> dict[str, Any]:
    """A car registers itself (signed by its own key) and declares its owners."""
    key = public_key_from(body.public_key, "public_key")
    if key.key_id.hex() != vehicle_id:
        raise HTTPException(400, "the public key does not match the car's id")
    raw = await request.body()
    caller = await to_thread.run_sync(check_signature, hub, request, raw, key)
    if caller.key_id != key.key_id:
        raise forbidden("only the car itself may register it")
    owners = [public_key_from(o, "owners[]") for o in body.owners]
    limits = hub.limits
    if len(owners) > limits.max_owners:
        raise HTTPException(400, f"a car lists at most {limits.max_owners} owner keys")
    source = request.client.host if request.client is not None else "?"

    def work() -> dict[str, Any]:
        now = hub.clock()
        vid = key.key_id
        with hub.engine.begin() as conn:
            exists = conn.execute(
                sa.select(db.vehicles.c.vehicle_id).where(db.vehicles.c.vehicle_id == vid)
            ).first()
            # What stays stored for good is what is limited: new cars per source address, and
            # registrations per car; a car that never comes online is forgotten (rates.sweep).
            if exists is None:
                rates.sweep(conn, limits, now)
                rates.charge(
                    conn,
                    f"new-car {source}",
                    limit=limits.new_cars_per_source,
                    window=limits.window,
                    now=now,
                    what="new cars from this address",
                )
            rates.charge(
                conn,
                f"register {vid.hex()}",
                limit=limits.registrations_per_car,
                window=limits.window,
                now=now,
                what="registrations of this car",
            )
            add_principal(conn, key, "vehicle", now)
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
                add_principal(conn, owner, "phone", now, proven=False)
                set_owner(conn, vid, owner.key_id)
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
            logins = conn.execute(
                sa.select(db.ha_credentials.c.cred_id).where(
                    db.ha_credentials.c.owner_id.in_(declared)
                )
            ).all()
        answer: dict[str, Any] = {
            "vehicle_id": vehicle_id,
            "owners": len(owners),
            "mqtt": getattr(request.app.state, "mqtt_url", ""),
        }
        dynsec = hub.dynsec
        if dynsec is not None:
            # The car's own broker login (Mosquitto cannot check signatures), and the Home
            # Assistant logins of its owners, which may now see it (or no longer).
            hub.provision(dynsec.add_car(vid))
            for login in logins:
                cred = bytes(login.cred_id)
                hub.provision(
                    dynsec.add_home_assistant(
                        topics.HA_PREFIX + cred.hex(), None, hub.ha_cars(cred)
                    )
                )
            username, password = dynsec.car_login(vid)
            answer["mqtt_login"] = {"username": username, "password": password}
        return answer

    return await to_thread.run_sync(work)


@router.get("/vehicles/{vehicle_id}", tags=["cars"])
def get_vehicle(vehicle_id: VehicleId, caller: SignedBy, hub: HubDep) -> dict[str, Any]:
    """The car's name, address, key, and (owners and fleets) its latest state."""
    vid = bytes.fromhex(vehicle_id)
    now = hub.clock()
    with hub.engine.begin() as conn:
        role = require(conn, vid, caller, now, "owner", "friend", "fleet", "car")
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
    since: Annotated[float, Query(ge=0, le=1e12)] = 0.0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The car's state history (owners and its fleet)."""
    vid = bytes.fromhex(vehicle_id)
    with hub.engine.begin() as conn:
        require(conn, vid, caller, hub.clock(), "owner", "fleet")
        rows = conn.execute(
            sa.select(db.telemetry.c.at, db.telemetry.c.state)
            .where(db.telemetry.c.vehicle_id == vid, db.telemetry.c.at >= since)
            .order_by(db.telemetry.c.at.desc())
            .limit(limit)
        ).all()
    return {"history": [{"at": r.at, "state": r.state} for r in rows]}


@router.get("/vehicles/{vehicle_id}/inbox", tags=["cars"])
def inbox(vehicle_id: VehicleId, caller: SignedBy, hub: HubDep) -> dict[str, Any]:
    """(The car) What is waiting for it: pending revocations and unexpired commands."""
    vid = bytes.fromhex(vehicle_id)
    now = hub.clock()
    with hub.engine.begin() as conn:
        require(conn, vid, caller, now, "car")
        conn.execute(
            sa.update(db.vehicles).where(db.vehicles.c.vehicle_id == vid).values(last_seen=now)
        )
        revs = conn.execute(
            sa.select(db.revocations.c.raw)
            .where(db.revocations.c.vehicle_id == vid, db.revocations.c.status == Status.PENDING)
            .order_by(db.revocations.c.seq)
        ).all()
        cmds = conn.execute(
            sa.select(db.commands.c.envelope)
            .where(
                db.commands.c.vehicle_id == vid,
                db.commands.c.status == Status.PENDING,
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
        raise forbidden()
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
        require(conn, vid, caller, hub.clock(), "car")
        have = conn.execute(
            sa.select(sa.func.max(db.audit.c.seq)).where(db.audit.c.vehicle_id == vid)
        ).scalar()
        head = int(have or 0)
        entries = [_audit_entry(e) for e in body.entries]
        for entry in sorted(entries, key=lambda e: int(e["seq"])):
            seq = entry["seq"]
            if seq != head + 1:
                continue  # only a contiguous continuation of the chain
            conn.execute(sa.insert(db.audit).values(vehicle_id=vid, seq=seq, entry=entry))
            head = seq
    return {"head": head}


_AUDIT_FIELDS = {"seq": int, "time": float, "key_id": str, "command": str, "result": str}


def _audit_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """One uploaded audit entry, checked field by field (400, never a 500, for anything else)."""
    if type(entry.get("seq")) is not int or not 0 < entry["seq"] < 2**62:
        raise HTTPException(400, "each audit entry needs an integer seq")
    for name, kind in _AUDIT_FIELDS.items():
        value = entry.get(name)
        if value is not None and not (
            isinstance(value, kind) or (kind is float and type(value) is int)
        ):
            raise HTTPException(400, f"audit entry field {name} has the wrong type")
    if not all(type(v) in (str, int, float, bool) or v is None for v in entry.values()):
        raise HTTPException(400, "audit entries hold plain values only")
    if any(type(v) is str and len(v) > 512 for v in entry.values()) or len(entry) > 16:
        raise HTTPException(400, "an audit entry is too large")
    return entry


@router.get("/vehicles/{vehicle_id}/audit", tags=["cars"])
def get_audit(
    vehicle_id: VehicleId,
    caller: SignedBy,
    hub: HubDep,
    since: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """(Owner, fleet, the car) The car's uploaded audit entries."""
    vid = bytes.fromhex(vehicle_id)
    with hub.engine.begin() as conn:
        require(conn, vid, caller, hub.clock(), "owner", "fleet", "car")
        rows = conn.execute(
            sa.select(db.audit.c.entry)
            .where(db.audit.c.vehicle_id == vid, db.audit.c.seq > since)
            .order_by(db.audit.c.seq)
            .limit(limit)
        ).all()
    return {"entries": [r.entry for r in rows]}


@router.get("/health", tags=["server"])
def health(hub: HubDep) -> dict[str, Any]:
    """Liveness, database reachability, and whether this instance hears the others' results."""
    with hub.engine.begin() as conn:
        conn.execute(sa.select(1))
    return {"ok": True, "instance": hub.instance, "listening": hub.listening}
