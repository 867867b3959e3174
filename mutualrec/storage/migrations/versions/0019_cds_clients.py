"""cds: the EHRs that call the CDS Hooks services, their keys, and the JWT ids they used

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 12:00:00

An administrator registers an EHR's issuer and public keys for an institution with
``mutualrec admin add-cds-client``; every JWT id is kept until its token expires, so a replay
is refused.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cds_client",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("jwks", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institution.id"],
            name=op.f("fk_cds_client_institution_id_institution"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cds_client")),
        sa.UniqueConstraint("issuer", name=op.f("uq_cds_client_issuer")),
    )
    with op.batch_alter_table("cds_client", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cds_client_institution_id"), ["institution_id"], unique=False
        )
    op.create_table(
        "cds_token_use",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cds_token_use")),
        sa.UniqueConstraint("issuer", "jti", name=op.f("uq_cds_token_use_issuer_jti")),
    )
    with op.batch_alter_table("cds_token_use", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cds_token_use_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("cds_token_use", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cds_token_use_expires_at"))
    op.drop_table("cds_token_use")
    with op.batch_alter_table("cds_client", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cds_client_institution_id"))
    op.drop_table("cds_client")
