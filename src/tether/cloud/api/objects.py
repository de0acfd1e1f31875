"""Signed objects the server checks before it stores them, and what cars send up."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import HTTPException
from sqlalchemy.engine import Connection

from tether.cloud import db, wakeup
from tether.cloud.api.access import (
    Hub,
    add_friend,
    add_principal,
    find_vehicle_key,
    owner_lookup,
    owners_of,
)
from tether.errors import RemoteError, TetherError
from tether.link.b64 import b64
from tether.link.bundles import read_bundle
from tether.link.status import Status
from tether.protocol import credentials, remote
from tether.protocol.credentials import Revocation
from tether.protocol.crypto import PublicKey, sha256


# -- the relay's views of signed objects -----------------------------------------------------------
def store_grant(conn: Connection, vehicle_id: bytes, raw_bundle: bytes, now: float) -> str:
    """Check a bundle like the car will (owner-signed chain, this car) and put it in the mailbox."""
    try:
        bundle = read_bundle(raw_bundle)
        # A grant may start later: check it as of its start (expiry is still checked then).
        starts = max(g.not_before for g in bundle.grants)
        chain = credentials.verify_chain(
            bundle.grants,
            vehicle_id=vehicle_id,
            owner_key=owner_lookup(conn, vehicle_id),
            is_revoked=lambda some_id: is_revoked(conn, vehicle_id, some_id),
            now=max(now, float(starts)),
            max_depth=credentials.MAX_CHAIN,
        )
    except TetherError as exc:
        raise HTTPException(400, f"grant refused ({exc.code}): {exc.message}") from None
    leaf = chain.leaf
    if bundle.vehicle_key.key_id != vehicle_id:
        raise HTTPException(400, "the grant's car key is not this car's")
    # Checked before anything is stored: a grant for a key that is the car's owner changes nothing.
    add_friend(conn, vehicle_id, leaf.grantee.key_id, float(leaf.expires))
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
    add_principal(conn, leaf.grantee, "phone", now, proven=False)
    conn.execute(
        sa.update(db.key_requests)
        .where(db.key_requests.c.key_id == leaf.grantee.key_id)
        .values(status=Status.GRANTED)
    )
    return leaf.serial.hex()


def is_revoked(conn: Connection, vehicle_id: bytes, some_id: bytes) -> bool:
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


def verify_revocations(conn: Connection, items: list[tuple[bytes, bytes]]) -> list[Revocation]:
    """Check each (car, revocation) against that car's owners, read for all cars in one query."""
    owners = owners_of(conn, {vid for vid, _ in items})
    checked = []
    for vid, raw in items:
        try:
            checked.append(
                credentials.verify_revocation(
                    raw, vehicle_id=vid, owner_key=owners.get(vid, {}).get
                )
            )
        except TetherError as exc:
            raise HTTPException(400, f"revocation refused ({exc.code}): {exc.message}") from None
    return checked


def store_revocations(
    conn: Connection, items: list[tuple[bytes, bytes, Revocation]], now: float
) -> list[dict[str, Any]]:
    """Queue verified (car, raw, revocation)s and close the server's doors to their keys.

    A few statements for the whole batch, not a few per revocation. The caller publishes the
    pending ones after its transaction commits (:func:`publish_revocations`), so a car's receipt
    can never arrive before the revocation it acknowledges is stored.
    """
    digests = [sha256(raw) for _, raw, _ in items]
    known = {
        bytes(r.digest): str(r.status)
        for r in conn.execute(
            sa.select(db.revocations.c.digest, db.revocations.c.status).where(
                db.revocations.c.digest.in_(digests)
            )
        )
    }
    fresh = [
        {
            "digest": digest,
            "vehicle_id": vid,
            "seq": revocation.seq,
            "raw": raw,
            "created_at": now,
            "status": Status.PENDING,
        }
        for (vid, raw, revocation), digest in zip(items, digests, strict=True)
        if digest not in known
    ]
    # A repeat in the batch, or a racing writer that came first, is skipped by the insert itself.
    db.insert_new_rows(conn, db.revocations, fresh)
    # The server's own view: revoked keys, and the holders of revoked grants (and their chains).
    grants: dict[bytes, list[tuple[bytes, bytes, set[bytes]]]] = {}
    for row in conn.execute(
        sa.select(
            db.grants.c.vehicle_id, db.grants.c.serial, db.grants.c.grantee_id, db.grants.c.bundle
        ).where(db.grants.c.vehicle_id.in_({vid for vid, _, _ in items}))
    ):
        parents = {g.serial for g in chain_of(bytes(row.bundle))[:-1]}
        grants.setdefault(bytes(row.vehicle_id), []).append(
            (bytes(row.serial), bytes(row.grantee_id), parents)
        )
    # A cascade never reaches an owner key: only a revocation naming it directly closes it.
    owners = owners_of(conn, {vid for vid, _, _ in items})
    closed = {
        (vid, key)
        for vid, _, revocation in items
        for key in closed_keys(revocation.keys, revocation.grants, grants.get(vid, []))
        if key in revocation.keys or key not in owners.get(vid, {})
    }
    if closed:
        conn.execute(
            sa.update(db.members)
            .where(
                db.members.c.vehicle_id == sa.bindparam("vid"),
                db.members.c.key_id == sa.bindparam("kid"),
            )
            .values(revoked=True),
            [{"vid": vid, "kid": key} for vid, key in sorted(closed)],
        )
    return [
        {"id": digest.hex(), "seq": revocation.seq, "status": known.get(digest, Status.PENDING)}
        for (_, _, revocation), digest in zip(items, digests, strict=True)
    ]


def closed_keys(
    keys_revoked: frozenset[bytes],
    serials_revoked: frozenset[bytes],
    grants: list[tuple[bytes, bytes, set[bytes]]],
) -> set[bytes]:
    """The keys a revocation closes: its own, and the holders of its grants and of every grant
    below them. ``grants`` are the car's (serial, grantee, serials of the chain above it)."""
    keys = set(keys_revoked)
    serials = set(serials_revoked)
    changed = True
    while changed:
        changed = False
        for serial, grantee, parents in grants:
            hit = serial in serials or grantee in keys or bool(parents & serials)
            if hit and (serial not in serials or grantee not in keys):
                serials.add(serial)
                keys.add(grantee)
                changed = True
    return keys


def publish_revocations(
    hub: Hub, items: list[tuple[bytes, bytes, Revocation]], stored: list[dict[str, Any]]
) -> None:
    """Push the stored, still pending revocations to their cars (after the commit), once each."""
    pushed: set[str] = set()
    for (vid, raw, _), answer in zip(items, stored, strict=True):
        if answer["status"] == Status.PENDING and answer["id"] not in pushed:
            pushed.add(answer["id"])
            hub.publish(vid, {"t": "revocation", "raw": raw})


def chain_of(raw_bundle: bytes) -> list[credentials.Grant]:
    return list(read_bundle(raw_bundle).grants)


def revocation_json(row: Any) -> dict[str, Any]:
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
    return accept_uplinks(hub, [(vehicle_id, message)])[0]


def accept_uplinks(hub: Hub, items: list[tuple[bytes, dict[str, Any]]]) -> list[str]:
    """:func:`accept_uplink` for many messages in one transaction (one commit for the batch the
    relay took off the broker); if the batch fails, each message is tried on its own, so one
    bad row never costs the others. The outcome of each, in order."""
    now = hub.clock()
    try:
        with hub.engine.begin() as conn:
            states = _accept_states(conn, items, now)  # the bulk of a busy fleet: set-wise
            done = [
                states.get(index) or _accept_one(conn, vid, message, now)
                for index, (vid, message) in enumerate(items)
            ]
    except Exception:
        if len(items) == 1:
            raise
        return [accept_uplinks(hub, [item])[0] for item in items]
    for outcome, digest, body in done:
        if digest and outcome == "stored":
            hub.wake(digest, body)  # after the commit: the poll must see it
    return [outcome for outcome, _, _ in done]


def _accept_states(
    conn: Connection, items: list[tuple[bytes, dict[str, Any]]], now: float
) -> dict[int, tuple[str, bytes, bytes]]:
    """The batch's signed states, each verified under its car's key, stored in three statements
    whatever their number (one read of the keys, one insert, one update); by index."""
    wanted = [
        (index, vid, message["body"])
        for index, (vid, message) in enumerate(items)
        if message.get("t") == "state" and type(message.get("body")) is bytes
    ]
    if not wanted:
        return {}
    keys = {
        bytes(r.vehicle_id): PublicKey(bytes(r.public_key))
        for r in conn.execute(
            sa.select(db.vehicles.c.vehicle_id, db.vehicles.c.public_key).where(
                db.vehicles.c.vehicle_id.in_({vid for _, vid, _ in wanted})
            )
        )
    }
    out: dict[int, tuple[str, bytes, bytes]] = {}
    rows: list[dict[str, Any]] = []
    latest: dict[bytes, dict[str, Any]] = {}
    for index, vid, body in wanted:
        key = keys.get(vid)
        if key is None:
            out[index] = ("unknown car", b"", b"")
            continue
        try:
            state = remote.verify_state(body, vehicle_key=key)
        except RemoteError:
            out[index] = ("forged", b"", b"")
            continue
        rows.append({"vehicle_id": vid, "at": float(state.at), "state": state.signals})
        latest[vid] = {"vid": vid, "s": state.signals, "at": float(state.at), "seen": now}
        out[index] = ("stored", b"", b"")
    if rows:
        conn.execute(sa.insert(db.telemetry), rows)
        conn.execute(
            sa.update(db.vehicles)
            .where(db.vehicles.c.vehicle_id == sa.bindparam("vid"))
            .values(
                state=sa.bindparam("s"),
                state_at=sa.bindparam("at"),
                last_seen=sa.bindparam("seen"),
            ),
            list(latest.values()),
        )
    return out


def _accept_one(
    conn: Connection, vehicle_id: bytes, message: dict[str, Any], now: float
) -> tuple[str, bytes, bytes]:
    """(outcome, the command's digest for a result, the body)."""
    kind, body = message.get("t"), message.get("body")
    if type(body) is not bytes:
        return "malformed", b"", b""
    result: remote.Result | None = None
    if kind == "result":
        try:
            result = remote.parse_result(body)  # which command it answers: decoded once
        except RemoteError:
            return "malformed", b"", b""
    key = find_vehicle_key(conn, vehicle_id)
    if key is None:
        return "unknown car", b"", b""
    if result is not None:
        return _accept_result(conn, key, result, now), result.request, body
    if kind == "receipt":
        return _accept_receipt(conn, key, body, now), b"", b""
    if kind == "state":
        return _accept_state(conn, key, body, now), b"", b""
    return "unknown kind", b"", b""


def _accept_result(conn: Connection, key: PublicKey, result: remote.Result, now: float) -> str:
    digest, body = result.request, result.raw
    row = conn.execute(
        sa.select(db.commands.c.envelope, db.commands.c.status).where(
            db.commands.c.digest == digest, db.commands.c.vehicle_id == key.key_id
        )
    ).first()
    if row is None:
        return "unknown command"
    if row.status == Status.DONE:
        return "duplicate"
    try:
        remote.verify_result(result, vehicle_key=key, envelope_raw=bytes(row.envelope))
    except RemoteError:
        return "forged"
    conn.execute(
        sa.update(db.commands)
        .where(db.commands.c.digest == digest)
        .values(status=Status.DONE, result=body, done_at=now)
    )
    wakeup.notify(conn, digest)  # the request may be waiting on another instance
    return "stored"


def _accept_receipt(conn: Connection, key: PublicKey, body: bytes, now: float) -> str:
    try:
        receipt = remote.verify_receipt(body, vehicle_key=key)
    except RemoteError:
        return "forged"
    updated = conn.execute(
        sa.update(db.revocations)
        .where(
            db.revocations.c.digest == receipt.revocation,
            db.revocations.c.vehicle_id == key.key_id,
            db.revocations.c.status == Status.PENDING,
        )
        .values(status=Status.APPLIED if receipt.ok else Status.REFUSED, receipt=body, done_at=now)
    )
    return "stored" if updated.rowcount else "duplicate"


def _accept_state(conn: Connection, key: PublicKey, body: bytes, now: float) -> str:
    try:
        state = remote.verify_state(body, vehicle_key=key)
    except RemoteError:
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
