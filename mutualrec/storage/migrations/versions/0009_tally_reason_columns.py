"""statistics tallies: decline reasons as columns, one row per grouping, day and group

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 06:50:00

With a row per decline reason, a year of tallies by district was 150,000 rows to group, and
the report took 350 to 900 ms; with a column per reason it is one row per day and district.
The rows of 0008 are pivoted in SQL, tallies and unfolded deltas alike. An index whose checks
were never tallied (upgraded from 0007) is tallied here from the record.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here: the reasons as of this revision (DeclineReason and UNSPECIFIED).
_REASONS = (
    "CONDITION_CHANGED",
    "FAST_CHANGING_VALUE",
    "BEFORE_SURGERY_OR_TRANSFUSION",
    "EMERGENCY",
    "FORENSIC_ASSESSMENT",
    "PATIENT_REQUEST",
    "ISSUER_FAILED_QUALITY_ASSESSMENT",
    "IMAGE_QUALITY",
    "BODY_PART_MISMATCH",
    "OTHER",
    "UNSPECIFIED",
)
_MAIN = ("checks", "items_checked", "items_recognizable", "accepted", "saving_fen", "declined")
_REASON_COLUMNS = tuple(f"declined_{reason.lower()}" for reason in _REASONS)


def _counters() -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in _MAIN + _REASON_COLUMNS]


def _key() -> list[sa.Column[object]]:
    return [
        sa.Column("group_by", sa.String(length=24), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("group_key", sa.String(length=80), nullable=False),
    ]


def _pivoted(source: str, key: str) -> str:
    """SELECT of ``source``'s rows (one per reason) as one row per ``key``."""
    known = ", ".join(f"'{reason}'" for reason in _REASONS[:-1])
    reasons = [
        f"sum(CASE WHEN reason = '{reason}' THEN declined ELSE 0 END)" for reason in _REASONS[:-1]
    ] + [f"sum(CASE WHEN reason NOT IN ({known}) THEN declined ELSE 0 END)"]
    main = [f"sum({name})" for name in _MAIN]
    return f"SELECT {key}, {', '.join(main + reasons)} FROM {source} GROUP BY {key}"


def upgrade() -> None:
    columns = ", ".join(("group_by", "day", "group_key", *_MAIN, *_REASON_COLUMNS))
    op.rename_table("stat_tally", "stat_tally_0008")
    op.rename_table("stat_delta", "stat_delta_0008")
    if op.get_bind().dialect.name == "postgresql":
        # Constraint names are the index names PostgreSQL keeps: free them for the new tables.
        op.execute(
            "ALTER TABLE stat_tally_0008 RENAME CONSTRAINT pk_stat_tally TO pk_stat_tally_0008"
        )
        op.execute(
            "ALTER TABLE stat_delta_0008 RENAME CONSTRAINT pk_stat_delta TO pk_stat_delta_0008"
        )
    op.create_table(
        "stat_tally",
        *_key(),
        *_counters(),
        sa.PrimaryKeyConstraint("group_by", "day", "group_key", name=op.f("pk_stat_tally")),
    )
    op.create_table(
        "stat_delta",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        *_key(),
        *_counters(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stat_delta")),
    )
    op.execute(
        f"INSERT INTO stat_tally ({columns}) "
        + _pivoted("stat_tally_0008", "group_by, day, group_key")
    )
    # Unfolded deltas keep their order: pivoted one by one (each row had a single reason).
    op.execute(
        f"INSERT INTO stat_delta (id, {columns}) "
        + _pivoted("stat_delta_0008", "id, group_by, day, group_key")
        + " ORDER BY id"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "SELECT setval('stat_delta_id_seq', (SELECT coalesce(max(id), 0) + 1 FROM stat_delta),"
            " false)"
        )
    op.drop_table("stat_tally_0008")
    op.drop_table("stat_delta_0008")
    bind = op.get_bind()
    tallied = bind.execute(sa.text("SELECT 1 FROM stat_tally LIMIT 1")).first()
    recorded = bind.execute(sa.text("SELECT 1 FROM recognition_check LIMIT 1")).first()
    if recorded is not None and tallied is None:
        # The record is the source: tally every day it holds with the service's own rules.
        # This imports the application, not a frozen copy: a later change to the tallies'
        # shape must keep this working or bring a migration of its own.
        from mutualrec.storage.statistics_index import rebuild

        with Session(bind=bind) as session:
            rebuild(session, months=False)


def downgrade() -> None:
    raise NotImplementedError(
        "tallies by reason column cannot go back to rows per reason in place: downgrade to 0007 "
        "is not supported from here; rebuild with 'mutualrec admin rebuild-statistics' at 0008"
    )
