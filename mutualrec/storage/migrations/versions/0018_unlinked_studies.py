"""dicom: studies held unlinked until the hospital names their patient

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 12:00:00

A C-STORE whose patient cannot be resolved is held: its study is stored under a holding patient
key and recorded here with the hospital's PatientID, until LinkPatient (or an upload carrying
both the identity document and that PatientID) moves it to the patient. A table of its own
rather than a nullable study.patient_key: SQLite would have to rebuild the study table, which
the foreign keys to it forbid inside the migration's transaction.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "unlinked_study",
        sa.Column(
            "study_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("local_patient_id", sa.String(length=64), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institution.id"],
            name=op.f("fk_unlinked_study_institution_id_institution"),
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_unlinked_study_study_id_study")
        ),
        sa.PrimaryKeyConstraint("study_id", name=op.f("pk_unlinked_study")),
    )
    with op.batch_alter_table("unlinked_study", schema=None) as batch_op:
        batch_op.create_index(
            "ix_unlinked_study_institution_patient",
            ["institution_id", "local_patient_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("unlinked_study", schema=None) as batch_op:
        batch_op.drop_index("ix_unlinked_study_institution_patient")
    op.drop_table("unlinked_study")
