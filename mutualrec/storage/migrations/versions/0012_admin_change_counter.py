"""admin: a change counter servers poll to drop cached reference data and keys

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 05:40:00

A qualification, mapping, price, institution or key revocation reached other servers only when
their 30 s caches aged. Every such change now bumps ``admin_change.version`` in its own
transaction; servers read that one row about once a second.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "admin_change",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_change")),
    )
    op.bulk_insert(table, [{"id": 1, "version": 0}])


def downgrade() -> None:
    op.drop_table("admin_change")
