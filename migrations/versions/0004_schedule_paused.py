"""schedule paused

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

PATCH /schedules/{id} pauses and resumes a schedule (jobs.models.Schedule.paused). Stored
schedules keep running: the column arrives false on every row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "schedules",
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # Not a batch copy: dropping and re-creating `schedules` fires jobs.schedule_id's ON
        # DELETE SET NULL (foreign keys are on), and every scheduled job lost its schedule.
        # SQLite drops a plain column in place since 3.35 (Python 3.11 ships 3.37 or later).
        op.execute("ALTER TABLE schedules DROP COLUMN paused")
    else:
        op.drop_column("schedules", "paused")
