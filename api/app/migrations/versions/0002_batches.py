"""Micro-batching: the batch (one execution) a job was sent in, and how many ran it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:  # batch mode: SQLite cannot ALTER much
        batch.add_column(sa.Column("batch_id", sa.String(36)))
        batch.add_column(sa.Column("runs", sa.Integer(), nullable=False, server_default="0"))
        batch.create_index("ix_jobs_batch_id", ["batch_id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_batch_id")
        batch.drop_column("runs")
        batch.drop_column("batch_id")
