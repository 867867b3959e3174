"""dicom: the calling AE titles of hospital PACS, each naming its institution

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 11:40:00

The DICOM C-STORE door identifies a caller by its calling AE title (and, when registered, its
address); an administrator registers them with ``mutualrec admin add-dicom-peer``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dicom_peer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institution.id"],
            name=op.f("fk_dicom_peer_institution_id_institution"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_peer")),
        sa.UniqueConstraint("ae_title", name=op.f("uq_dicom_peer_ae_title")),
    )
    with op.batch_alter_table("dicom_peer", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dicom_peer_institution_id"), ["institution_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("dicom_peer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dicom_peer_institution_id"))
    op.drop_table("dicom_peer")
