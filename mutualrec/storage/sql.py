"""Dialect-portable SQL helpers."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import Table, literal_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.sql.dml import Insert


def as_utc(moment: dt.datetime) -> dt.datetime:
    """A datetime read back from the index, aware: SQLite returns the stored UTC value naive."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def insert_ignoring_conflicts(
    session: Session, model: type[DeclarativeBase], values: dict[str, Any]
) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when this call inserted the row.

    The database, not a prior SELECT, decides who wins a race on a unique constraint.
    """
    table = cast(Table, model.__table__)
    dialect = session.get_bind().dialect.name
    statement: Insert
    if dialect == "postgresql":
        statement = postgresql.insert(table).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(table).values(**values).on_conflict_do_nothing()
    else:
        raise NotImplementedError(f"no conflict-ignoring insert for {dialect}")
    # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT (psycopg reports -1).
    return session.execute(statement.returning(literal_column("1"))).first() is not None


def insert_many_ignoring_conflicts(
    session: Session, model: type[DeclarativeBase], rows: list[dict[str, Any]], returning: list[str]
) -> list[tuple[Any, ...]]:
    """Multi-row INSERT ... ON CONFLICT DO NOTHING; the ``returning`` columns of rows inserted.

    The statement is the same for every call (rows go as executemany parameters), so SQLAlchemy
    compiles it once and batches the rows into multi-row VALUES itself.
    """
    if not rows:
        return []
    table = cast(Table, model.__table__)
    dialect = session.get_bind().dialect.name
    statement: Insert
    if dialect == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing()
    else:
        raise NotImplementedError(f"no conflict-ignoring insert for {dialect}")
    columns = [table.c[name] for name in returning]
    result = session.execute(statement.returning(*columns), rows)
    return [tuple(row) for row in result]
