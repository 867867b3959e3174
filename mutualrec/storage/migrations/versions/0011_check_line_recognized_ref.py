"""recognition: index the check lines that recognized a result, by the result they cite

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 05:30:00

A hospital opens another hospital's study only through a recent check of its own that recognized
that study. The partial index finds such lines by the study they cite; the lines that recognize
nothing (most of them) get no entry, so a check's insert pays nothing for them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RECOGNIZED = sa.text("verdict = 'RECOGNIZABLE'")


def upgrade() -> None:
    op.create_index(
        "ix_check_line_recognized_ref",
        "check_line",
        ["result_ref"],
        unique=False,
        postgresql_where=_RECOGNIZED,
        sqlite_where=_RECOGNIZED,
    )


def downgrade() -> None:
    op.drop_index("ix_check_line_recognized_ref", table_name="check_line")
