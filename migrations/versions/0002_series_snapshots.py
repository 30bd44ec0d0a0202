"""series snapshots

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

The persisted recurrent state of streamed series (jobs.models.SeriesSnapshot). Times are naive
UTC and the types plain SQLAlchemy ones, as in 0001, so this file never changes when the ORM
class does. Epoch nanoseconds (~1.7e18) need BigInteger; state and tail are opaque bytes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "series_snapshots",
        sa.Column("series_id", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("freq", sa.String(length=32), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=True),
        sa.Column("first_ns", sa.BigInteger(), nullable=False),
        sa.Column("last_ns", sa.BigInteger(), nullable=False),
        sa.Column("points_seen", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("tail", sa.LargeBinary(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "points_seen >= 0 AND revision >= 1", name=op.f("ck_series_snapshots_counts")
        ),
        sa.PrimaryKeyConstraint("series_id", name=op.f("pk_series_snapshots")),
    )
    op.create_index(
        "ix_series_snapshots_updated_at", "series_snapshots", ["updated_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_series_snapshots_updated_at", table_name="series_snapshots")
    op.drop_table("series_snapshots")
