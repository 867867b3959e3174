"""statistics tallies: kept on write, compacted, instead of folded when a report first asks

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 06:00:00

The day rollups of 0005 were folded from every check line of a day the first time a report
covered it; over a city's year that first report took more than an hour. Checks and decisions
now append what they add (``stat_delta``) and a compactor folds it into ``stat_tally``. The
tallies of the checks already recorded are built by 0009, once the tallies have their final
shape.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTERS = (
    "checks",
    "items_checked",
    "items_recognizable",
    "accepted",
    "declined",
    "saving_fen",
)


def upgrade() -> None:
    op.create_table(
        "stat_tally",
        sa.Column("group_by", sa.String(length=24), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("group_key", sa.String(length=80), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _COUNTERS),
        sa.PrimaryKeyConstraint(
            "group_by", "day", "group_key", "reason", name=op.f("pk_stat_tally")
        ),
    )
    op.create_table(
        "stat_delta",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("group_by", sa.String(length=24), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("group_key", sa.String(length=80), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _COUNTERS),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stat_delta")),
    )
    op.drop_table("daily_rollup")
    op.drop_table("rollup_day")


def downgrade() -> None:
    op.create_table(
        "rollup_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("materialized_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_rollup_day")),
    )
    op.create_table(
        "daily_rollup",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("group_by", sa.String(length=24), nullable=False),
        sa.Column("group_key", sa.String(length=80), nullable=False),
        sa.Column("checks", sa.BigInteger(), nullable=False),
        sa.Column("items_checked", sa.BigInteger(), nullable=False),
        sa.Column("items_recognizable", sa.BigInteger(), nullable=False),
        sa.Column("accepted", sa.BigInteger(), nullable=False),
        sa.Column("declined", sa.BigInteger(), nullable=False),
        sa.Column("declined_by_reason", sa.Text(), nullable=False),
        sa.Column("saving", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["day"], ["rollup_day.day"], name=op.f("fk_daily_rollup_day_rollup_day")
        ),
        sa.PrimaryKeyConstraint("day", "group_by", "group_key", name=op.f("pk_daily_rollup")),
    )
    op.create_index("ix_daily_rollup_group_by_day", "daily_rollup", ["group_by", "day"])
    # The old rollups were folded lazily: a report after the downgrade folds them again.
    op.drop_table("stat_delta")
    op.drop_table("stat_tally")
