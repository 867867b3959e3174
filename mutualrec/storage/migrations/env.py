"""Alembic environment: runs on the engine the service hands over, never one of its own."""

from __future__ import annotations

from alembic import context

from mutualrec.storage.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
