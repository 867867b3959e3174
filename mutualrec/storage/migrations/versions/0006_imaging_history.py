"""imaging history: study sort key and counts, share links

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 09:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The counts the ingest path keeps from now on, computed once for studies already held.
_BACKFILL_COUNTS = """
UPDATE study SET
  series_count = (SELECT count(*) FROM series WHERE series.study_id = study.id),
  instance_count = (
    SELECT count(DISTINCT i.sop_instance_uid) FROM instance i
    JOIN series s ON s.id = i.series_id WHERE s.study_id = study.id),
  size_bytes = coalesce((
    SELECT sum(i.size_bytes) FROM instance i
    JOIN series s ON s.id = i.series_id
    WHERE s.study_id = study.id AND NOT EXISTS (
      SELECT 1 FROM instance j
      WHERE j.sop_instance_uid = i.sop_instance_uid AND j.version > i.version)), 0)
"""


def upgrade() -> None:
    # Only operations SQLite does in place (add a column with a default, create or drop an
    # index): rebuilding the study table there would trip over the foreign keys pointing at it.
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "started_at",
                sa.DateTime(timezone=False),
                server_default="1970-01-01 00:00:00",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("series_count", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("instance_count", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("size_bytes", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.drop_index("ix_study_patient_date")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE study SET started_at = study_date + coalesce(study_time, time '00:00')")
    else:
        # SQLAlchemy keeps SQLite dates, times and datetimes as ISO text.
        op.execute(
            "UPDATE study SET started_at = "
            "study_date || ' ' || coalesce(study_time, '00:00:00.000000')"
        )
    op.execute(_BACKFILL_COUNTS)
    if op.get_bind().dialect.name == "postgresql":
        # Ingest always sets it; the default only filled the column for the backfill.
        op.alter_column("study", "started_at", server_default=None)
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.create_index(
            "ix_study_patient_started", ["patient_key", "started_at", "id"], unique=False
        )

    op.create_table(
        "share_link",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("study_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_share_link_study_id_study")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_share_link")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_share_link_token_sha256")),
    )
    with op.batch_alter_table("share_link", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_share_link_patient_key"), ["patient_key"], unique=False
        )
    op.create_table(
        "share_opening",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("link_id", sa.String(length=32), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rpc", sa.String(length=32), nullable=False),
        sa.Column("peer", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["link_id"], ["share_link.id"], name=op.f("fk_share_opening_link_id_share_link")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_share_opening")),
    )
    with op.batch_alter_table("share_opening", schema=None) as batch_op:
        batch_op.create_index("ix_share_opening_link_time", ["link_id", "opened_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("share_opening", schema=None) as batch_op:
        batch_op.drop_index("ix_share_opening_link_time")
    op.drop_table("share_opening")
    with op.batch_alter_table("share_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_share_link_patient_key"))
    op.drop_table("share_link")
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_index("ix_study_patient_started")
        batch_op.create_index("ix_study_patient_date", ["patient_key", "study_date"], unique=False)
        batch_op.drop_column("size_bytes")
        batch_op.drop_column("instance_count")
        batch_op.drop_column("series_count")
        batch_op.drop_column("started_at")
