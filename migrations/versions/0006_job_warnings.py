"""job warnings

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

What a submission's checks could not do (jobs.spec.check_job: a data file above
URNN_JOB_DATA_CHECK_MAX_BYTES had only its header checked, ...) was said in the POST answer
only, so an Idempotency-Key replay, GET /jobs/{id} and GET /schedules/{id} lost it. Now kept
on the row (jobs.models.Job.warnings, Schedule.warnings): a JSON list of strings. Stored rows
get NULL: not recorded, read as no warnings (the API answers []).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("warnings", sa.JSON(), nullable=True))
    op.add_column("schedules", sa.Column("warnings", sa.JSON(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # In place (3.35+), not a batch copy: re-creating `schedules` would fire
        # jobs.schedule_id's ON DELETE SET NULL, as 0004's downgrade explains.
        op.execute("ALTER TABLE schedules DROP COLUMN warnings")
        op.execute("ALTER TABLE jobs DROP COLUMN warnings")
    else:
        op.drop_column("schedules", "warnings")
        op.drop_column("jobs", "warnings")
