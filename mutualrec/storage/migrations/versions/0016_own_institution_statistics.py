"""statistics: the asking institution's own results, counted apart

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 06:10:00

Reuse of a hospital's own earlier result is real saving, but regulators report it apart from
recognition between institutions: every tally keeps the own-institution part of its
recognizable, accepted and saved counts. Tallies made before this revision hold 0 there until
``mutualrec admin rebuild-statistics`` recounts them from the record.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("stat_tally", "stat_tally_month", "stat_delta")
_COLUMNS = ("items_recognizable_own", "accepted_own", "saving_fen_own")


def upgrade() -> None:
    # Columns with a default: SQLite adds them in place.
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in _COLUMNS:
                batch_op.add_column(
                    sa.Column(column, sa.BigInteger(), server_default="0", nullable=False)
                )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in reversed(_COLUMNS):
                batch_op.drop_column(column)
