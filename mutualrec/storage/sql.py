"""Dialect-portable SQL helpers; the column lists of raw statements, read off the models."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any, cast

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Integer, String, Table, literal_column
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


def column_names(model: type[DeclarativeBase], *, omit: Collection[str] = ()) -> tuple[str, ...]:
    """The names of ``model``'s columns in the table's order, less ``omit``.

    Raw statements (COPY, unnest inserts, the driver-level hot paths) list their columns from
    this once, at import, so a column added to the model cannot be left out of one of them.
    """
    table = cast(Table, model.__table__)
    unknown = set(omit) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column {', '.join(sorted(unknown))}")
    return tuple(column.name for column in table.columns if column.name not in omit)


def key_names(model: type[DeclarativeBase]) -> tuple[str, ...]:
    """The names of ``model``'s primary key columns, in the table's order."""
    return tuple(column.name for column in cast(Table, model.__table__).primary_key.columns)


def postgres_types(model: type[DeclarativeBase], names: Sequence[str]) -> tuple[str, ...]:
    """The PostgreSQL type names of ``model``'s columns ``names``: for binary COPY's
    ``set_types`` and for the ``::type[]`` casts of unnest inserts.

    Strings of any length are ``text``: a cast to ``varchar(n)`` would cut a longer value
    short where the column itself refuses it.
    """
    table = cast(Table, model.__table__)
    return tuple(_postgres_type(table.c[name].type) for name in names)


def _postgres_type(sql_type: Any) -> str:
    # Subclasses before their bases: BigInteger is an Integer, Text a String.
    if isinstance(sql_type, BigInteger):
        return "int8"
    if isinstance(sql_type, Integer):
        return "int4"
    if isinstance(sql_type, Boolean):
        return "bool"
    if isinstance(sql_type, DateTime):
        return "timestamptz" if sql_type.timezone else "timestamp"
    if isinstance(sql_type, Date):
        return "date"
    if isinstance(sql_type, String):
        return "text"
    raise NotImplementedError(f"no PostgreSQL type name for {sql_type!r}")
