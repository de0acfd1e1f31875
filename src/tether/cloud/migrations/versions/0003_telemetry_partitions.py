"""telemetry partitioned by month on PostgreSQL (tether.cloud.telemetry keeps the partitions)

Revision ID: 0003
Revises: 0002

The table becomes ``PARTITION BY RANGE (at)`` with a default partition, and the rows it held are
copied into monthly partitions made for them. Its key is (id, at): a partitioned table's key must
hold the partition column. SQLite keeps its one table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.cloud import telemetry

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE telemetry RENAME TO telemetry_unpartitioned")
    op.execute("ALTER INDEX ix_telemetry_vehicle_at RENAME TO ix_telemetry_unpartitioned")
    op.execute("CREATE SEQUENCE telemetry_row_seq AS bigint")
    op.execute(
        "CREATE TABLE telemetry ("
        " id bigint NOT NULL DEFAULT nextval('telemetry_row_seq'),"
        " vehicle_id bytea NOT NULL, at double precision NOT NULL, state json NOT NULL,"
        " PRIMARY KEY (id, at)) PARTITION BY RANGE (at)"
    )
    op.execute("ALTER SEQUENCE telemetry_row_seq OWNED BY telemetry.id")
    op.execute("CREATE INDEX ix_telemetry_vehicle_at ON telemetry (vehicle_id, at)")
    op.execute("CREATE TABLE telemetry_default PARTITION OF telemetry DEFAULT")
    span = conn.execute(sa.text("SELECT min(at), max(at) FROM telemetry_unpartitioned")).first()
    if span is not None and span[0] is not None:
        start, last = telemetry.month_start(span[0]), telemetry.month_start(span[1])
        while start <= last:
            telemetry.create_partition(conn, start)
            start = telemetry.next_month(start)
    op.execute(
        "INSERT INTO telemetry (vehicle_id, at, state) "
        "SELECT vehicle_id, at, state FROM telemetry_unpartitioned ORDER BY id"
    )
    op.execute("DROP TABLE telemetry_unpartitioned")


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE telemetry RENAME TO telemetry_partitioned")
    op.execute("ALTER INDEX ix_telemetry_vehicle_at RENAME TO ix_telemetry_partitioned")
    op.execute(
        "CREATE TABLE telemetry (id serial PRIMARY KEY, vehicle_id bytea NOT NULL,"
        " at double precision NOT NULL, state json NOT NULL)"
    )
    op.execute("CREATE INDEX ix_telemetry_vehicle_at ON telemetry (vehicle_id, at)")
    op.execute(
        "INSERT INTO telemetry (vehicle_id, at, state) "
        "SELECT vehicle_id, at, state FROM telemetry_partitioned ORDER BY id"
    )
    op.execute("DROP TABLE telemetry_partitioned")
