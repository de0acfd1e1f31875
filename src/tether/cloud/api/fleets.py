"""Routes for fleets: create, add cars, look, bulk grants and revocations."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from anyio import to_thread
from fastapi import APIRouter, HTTPException, Request

from tether.cloud import db
from tether.cloud.api.access import (
    FleetId,
    HubDep,
    SignedBy,
    add_principal,
    check_signature,
    fleet_caller,
    fleet_cars,
    fleet_has,
    forbidden,
    public_key_from,
    require,
    unb64,
    vehicle_key,
)
from tether.cloud.api.bodies import (
    BulkGrantsIn,
    BulkRevocationsIn,
    FleetIn,
    FleetVehicleIn,
)
from tether.cloud.api.objects import (
    publish_revocations,
    store_grant,
    store_revocations,
    verify_revocations,
)
from tether.errors import TetherError
from tether.link.bundles import read_bundle
from tether.link.status import Status
from tether.protocol import credentials

router = APIRouter(prefix="/v1")


@router.post("/fleets", tags=["fleets"], status_code=201)
async def create_fleet(body: FleetIn, request: Request, hub: HubDep) -> dict[str, Any]:
    """(Operator) Create a fleet whose id is the operator key's id (signed by that key)."""
    key = public_key_from(body.public_key, "public_key")
    raw = await request.body()
    caller = await to_thread.run_sync(check_signature, hub, request, raw, key)
    if caller.key_id != key.key_id:
        raise forbidden("sign with the fleet key")

    def work() -> dict[str, Any]:
        now = hub.clock()
        with hub.engine.begin() as conn:
            add_principal(conn, key, "fleet", now)
            exists = conn.execute(
                sa.select(db.fleets.c.fleet_id).where(db.fleets.c.fleet_id == key.key_id)
            ).first()
            if exists is None:
                conn.execute(
                    sa.insert(db.fleets).values(fleet_id=key.key_id, name=body.name, created_at=now)
                )
        return {"fleet_id": key.key_id.hex(), "name": body.name}

    return await to_thread.run_sync(work)


@router.post("/fleets/{fleet_id}/vehicles", tags=["fleets"], status_code=201)
def add_fleet_vehicle(
    fleet_id: FleetId, body: FleetVehicleIn, caller: SignedBy, hub: HubDep
) -> dict[str, Any]:
    """Put a car in a fleet: its owner asks, and the fleet's operator accepts (either first).

    A car is in the fleet (its operator may relay grants, read state and audit) only once both
    have asked: no one can push a car into a stranger's fleet, nor pull a stranger's car in.
    """
    fid, vid = bytes.fromhex(fleet_id), bytes.fromhex(body.vehicle_id)
    now = hub.clock()
    with hub.engine.begin() as conn:
        if conn.execute(sa.select(db.fleets).where(db.fleets.c.fleet_id == fid)).first() is None:
            raise HTTPException(404, "no such fleet")
        if caller.kind == "fleet" and caller.key_id == fid:
            side = "fleet_ok"
            vehicle_key(conn, vid)  # 404 for a car the server does not know
        else:
            require(conn, vid, caller, now, "owner")
            side = "owner_ok"
        where = (db.fleet_vehicles.c.fleet_id == fid) & (db.fleet_vehicles.c.vehicle_id == vid)
        row = conn.execute(sa.select(db.fleet_vehicles).where(where)).first()
        if row is None:
            conn.execute(
                sa.insert(db.fleet_vehicles).values(
                    fleet_id=fid,
                    vehicle_id=vid,
                    added_at=now,
                    owner_ok=side == "owner_ok",
                    fleet_ok=side == "fleet_ok",
                )
            )
        else:
            conn.execute(sa.update(db.fleet_vehicles).where(where).values({side: True}))
        row = conn.execute(sa.select(db.fleet_vehicles).where(where)).one()
    status = (
        "member"
        if row.owner_ok and row.fleet_ok
        else ("waiting for the operator" if row.owner_ok else "waiting for the owner")
    )
    return {"fleet_id": fleet_id, "vehicle_id": body.vehicle_id, "status": status}


@router.get("/fleets/{fleet_id}", tags=["fleets"])
def get_fleet(fleet_id: FleetId, caller: SignedBy, hub: HubDep) -> dict[str, Any]:
    """(Operator) The fleet's cars, their latest state, pending revocations and key requests."""
    fid = fleet_caller(caller, fleet_id)
    with hub.engine.begin() as conn:
        fleet = conn.execute(sa.select(db.fleets).where(db.fleets.c.fleet_id == fid)).first()
        if fleet is None:
            raise HTTPException(404, "no such fleet")
        cars = conn.execute(
            sa.select(db.vehicles)
            .join(db.fleet_vehicles, db.fleet_vehicles.c.vehicle_id == db.vehicles.c.vehicle_id)
            .where(
                db.fleet_vehicles.c.fleet_id == fid,
                db.fleet_vehicles.c.owner_ok == sa.true(),
                db.fleet_vehicles.c.fleet_ok == sa.true(),
            )
            .order_by(db.vehicles.c.name)
        ).all()
        offered = conn.execute(
            sa.select(db.vehicles.c.vehicle_id, db.vehicles.c.name)
            .join(db.fleet_vehicles, db.fleet_vehicles.c.vehicle_id == db.vehicles.c.vehicle_id)
            .where(
                db.fleet_vehicles.c.fleet_id == fid,
                db.fleet_vehicles.c.owner_ok == sa.true(),
                db.fleet_vehicles.c.fleet_ok == sa.false(),
            )
            .order_by(db.vehicles.c.name)
        ).all()
        out = []
        for car in cars:
            pending = conn.execute(
                sa.select(sa.func.count())
                .select_from(db.revocations)
                .where(
                    db.revocations.c.vehicle_id == car.vehicle_id,
                    db.revocations.c.status == Status.PENDING,
                )
            ).scalar()
            requests = conn.execute(
                sa.select(sa.func.count())
                .select_from(db.key_requests)
                .where(
                    db.key_requests.c.vehicle_id == car.vehicle_id,
                    db.key_requests.c.status == Status.PENDING,
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
    offers = [{"vehicle_id": bytes(r.vehicle_id).hex(), "name": r.name} for r in offered]
    return {"fleet_id": fleet_id, "name": fleet.name, "vehicles": out, "offers": offers}


@router.post("/fleets/{fleet_id}/grants", tags=["fleets"], status_code=201)
def bulk_grants(
    fleet_id: FleetId, body: BulkGrantsIn, caller: SignedBy, hub: HubDep
) -> dict[str, Any]:
    """(Operator) Put many owner-signed grants, for cars of the fleet, in their mailboxes."""
    fid = fleet_caller(caller, fleet_id)
    now = hub.clock()
    serials = []
    with hub.engine.begin() as conn:
        for text in body.bundles:
            raw = unb64(text, "bundle")
            try:
                vid = read_bundle(raw).vehicle_key.key_id
            except TetherError as exc:
                raise HTTPException(400, f"grant refused: {exc.message}") from None
            if not fleet_has(conn, fid, vid):
                raise forbidden(f"car {vid.hex()} is not in this fleet")
            serials.append(store_grant(conn, vid, raw, now))
    return {"serials": serials}


@router.post("/fleets/{fleet_id}/revocations", tags=["fleets"], status_code=202)
def bulk_revocations(
    fleet_id: FleetId, body: BulkRevocationsIn, caller: SignedBy, hub: HubDep
) -> dict[str, Any]:
    """(Operator) Queue many owner-signed revocations for cars of the fleet."""
    fid = fleet_caller(caller, fleet_id)
    now = hub.clock()
    parsed: list[tuple[bytes, bytes]] = []
    for text in body.revocations:
        raw = unb64(text, "revocation")
        try:
            parsed.append((credentials.parse_revocation(raw).vehicle_id, raw))
        except TetherError as exc:
            raise HTTPException(400, f"revocation refused: {exc.message}") from None
    # Signatures first, reading only: the write transaction that follows stays short.
    with hub.engine.connect().execution_options(readonly=True) as conn:
        ours = fleet_cars(conn, fid, {vid for vid, _ in parsed})
        stranger = next((vid for vid, _ in parsed if vid not in ours), None)
        if stranger is not None:
            raise forbidden(f"car {stranger.hex()} is not in this fleet")
        verified = verify_revocations(conn, parsed)
    items = [(vid, raw, rev) for (vid, raw), rev in zip(parsed, verified, strict=True)]
    with hub.engine.begin() as conn:
        out = store_revocations(conn, items, now)
    publish_revocations(hub, items, out)
    return {"revocations": out}
