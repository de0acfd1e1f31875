"""Routes for Home Assistant: an owner makes (and revokes) an MQTT login scoped to its cars."""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Path, Request

from tether.cloud import db
from tether.cloud.api import rates
from tether.cloud.api.access import HubDep, SignedBy, forbidden
from tether.link import topics

router = APIRouter(prefix="/v1")
MAX_CREDENTIALS = 8  # per owner key


@router.post("/homeassistant/credentials", tags=["home"], status_code=201)
def create_credential(caller: SignedBy, hub: HubDep, request: Request) -> dict[str, Any]:
    """(Owner) A Home Assistant MQTT login that reads the state of the caller's own cars only.

    The password is shown once (the server keeps its hash). It reads discovery and plain state
    of the cars this key owns at the moment of each message, and can publish nothing.
    """
    now = hub.clock()
    with hub.engine.begin() as conn:
        owns = conn.execute(
            sa.select(db.members.c.vehicle_id).where(
                db.members.c.key_id == caller.key_id,
                db.members.c.role == "owner",
                db.members.c.revoked == sa.false(),
            )
        ).first()
        if owns is None:
            raise forbidden("only a car's owner may make a Home Assistant login")
        made = conn.execute(
            sa.select(sa.func.count())
            .select_from(db.ha_credentials)
            .where(db.ha_credentials.c.owner_id == caller.key_id)
        ).scalar_one()
        if made >= MAX_CREDENTIALS:
            raise rates.TooMany("Home Assistant logins for this key (revoke one first)", 3600)
        cred_id, secret = secrets.token_bytes(16), secrets.token_urlsafe(32)
        conn.execute(
            sa.insert(db.ha_credentials).values(
                cred_id=cred_id,
                owner_id=caller.key_id,
                secret_hash=hashlib.sha256(secret.encode()).digest(),
                created_at=now,
            )
        )
    if hub.dynsec is not None:
        hub.provision(
            hub.dynsec.add_home_assistant(
                topics.HA_PREFIX + cred_id.hex(), secret, hub.ha_cars(cred_id)
            )
        )
    return {
        "id": cred_id.hex(),
        "username": topics.HA_PREFIX + cred_id.hex(),
        "password": secret,
        "mqtt": getattr(request.app.state, "mqtt_url", ""),
        "discovery_prefix": topics.DISCOVERY_PREFIX,
    }


@router.delete("/homeassistant/credentials/{cred_id}", tags=["home"])
def delete_credential(
    cred_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")], caller: SignedBy, hub: HubDep
) -> dict[str, Any]:
    """(The owner who made it) Revoke a Home Assistant login."""
    with hub.engine.begin() as conn:
        gone = conn.execute(
            sa.delete(db.ha_credentials).where(
                db.ha_credentials.c.cred_id == bytes.fromhex(cred_id),
                db.ha_credentials.c.owner_id == caller.key_id,
            )
        )
    if not gone.rowcount:
        raise HTTPException(404, "no such login of yours")
    if hub.dynsec is not None:
        username = topics.HA_PREFIX + cred_id
        hub.provision(hub.dynsec.remove(username, f"ha-{username}"))
    return {"id": cred_id, "deleted": True}
