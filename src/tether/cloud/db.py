"""The server's tables (SQLAlchemy Core) and opening a database at its newest migration.

SQLite by default, PostgreSQL by URL; the schema is created and upgraded only by the Alembic
migrations in ``tether/cloud/migrations`` (the same on both), never by ``create_all``. Nothing in
here can open a car: the server stores public keys, signed objects and their delivery status.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

metadata = sa.MetaData()
#: Database connections per server process (two instances stay well under max_connections=100).
POOL = 30

#: Every key the server can check a request signature against (cars, phones, fleet operators).
principals = sa.Table(
    "principals",
    metadata,
    sa.Column("key_id", sa.LargeBinary(16), primary_key=True),
    sa.Column("public_key", sa.LargeBinary(65), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # vehicle | phone | fleet
    sa.Column("created_at", sa.Float, nullable=False),
    #: False for a key only listed by someone else (a car's owners): its holder may still claim it.
    sa.Column("proven", sa.Boolean, nullable=False, server_default=sa.true()),
)

#: Nonces of signed requests seen in the last MAX_SKEW seconds (a replayed request is refused).
nonces = sa.Table(
    "nonces",
    metadata,
    sa.Column("key_id", sa.LargeBinary(16), primary_key=True),
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
)

vehicles = sa.Table(
    "vehicles",
    metadata,
    sa.Column("vehicle_id", sa.LargeBinary(16), primary_key=True),
    sa.Column("public_key", sa.LargeBinary(65), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("address", sa.String(256), nullable=False, server_default=""),
    sa.Column("registered_at", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("state", sa.JSON, nullable=False),
    sa.Column("state_at", sa.Float, nullable=False, server_default="0"),
)

#: Who may act for a car: its owners (as the car itself declared them) and its grantees.
members = sa.Table(
    "members",
    metadata,
    sa.Column("vehicle_id", sa.LargeBinary(16), primary_key=True),
    sa.Column("key_id", sa.LargeBinary(16), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),  # owner | friend
    sa.Column("not_after", sa.Float, nullable=True),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
)

invitations = sa.Table(
    "invitations",
    metadata,
    sa.Column("token_hash", sa.LargeBinary(32), primary_key=True),
    sa.Column("vehicle_id", sa.LargeBinary(16), nullable=False, index=True),
    sa.Column("created_by", sa.LargeBinary(16), nullable=False),
    sa.Column("label", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("used", sa.Boolean, nullable=False, server_default=sa.false()),
)

key_requests = sa.Table(
    "key_requests",
    metadata,
    sa.Column("key_id", sa.LargeBinary(16), primary_key=True),
    sa.Column("vehicle_id", sa.LargeBinary(16), nullable=False, index=True),
    sa.Column("public_key", sa.LargeBinary(65), nullable=False),
    sa.Column("label", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | granted
)

#: The mailbox: grant bundles signed on the owner's phone, waiting for their grantee.
grants = sa.Table(
    "grants",
    metadata,
    sa.Column("serial", sa.LargeBinary(16), primary_key=True),
    sa.Column("vehicle_id", sa.LargeBinary(16), nullable=False, index=True),
    sa.Column("grantee_id", sa.LargeBinary(16), nullable=False, index=True),
    sa.Column("issuer_id", sa.LargeBinary(16), nullable=False),
    sa.Column("bundle", sa.LargeBinary, nullable=False),
    sa.Column("not_after", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("fetched_at", sa.Float, nullable=True),
)

#: Owner-signed revocations queued for their car, with the car's signed receipt once applied.
revocations = sa.Table(
    "revocations",
    metadata,
    sa.Column("digest", sa.LargeBinary(32), primary_key=True),
    sa.Column("vehicle_id", sa.LargeBinary(16), nullable=False, index=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | applied | refused
    sa.Column("receipt", sa.LargeBinary, nullable=True),
    sa.Column("done_at", sa.Float, nullable=True),
)

#: Phone-signed remote commands and the car's signed results.
commands = sa.Table(
    "commands",
    metadata,
    sa.Column("digest", sa.LargeBinary(32), primary_key=True),
    sa.Column("vehicle_id", sa.LargeBinary(16), nullable=False, index=True),
    sa.Column("key_id", sa.LargeBinary(16), nullable=False),
    sa.Column("command", sa.String(16), nullable=False),
    sa.Column("envelope", sa.LargeBinary, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | done
    sa.Column("result", sa.LargeBinary, nullable=True),
    sa.Column("done_at", sa.Float, nullable=True),
)

telemetry = sa.Table(
    "telemetry",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("vehicle_id", sa.LargeBinary(16), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("state", sa.JSON, nullable=False),
    sa.Index("ix_telemetry_vehicle_at", "vehicle_id", "at"),
)

#: Copies of the cars' hash-chained audit logs (also an off-car anchor of each chain's head).
audit = sa.Table(
    "audit",
    metadata,
    sa.Column("vehicle_id", sa.LargeBinary(16), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("entry", sa.JSON, nullable=False),
)

fleets = sa.Table(
    "fleets",
    metadata,
    sa.Column("fleet_id", sa.LargeBinary(16), primary_key=True),  # the operator key's id
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

fleet_vehicles = sa.Table(
    "fleet_vehicles",
    metadata,
    sa.Column("fleet_id", sa.LargeBinary(16), primary_key=True),
    sa.Column("vehicle_id", sa.LargeBinary(16), primary_key=True),
    sa.Column("added_at", sa.Float, nullable=False),
    #: In the fleet only when both agreed: the car's owner and the fleet's operator.
    sa.Column("owner_ok", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("fleet_ok", sa.Boolean, nullable=False, server_default=sa.true()),
)

#: Home Assistant's MQTT logins, each made by one owner key and scoped to that owner's cars.
ha_credentials = sa.Table(
    "ha_credentials",
    metadata,
    sa.Column("cred_id", sa.LargeBinary(16), primary_key=True),
    sa.Column("owner_id", sa.LargeBinary(16), nullable=False),
    sa.Column("secret_hash", sa.LargeBinary(32), nullable=False),  # SHA-256 of a 32-byte secret
    sa.Column("created_at", sa.Float, nullable=False),
)

#: Requests counted per bucket (a source address, a key, a car) and fixed time window.
rate_counters = sa.Table(
    "rate_counters",
    metadata,
    sa.Column("bucket", sa.String(96), primary_key=True),
    sa.Column("window", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)


def default_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'server.db'}"


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    dbapi_conn.isolation_level = None  # type: ignore[attr-defined]  # we say BEGIN ourselves
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    # A deferred transaction that reads and then writes cannot wait for another writer (SQLite
    # answers "database is locked" at once): writers take the lock up front. Connections marked
    # readonly (execution option) read a snapshot and never block a writer.
    readonly = conn.get_execution_options().get("readonly", False)
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def insert_new(conn: sa.Connection, table: sa.Table, row: dict[str, Any]) -> bool:
    """Insert ``row`` unless its primary key is taken (by anyone, even a concurrent writer).

    True if this call inserted it. Without the ON CONFLICT clause two servers racing on the same
    key would turn the loser's request into a 500 instead of a clear answer.
    """
    if conn.dialect.name == "sqlite":
        # rowcount, not RETURNING: SQLite has RETURNING only since 3.35 (Debian 11 has 3.34).
        lite = sqlite.insert(table).values(**row).on_conflict_do_nothing()
        return bool(conn.execute(lite).rowcount == 1)
    # psycopg reports rowcount -1 for this statement; RETURNING says what happened.
    pg = postgresql.insert(table).values(**row).on_conflict_do_nothing()
    key = next(iter(table.primary_key.columns))
    return conn.execute(pg.returning(key)).first() is not None


def insert_new_rows(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert those of ``rows`` whose primary key is not taken, in one statement."""
    if rows:
        dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
        conn.execute(dialect.insert(table).on_conflict_do_nothing(), rows)


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (sqlite:///..., postgresql+psycopg://...), durable commits."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # As many connections as the API has worker threads (anyio: 40), opened once and kept: an
    # overflow connection opened and closed per request costs PostgreSQL a backend fork each.
    return sa.create_engine(
        url, pool_pre_ping=True, pool_size=POOL, max_overflow=0, pool_timeout=30
    )


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest migration (idempotent; safe to run at every start)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Instances starting together on one database: one migrates, the others wait and
            # then find it at head (the lock ends with this transaction).
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(746574686572)"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
