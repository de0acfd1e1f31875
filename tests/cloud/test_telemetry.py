"""Telemetry partitioned by month on PostgreSQL: the migration keeps old rows, upkeep makes the
months ahead and drops those past the retention, and a year of history stays fast to query."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from tests.cloud.conftest import reset_pg
from tether.cloud import db, telemetry

NOW = dt.datetime(2026, 12, 3, 12, tzinfo=dt.UTC).timestamp()
DAY = 86_400.0


def _alembic(engine: sa.Engine, target: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, target)


def _latest(conn: sa.Connection, vid: bytes, since: float = 0.0) -> list[float]:
    """The route's query (GET /v1/vehicles/{id}/telemetry)."""
    rows = conn.execute(
        sa.select(db.telemetry.c.at)
        .where(db.telemetry.c.vehicle_id == vid, db.telemetry.c.at >= since)
        .order_by(db.telemetry.c.at.desc())
        .limit(100)
    ).all()
    return [r.at for r in rows]


def test_the_migration_moves_old_rows_into_monthly_partitions(pg_url: str) -> None:
    reset_pg(pg_url)
    engine = db.make_engine(pg_url)
    try:
        _alembic(engine, "0002")
        rows = [
            {"vehicle_id": b"\x01" * 16, "at": NOW - d * DAY, "state": json.dumps({"n": d})}
            for d in range(0, 70, 7)
        ]
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO telemetry (vehicle_id, at, state) VALUES (:vehicle_id, :at, :state)"
                ),
                rows,
            )
        db.upgrade(engine)
        with engine.begin() as conn:
            names = telemetry.partitions(conn)
            assert names == ["telemetry_y2026m10", "telemetry_y2026m11", "telemetry_y2026m12"]
            assert _latest(conn, b"\x01" * 16) == [r["at"] for r in rows]
            default = conn.execute(sa.text("SELECT count(*) FROM telemetry_default")).scalar()
            assert default == 0
    finally:
        engine.dispose()


def test_upkeep_makes_months_ahead_and_drops_what_is_past_retention(pg_url: str) -> None:
    reset_pg(pg_url)
    engine = db.make_engine(pg_url)
    try:
        db.upgrade(engine)
        vid = b"\x02" * 16
        far = NOW + 150 * DAY  # a car whose clock is months ahead: kept, in the default partition
        with engine.begin() as conn:
            conn.execute(sa.insert(db.telemetry), [{"vehicle_id": vid, "at": far, "state": {}}])
        done = telemetry.maintain(engine, NOW, retention_days=0)
        assert done.created == ("telemetry_y2026m12", "telemetry_y2027m01", "telemetry_y2027m02")
        assert telemetry.maintain(engine, NOW, retention_days=0).created == ()  # idempotent
        with engine.begin() as conn:
            times = [NOW - d * DAY for d in (10, 40, 70)]
            for at in times:
                telemetry.create_partition(conn, telemetry.month_start(at))
            conn.execute(
                sa.insert(db.telemetry),
                [{"vehicle_id": vid, "at": at, "state": {}} for at in times],
            )
        # Months later the far row's month gets its partition, and the row moves in with it.
        later = telemetry.maintain(engine, far - 20 * DAY, retention_days=60)
        assert "telemetry_y2027m05" in later.created
        assert later.dropped == tuple(  # every month wholly before the cutoff (60 days back)
            f"telemetry_y{m}" for m in ("2026m09", "2026m10", "2026m11", "2026m12", "2027m01")
        )
        with engine.begin() as conn:
            assert _latest(conn, vid) == [far]
            assert conn.execute(sa.text("SELECT count(*) FROM telemetry_default")).scalar() == 0
            assert conn.execute(sa.text("SELECT count(*) FROM telemetry_y2027m05")).scalar() == 1
    finally:
        engine.dispose()


def test_a_year_of_history_stays_fast(pg_url: str) -> None:
    reset_pg(pg_url)
    engine = db.make_engine(pg_url)
    try:
        db.upgrade(engine)
        start = NOW - 365 * DAY
        with engine.begin() as conn:
            month = telemetry.month_start(start)
            while month.timestamp() <= NOW:
                telemetry.create_partition(conn, month)
                month = telemetry.next_month(month)
            # 40 cars, one state every 30 minutes for a year: 700,800 rows.
            conn.execute(
                sa.text(
                    "INSERT INTO telemetry (vehicle_id, at, state) "
                    "SELECT decode(lpad(to_hex(c), 32, '0'), 'hex'), :start + s * 1800.0, "
                    "'{\"Vehicle.Speed\": 0}'::json "
                    "FROM generate_series(1, 40) c, generate_series(0, 17519) s"
                ),
                {"start": start},
            )
            conn.execute(sa.text("ANALYZE telemetry"))
        vid = bytes.fromhex(f"{7:032x}")
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM telemetry")).scalar() == 700_800
            took = []
            for _ in range(5):
                began = time.perf_counter()
                latest = _latest(conn, vid)
                week = _latest(conn, vid, since=NOW - 7 * DAY)
                took.append(time.perf_counter() - began)
            assert len(latest) == 100 and latest == sorted(latest, reverse=True)
            assert latest[0] == start + 17519 * 1800.0
            assert len(week) == 100
            assert min(took) < 0.05, took  # index scans on the partitions, not 700k rows
            # A time range touches only the partitions it names.
            plan = "\n".join(
                r[0]
                for r in conn.execute(
                    sa.text(
                        "EXPLAIN SELECT at FROM telemetry WHERE vehicle_id = :v AND at >= :since "
                        "ORDER BY at DESC LIMIT 100"
                    ),
                    {"v": vid, "since": NOW - 7 * DAY},
                )
            )
            scanned = {name for name in telemetry.partitions(conn) if name in plan}
            assert scanned <= {"telemetry_y2026m11", "telemetry_y2026m12"}, plan
            assert "Seq Scan" not in plan, plan
    finally:
        engine.dispose()
