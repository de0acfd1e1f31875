"""standing: proven keys, fleet consent, rate counters, Home Assistant credentials

Revision ID: 0002
Revises: 0001

A key listed by someone else (a car's owner list) is recorded unproven and can be claimed by its
holder; a car is in a fleet only once its owner and the fleet's operator both asked; rate counters
live in the database so that every server instance counts the same requests.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("principals", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("proven", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
    with op.batch_alter_table("fleet_vehicles", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("owner_ok", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("fleet_ok", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
    op.create_table(
        "ha_credentials",
        sa.Column("cred_id", sa.LargeBinary(length=16), nullable=False),
        sa.Column("owner_id", sa.LargeBinary(length=16), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("cred_id"),
    )
    op.create_table(
        "rate_counters",
        sa.Column("bucket", sa.String(length=96), nullable=False),
        sa.Column("window", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "window"),
    )


def downgrade() -> None:
    op.drop_table("rate_counters")
    op.drop_table("ha_credentials")
    with op.batch_alter_table("fleet_vehicles", schema=None) as batch_op:
        batch_op.drop_column("fleet_ok")
        batch_op.drop_column("owner_ok")
    with op.batch_alter_table("principals", schema=None) as batch_op:
        batch_op.drop_column("proven")
