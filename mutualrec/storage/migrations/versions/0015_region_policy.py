"""recognition: region policy versions; specimen collection time on index rows

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 06:00:00

The region's rules (window anchors, level rules, suspensions) are a versioned file an
administrator loads; a collection-anchored window needs each lab row's collection time (rows
indexed before this revision have none and run from their report time until re-indexed).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "region_policy_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("source_text", sa.Text(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_region_policy_version")),
        sa.UniqueConstraint("version", name=op.f("uq_region_policy_version_version")),
    )
    # A nullable column: SQLite adds it in place.
    with op.batch_alter_table("recognition_result", schema=None) as batch_op:
        batch_op.add_column(sa.Column("collected_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recognition_result", schema=None) as batch_op:
        batch_op.drop_column("collected_at")
    op.drop_table("region_policy_version")
