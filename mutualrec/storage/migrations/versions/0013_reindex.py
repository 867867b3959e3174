"""reindex: the groups a lab result was reported in, and re-index checkpoints

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 06:00:00

``mutualrec admin reindex`` re-derives every held lab result's catalog items under a catalog
version. A panel item (a complete blood count) depends on the group the result came in, which
was not kept: ``lab_result_version.result_groups`` keeps it (empty for versions stored before,
whose panel items a re-index leaves as they are). ``reindex_checkpoint`` records how far a
re-index got, so one interrupted resumes where it stopped.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "lab_result_version",
        sa.Column("result_groups", sa.Text(), nullable=False, server_default=""),
    )
    op.create_table(
        "reindex_checkpoint",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("catalog_version", sa.String(32), nullable=False),
        sa.Column("catalog_sha256", sa.String(64), nullable=False),
        sa.Column("last_lab_result_id", sa.BigInteger(), nullable=False),
        sa.Column("results", sa.BigInteger(), nullable=False),
        sa.Column("rows_added", sa.BigInteger(), nullable=False),
        sa.Column("rows_removed", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("reindex_checkpoint")
    op.drop_column("lab_result_version", "result_groups")
