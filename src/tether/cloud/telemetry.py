"""Telemetry that can grow for years: monthly partitions by time on PostgreSQL, and retention.

On PostgreSQL ``telemetry`` is partitioned by range of ``at`` (seconds since the epoch), one
partition per UTC month (``telemetry_y2026m12``) plus a default one for the odd row a car stamps
far outside (a clock years off). Every instance runs :func:`maintain` at start and hourly, under
one advisory lock: it makes the partitions for this month and the next ones ahead of time
(moving any rows the default partition already holds for them), and drops whole partitions that
are past the retention, which costs a catalogue change, not a DELETE of millions of rows. A
query for a car's recent history touches only the partitions its time range names, through each
partition's (vehicle_id, at) index. SQLite (one machine, a development server) keeps one table
and deletes rows past the retention.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tether.cloud import db

log = logging.getLogger(__name__)

#: Months of partitions made ahead of the current one, so that inserts never wait for DDL.
AHEAD = 2
_LOCK = 746574686573  # one instance maintains at a time
_NAME = re.compile(r"telemetry_y(\d{4})m(\d{2})")


@dataclasses.dataclass(frozen=True, slots=True)
class Maintained:
    created: tuple[str, ...]
    dropped: tuple[str, ...]
    deleted: int  # rows deleted one by one (SQLite, or the default partition)


def month_start(at: float) -> dt.datetime:
    day = dt.datetime.fromtimestamp(at, dt.UTC)
    return dt.datetime(day.year, day.month, 1, tzinfo=dt.UTC)


def next_month(start: dt.datetime) -> dt.datetime:
    return start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)


def partition_name(start: dt.datetime) -> str:
    return f"telemetry_y{start.year:04d}m{start.month:02d}"


def _bounds(start: dt.datetime) -> tuple[float, float]:
    return start.timestamp(), next_month(start).timestamp()


def partitions(conn: Connection) -> list[str]:
    """The monthly partitions that exist, oldest first."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'telemetry'"
        )
    ).all()
    return sorted(r.relname for r in rows if _NAME.fullmatch(r.relname))


def create_partition(conn: Connection, start: dt.datetime) -> bool:
    """Make the month's partition unless it exists; rows the default held for it move in."""
    name = partition_name(start)
    if name in partitions(conn):
        return False
    low, high = _bounds(start)
    conn.execute(sa.text(f"CREATE TABLE {name} (LIKE telemetry INCLUDING DEFAULTS)"))
    conn.execute(
        sa.text(
            f"WITH moved AS (DELETE FROM telemetry_default WHERE at >= :low AND at < :high "
            f"RETURNING *) INSERT INTO {name} SELECT * FROM moved"
        ),
        {"low": low, "high": high},
    )
    conn.execute(
        sa.text(
            f"ALTER TABLE telemetry ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})"
        )
    )
    return True


def maintain(engine: Engine, now: float, *, retention_days: float) -> Maintained:
    """Partitions for now and ahead; nothing kept past ``retention_days`` (0: keep everything)."""
    cutoff = now - retention_days * 86_400 if retention_days > 0 else None
    with engine.begin() as conn:
        if conn.dialect.name != "postgresql":
            deleted = 0
            if cutoff is not None:
                deleted = conn.execute(
                    sa.delete(db.telemetry).where(db.telemetry.c.at < cutoff)
                ).rowcount
            return Maintained((), (), deleted)
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK})
        created: list[str] = []
        start = month_start(now)
        for _ in range(AHEAD + 1):
            if create_partition(conn, start):
                created.append(partition_name(start))
            start = next_month(start)
        dropped: list[str] = []
        deleted = 0
        if cutoff is not None:
            for name in partitions(conn):
                match = _NAME.fullmatch(name)
                assert match is not None
                begin = dt.datetime(int(match[1]), int(match[2]), 1, tzinfo=dt.UTC)
                if _bounds(begin)[1] <= cutoff:  # wholly past the retention
                    conn.execute(sa.text(f"ALTER TABLE telemetry DETACH PARTITION {name}"))
                    conn.execute(sa.text(f"DROP TABLE {name}"))
                    dropped.append(name)
            deleted = conn.execute(
                sa.text("DELETE FROM telemetry_default WHERE at < :cutoff"), {"cutoff": cutoff}
            ).rowcount
    if created or dropped:
        log.info("telemetry partitions: made %s, dropped %s", created, dropped)
    return Maintained(tuple(created), tuple(dropped), deleted)
