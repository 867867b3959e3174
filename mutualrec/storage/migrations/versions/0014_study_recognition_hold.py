"""imaging: undated studies and declared items held for review

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 05:40:00

Studies whose instances carry no date are held for the history but never recognized; a study
whose RIS-declared item contradicts its images is held for that item until an administrator
resolves it. Both say why on the study row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Only columns with a default: SQLite adds them in place (no rebuild of a referenced table).
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "date_source", sa.String(length=16), server_default="StudyDate", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column(
                "declared_item_review", sa.String(length=16), server_default="", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column(
                "not_recognized_reason", sa.String(length=512), server_default="", nullable=False
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_column("not_recognized_reason")
        batch_op.drop_column("declared_item_review")
        batch_op.drop_column("date_source")
