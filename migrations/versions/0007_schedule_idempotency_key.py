"""schedule idempotency key

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

POST /schedules's `Idempotency-Key` header (jobs.models.Schedule.idempotency_key) and the
hash of the body it was first sent with, as 0003 gave POST /jobs. The header was ignored, so
a client's retry of a create whose answer it lost made a second schedule, and every due time
then trained twice. A unique index, as 0003's: any number of NULLs share it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("schedules", sa.Column("idempotency_key", sa.String(length=255), nullable=True))
    op.add_column("schedules", sa.Column("request_hash", sa.String(length=64), nullable=True))
    op.create_index("uq_schedules_idempotency_key", "schedules", ["idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_schedules_idempotency_key", table_name="schedules")
    if op.get_bind().dialect.name == "sqlite":
        # In place (3.35+), not a batch copy: re-creating `schedules` would fire
        # jobs.schedule_id's ON DELETE SET NULL, as 0004's downgrade explains.
        op.execute("ALTER TABLE schedules DROP COLUMN request_hash")
        op.execute("ALTER TABLE schedules DROP COLUMN idempotency_key")
    else:
        op.drop_column("schedules", "request_hash")
        op.drop_column("schedules", "idempotency_key")
