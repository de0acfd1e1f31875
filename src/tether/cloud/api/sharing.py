"""Routes for sharing: invitations, key requests, the grant mailbox, revocations."""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated, Any

import sqlalchemy as sa
from anyio import to_thread
from fastapi import APIRouter, HTTPException, Path, Request

from tether.cloud import db
from tether.cloud.api.access import (
    HubDep,
    SignedBy,
    VehicleId,
    add_principal,
    check_signature,
    forbidden,
    public_key_from,
    require,
    unb64,
    vehicle_key,
)
from tether.cloud.api.bodies import (
    GrantIn,
    InvitationIn,
    KeyRequestIn,
    RevocationIn,
)
from tether.cloud.api.objects import (
    is_revoked,
    publish_revocations,
    revocation_json,
    store_grant,
    store_revocations,
    verify_revocations,
)
from tether.errors import TetherError
from tether.link.b64 import b64
from tether.link.bundles import read_bundle
from tether.link.status import Status

router = APIRouter(prefix="/v1")


@router.post("/vehicles/{vehicle_id}/invitations", tags=["sharing"], status_code=201)
def create_invitation(
    vehicle_id: VehicleId, body: InvitationIn, caller: SignedBy, hub: HubDep
) -> dict[str, Any]:
    """(Owner) A single-use invitation; its token goes to the friend as a link or QR code."""
    vid = bytes.fromhex(vehicle_id)
    now = hub.clock()
    token = secrets.token_urlsafe(24)
    with hub.engine.begin() as conn:
        require(conn, vid, caller, now, "owner")
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
    key = public_key_from(body.public_key, "public_key")
    raw = await request.body()
    caller = await to_thread.run_sync(check_signature, hub, request, raw, key)
    if caller.key_id != key.key_id:
        raise forbidden("sign the key request with the key it names")

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
            add_principal(conn, key, "phone", now)
            conn.execute(
                sa.insert(db.key_requests).values(
                    key_id=key.key_id,
                    vehicle_id=row.vehicle_id,
                    public_key=key.encoded,
                    label=body.label or row.label,
                    created_at=now,
                    status=Status.PENDING,
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
        require(conn, vid, caller, hub.clock(), "owner", "fleet")
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
        require(conn, vid, caller, now, "owner", "friend")
        try:
            issuer = read_bundle(raw).leaf.issuer_id
        except TetherError as exc:
            raise HTTPException(400, f"grant refused: {exc.message}") from None
        if issuer != caller.key_id:
            raise forbidden("you may only post grants you signed")
        serial = store_grant(conn, vid, raw, now)
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
        live = [r for r in rows if not is_revoked(conn, bytes(r.vehicle_id), caller.key_id)]
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
        require(conn, vid, caller, now, "owner")
        vehicle_key(conn, vid)
        [revocation] = verify_revocations(conn, [(vid, raw)])
        items = [(vid, raw, revocation)]
        [answer] = store_revocations(conn, items, now)
    publish_revocations(hub, items, [answer])
    return answer


@router.get("/vehicles/{vehicle_id}/revocations", tags=["revocation"])
def list_revocations(vehicle_id: VehicleId, caller: SignedBy, hub: HubDep) -> dict[str, Any]:
    """(Owner, fleet) Revocations and their delivery status, with the car's signed receipts."""
    vid = bytes.fromhex(vehicle_id)
    with hub.engine.begin() as conn:
        require(conn, vid, caller, hub.clock(), "owner", "fleet")
        rows = conn.execute(
            sa.select(db.revocations)
            .where(db.revocations.c.vehicle_id == vid)
            .order_by(db.revocations.c.seq)
        ).all()
    return {"revocations": [revocation_json(r) for r in rows]}
