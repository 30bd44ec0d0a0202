"""job idempotency key

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

POST /jobs's `Idempotency-Key` header (jobs.models.Job.idempotency_key) and the hash of the
spec it was first sent with. A unique index rather than a constraint: SQLite cannot add a
constraint to an existing table, and both backends let any number of NULLs share it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("idempotency_key", sa.String(length=255), nullable=True))
    op.add_column("jobs", sa.Column("request_hash", sa.String(length=64), nullable=True))
    op.create_index("uq_jobs_idempotency_key", "jobs", ["idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_jobs_idempotency_key", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:  # SQLite drops columns by copying the table
        batch.drop_column("request_hash")
        batch.drop_column("idempotency_key")
