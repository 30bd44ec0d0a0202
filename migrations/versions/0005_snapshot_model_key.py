"""snapshot model key

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

A streaming state belongs to one model's weights: `model_key` (name, version and run id) says
which. States were matched by the version string alone, so a state made by `meters-a`
version 1 was read as `meters-b` version 1's (a wrong forecast, a false 409, or a shape error
when their sizes differed). Stored rows get NULL: read as made by the model of their version,
as they always were (rebuilt, a series longer than the stored tail would lose the rest).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("series_snapshots", sa.Column("model_key", sa.String(400), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE series_snapshots DROP COLUMN model_key")  # in place (3.35+)
    else:
        op.drop_column("series_snapshots", "model_key")
