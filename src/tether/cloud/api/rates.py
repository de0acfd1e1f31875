"""Rate limits kept in the database, so that every server instance counts the same requests.

Fixed windows per bucket (a source address, a key): one upsert per charged request, read back in
the same transaction, so concurrent requests (on one instance or several) are each counted. What
costs the server storage for good (a new car, a new key) is charged; ordinary signed requests by
known keys are not.
"""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from fastapi import HTTPException
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from tether.cloud import db


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimits:
    """How much a source or a key may create (docs/cloud.md, "Limits")."""

    new_cars_per_source: int = 10  # per hour, from one address
    registrations_per_car: int = 60  # per hour, re-registrations of one car
    window: float = 3600.0
    max_owners: int = 16  # owner keys one car may list
    unseen_car_ttl: float = 86_400.0  # a car that registered and never came online is forgotten


class TooMany(HTTPException):
    """429 with Retry-After: the bucket is full for the rest of its window."""

    def __init__(self, what: str, retry_after: int) -> None:
        super().__init__(
            429, f"too many {what}; try again in {retry_after} s", {"Retry-After": str(retry_after)}
        )


def charge(
    conn: Connection, bucket: str, *, limit: int, window: float, now: float, what: str
) -> None:
    """Count one request in ``bucket``; 429 once ``limit`` is passed in the current window."""
    start = int(now // window)
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    insert = dialect.insert(db.rate_counters).values(bucket=bucket[:96], window=start, count=1)
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=["bucket", "window"],
            set_={"count": db.rate_counters.c.count + 1},
        )
    )
    count = conn.execute(
        sa.select(db.rate_counters.c.count).where(
            db.rate_counters.c.bucket == bucket[:96], db.rate_counters.c.window == start
        )
    ).scalar_one()
    if count > limit:
        raise TooMany(what, int((start + 1) * window - now) + 1)


def sweep(conn: Connection, limits: RateLimits, now: float) -> None:
    """Forget old windows, and cars that registered but never came online."""
    conn.execute(
        sa.delete(db.rate_counters).where(db.rate_counters.c.window < int(now // limits.window) - 1)
    )
    stale = [
        bytes(r.vehicle_id)
        for r in conn.execute(
            sa.select(db.vehicles.c.vehicle_id).where(
                db.vehicles.c.last_seen <= db.vehicles.c.registered_at,
                db.vehicles.c.registered_at < now - limits.unseen_car_ttl,
            )
        )
    ]
    if stale:
        conn.execute(sa.delete(db.members).where(db.members.c.vehicle_id.in_(stale)))
        conn.execute(sa.delete(db.vehicles).where(db.vehicles.c.vehicle_id.in_(stale)))
        conn.execute(
            sa.delete(db.principals).where(
                db.principals.c.key_id.in_(stale), db.principals.c.kind == "vehicle"
            )
        )
