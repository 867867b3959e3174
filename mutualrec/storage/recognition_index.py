"""The recognition index and the record of checks and decisions.

``recognition_result`` holds one row per (result, catalog item) at the result's current
version, kept up to date by ingest, so the ordering-time check is a single indexed read of one
patient's rows. Checks, their lines and decisions are the record that savings are booked from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, cast

from sqlalchemy import Engine, Table, delete, select, text, tuple_, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from mutualrec.matching.indexed_results import IndexedResult, ResultItems
from mutualrec.statistics.tally import DayDeltas
from mutualrec.storage.models import (
    CheckLine,
    Decision,
    RecognitionCheck,
    RecognitionResult,
    StatDelta,
)
from mutualrec.storage.sql import (
    as_utc,
    column_names,
    insert_ignoring_conflicts,
    key_names,
    postgres_types,
)
from mutualrec.storage.statistics_index import DELTA_COLUMNS, delta_params


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """A check as the record keeps it (the columns of ``recognition_check``)."""

    id: str
    institution_id: int
    patient_key: str
    received_at: dt.datetime
    catalog_version: str
    order_id: str
    department: str
    emergency: bool


@dataclass(frozen=True, slots=True)
class CheckLineRecord:
    """A line of a check as the record keeps it (the columns of ``check_line``)."""

    check_id: str
    line: int
    ordered_code: str
    item_code: str
    verdict: str
    reason: str
    result_ref: str
    result_version: int
    issuer_institution_id: int | None
    # Yuan with fen, as text: every database keeps it exactly.
    estimated_saving: str


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A doctor's decision as the record keeps it (the columns of ``decision``)."""

    check_id: str
    line: int
    accepted: bool
    reason: str
    reason_text: str
    booked_saving: str
    decided_at: dt.datetime


def _columns(record: Any, columns: Sequence[str]) -> dict[str, Any]:
    return {c: getattr(record, c) for c in columns}


# The columns a check reads: IndexedResult's fields, in order (its rows are built positionally).
_RESULT_COLUMNS = tuple(field.name for field in fields(IndexedResult))
_RESULTS_SELECT = select(
    *(cast(Table, RecognitionResult.__table__).c[name] for name in _RESULT_COLUMNS)
)

# The columns an upsert writes (the table's, less its id), the unique key it meets on a re-index,
# and the columns it refreshes there.
_UPSERTED = column_names(RecognitionResult, omit=("id",))
_UPSERT_KEY = ("result_ref", "item_code")
_REFRESHED = column_names(RecognitionResult, omit=("id", *_UPSERT_KEY))


# One statement with one array per column (named after it), whatever the number of rows: a
# bundle of 1,000 lab results refreshes its index rows without a parameter per cell.
_UPSERT_SQL = text(
    f"INSERT INTO recognition_result ({', '.join(_UPSERTED)}) SELECT * FROM unnest("
    + ", ".join(
        f"CAST(:{name} AS {pg_type}[])"
        for name, pg_type in zip(
            _UPSERTED, postgres_types(RecognitionResult, _UPSERTED), strict=True
        )
    )
    + f") ON CONFLICT ({', '.join(_UPSERT_KEY)}) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _REFRESHED)
    + " WHERE excluded.version >= recognition_result.version"
)


def upsert_results(session: Session, results: Sequence[ResultItems]) -> None:
    """Insert or refresh the index rows of ``results``; a row never goes back to an older
    version."""
    if not any(r.details for r in results):
        return
    table = cast(Table, RecognitionResult.__table__)
    statement: Insert
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        rows = [(r, code, detail) for r in results for code, detail in r.details]
        session.execute(
            _UPSERT_SQL,
            {
                "patient_key": [r.patient_key for r, _, _ in rows],
                "item_code": [code for _, code, _ in rows],
                "kind": [r.kind for r, _, _ in rows],
                "result_ref": [r.result_ref for r, _, _ in rows],
                "version": [r.version for r, _, _ in rows],
                "status": [r.status for r, _, _ in rows],
                "report_time": [r.report_time for r, _, _ in rows],
                "institution_id": [r.institution_id for r, _, _ in rows],
                "detail": [detail for _, _, detail in rows],
                "collected_at": [r.collected_at for r, _, _ in rows],
            },
        )
        return
    if dialect == "sqlite":
        lite = sqlite.insert(table)
        statement = lite.on_conflict_do_update(
            index_elements=list(_UPSERT_KEY),
            set_={c: lite.excluded[c] for c in _REFRESHED},
            where=lite.excluded.version >= table.c.version,
        )
    else:
        raise NotImplementedError(f"no upsert for {dialect}")
    session.execute(
        statement,
        [
            {
                "patient_key": r.patient_key,
                "item_code": code,
                "kind": r.kind,
                "result_ref": r.result_ref,
                "version": r.version,
                "status": r.status,
                "report_time": r.report_time,
                "institution_id": r.institution_id,
                "detail": detail,
                "collected_at": r.collected_at,
            }
            for r in results
            for code, detail in r.details
        ],
    )


def drop_stale_items(session: Session, current: dict[str, Iterable[str]]) -> None:
    """Remove rows of results (by ref) whose item is no longer among their current items."""
    for result_ref, item_codes in current.items():
        session.execute(
            delete(RecognitionResult).where(
                RecognitionResult.result_ref == result_ref,
                RecognitionResult.item_code.not_in(list(item_codes)),
            )
        )


def set_detail(session: Session, result_ref: str, detail: str) -> None:
    """Give every index row of a result (by ref) ``detail``: its items and status unchanged."""
    session.execute(
        update(RecognitionResult)
        .where(RecognitionResult.result_ref == result_ref, RecognitionResult.detail != detail)
        .values(detail=detail)
    )


def results_for(
    session: Session, patient_key: str, item_codes: Iterable[str]
) -> list[IndexedResult]:
    """The patient's indexed results of the given items: the hot read of every check."""
    codes = sorted(set(item_codes))
    if not codes:
        return []
    rows = session.execute(
        _RESULTS_SELECT.where(
            RecognitionResult.patient_key == patient_key,
            RecognitionResult.item_code.in_(codes),
        )
    )
    return [
        IndexedResult(
            item,
            kind,
            ref,
            version,
            status,
            as_utc(time),
            institution,
            detail,
            None if collected is None else as_utc(collected),
        )
        for item, kind, ref, version, status, time, institution, detail, collected in rows
    ]


def record_checks(
    session: Session,
    checks: Sequence[CheckRecord],
    lines: Sequence[CheckLineRecord],
    *,
    durable: bool = True,
) -> None:
    """Write checks and their lines (columns of RecognitionCheck / CheckLine).

    ``durable=False`` commits without waiting for the WAL flush (PostgreSQL's asynchronous
    commit): a check sits inside a doctor's click and one fsync costs more than the whole
    check. A database crash may lose the last fraction of a second of checks (never
    decisions: they commit durably); a decision on a lost check is NOT_FOUND and the HIS asks
    again.
    """
    if not durable and session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))
    if checks:
        session.execute(
            RecognitionCheck.__table__.insert(),  # type: ignore[attr-defined]
            [_columns(check, _CHECK_COLUMNS) for check in checks],
        )
    if lines:
        session.execute(
            CheckLine.__table__.insert(),  # type: ignore[attr-defined]
            [_columns(line, _LINE_COLUMNS) for line in lines],
        )


# The check's hot path on PostgreSQL, in the driver's terms: two round trips per check (read;
# write and commit), prepared statements, no ORM. Profiling showed SQLAlchemy's statement
# handling costing more CPU than the rules themselves at a thousand checks a second.
RESULTS_SQL = (
    f"SELECT {', '.join(_RESULT_COLUMNS)} FROM recognition_result"
    " WHERE patient_key = %s AND item_code = ANY(%s)"
)
"""The check's read (patient key, list of item codes), for the driver's prepared statements."""
_CHECK_COLUMNS = column_names(RecognitionCheck)
_LINE_COLUMNS = column_names(CheckLine)


def _unnest(model: type[Any], names: Sequence[str]) -> str:
    """``unnest(%s::type[], ...)``: one array parameter per column of ``model``."""
    arrays = ", ".join(f"%s::{pg_type}[]" for pg_type in postgres_types(model, names))
    return f"unnest({arrays})"


# The check, its lines and its statistics deltas in one statement: one round trip, atomic
# without a transaction.
RECORD_CHECK_SQL = (
    "WITH recorded AS (INSERT INTO recognition_check ("
    + ", ".join(_CHECK_COLUMNS)
    + ") VALUES ("
    + ", ".join(["%s"] * len(_CHECK_COLUMNS))
    + ") RETURNING id), lines AS (INSERT INTO check_line ("
    + ", ".join(_LINE_COLUMNS)
    + ") SELECT * FROM "
    + _unnest(CheckLine, _LINE_COLUMNS)
    + ") INSERT INTO stat_delta ("
    + ", ".join(DELTA_COLUMNS)
    + ") SELECT * FROM "
    + _unnest(StatDelta, DELTA_COLUMNS)
)
"""Records a check; its parameters are :func:`record_check_parameters`'."""


@contextmanager
def _driver_cursor(engine: Engine) -> Iterator[Any]:
    """A psycopg cursor on a pooled connection of ``engine``, for the hot paths' prepared
    statements; the connection goes back to the pool afterwards."""
    pooled = engine.raw_connection()
    try:
        connection = pooled.driver_connection
        assert connection is not None
        with connection.cursor() as cursor:
            yield cursor
    finally:
        pooled.close()


def _delta_arrays(day_deltas: DayDeltas) -> list[Any]:
    """``stat_delta`` rows as one parameter per column, for the unnest in the check's and the
    decision's statements.

    The counters go as array literals ({1,0,...}): psycopg inspects every element of a list to
    pick its dumper, and for the 17 counter columns that cost 60 to 170 us per statement in a
    micro-benchmark. Counters are integers, so the literal needs no quoting.
    """
    deltas = delta_params(day_deltas)
    key = [[delta[c] for delta in deltas] for c in DELTA_COLUMNS[:3]]
    counters = [
        "{" + ",".join(str(int(delta[c])) for delta in deltas) + "}" for c in DELTA_COLUMNS[3:]
    ]
    return key + counters


def record_check_parameters(
    check: CheckRecord, lines: Sequence[CheckLineRecord], deltas: DayDeltas
) -> list[Any]:
    """The parameters of :data:`RECORD_CHECK_SQL` for a check's record, its lines' records and
    its ``stat_delta`` rows."""
    return (
        [getattr(check, c) for c in _CHECK_COLUMNS]
        + [[getattr(line, c) for line in lines] for c in _LINE_COLUMNS]
        + _delta_arrays(deltas)
    )


CheckRows = tuple[CheckRecord, list[CheckLineRecord], DayDeltas]
"""A check's row, its lines' rows and its ``stat_delta`` rows."""


def check_round_trip(
    engine: Engine,
    patient_key: str,
    item_codes: Iterable[str],
    answer: Callable[[list[IndexedResult]], CheckRows],
) -> None:
    """Read a patient's indexed results, let ``answer`` decide, record the check it returns
    with its lines and what it adds to the statistics.

    On PostgreSQL ``engine`` is a ``fast_records`` engine (autocommit, asynchronous commit, see
    :func:`mutualrec.storage.db.make_engine`): one statement reads, one statement records the
    check with its lines, straight through the driver with prepared statements. Other
    databases go through a session.
    """
    codes = sorted(set(item_codes))
    if engine.dialect.name != "postgresql":
        with Session(engine) as session, session.begin():
            check, lines, deltas = answer(results_for(session, patient_key, codes))
            record_checks(session, [check], lines, durable=False)
            if deltas.rows:
                session.execute(StatDelta.__table__.insert(), delta_params(deltas))  # type: ignore[attr-defined]
        return
    with _driver_cursor(engine) as cursor:
        rows: list[IndexedResult] = []
        if codes:
            cursor.execute(RESULTS_SQL, (patient_key, codes), prepare=True)
            rows = [IndexedResult(*row) for row in cursor.fetchall()]
        check, lines, deltas = answer(rows)
        cursor.execute(
            RECORD_CHECK_SQL, record_check_parameters(check, lines, deltas), prepare=True
        )


@dataclass(frozen=True, slots=True)
class DecisionOnRecord:
    """A decision as recorded."""

    accepted: bool
    reason: str
    reason_text: str
    booked_saving: str
    decided_at: dt.datetime


@dataclass(frozen=True, slots=True)
class LineOnRecord:
    """A check line as recorded, with who asked and the decision taken on it, if any."""

    line: int
    institution_id: int
    item_code: str
    verdict: str
    estimated_saving: str
    received_at: dt.datetime
    issuer_institution_id: int | None
    decision: DecisionOnRecord | None


_DECISION_COLUMNS = column_names(Decision)
# What a decision says, less the line it is on.
_DECIDED = column_names(Decision, omit=key_names(Decision))

# A decision's path on PostgreSQL goes through the driver with prepared statements, like the
# check's: profiling showed SQLAlchemy's statement handling and six round trips taking most of
# a decision's 12 ms. The line is read with the decision already on it (lines never change), and
# one statement records the decision with its statistics deltas.
_LINE_SELECT = (
    "SELECT l.line, c.institution_id, l.item_code, l.verdict, l.estimated_saving, c.received_at,"
    " l.issuer_institution_id, "
    + ", ".join(f"d.{c}" for c in _DECIDED)
    + " FROM recognition_check c JOIN check_line l ON l.check_id = c.id"
    " LEFT JOIN decision d ON d.check_id = l.check_id AND d.line = l.line"
    " WHERE c.id = %(check_id)s"
)
_LINE_BY_NUMBER_SQL = _LINE_SELECT + " AND l.line = %(line)s"
_LINE_BY_ITEM_SQL = _LINE_SELECT + " AND l.item_code = %(item_code)s ORDER BY l.line LIMIT 1"

# The connection commits asynchronously (fast_records); a decision books a saving, so this one
# statement switches its own transaction back to waiting for the WAL flush. set_config(..., true)
# lasts until the statement's implicit transaction ends, after its commit record is flushed.
# The deltas go in only when the decision did (the first decision stands), in the same commit.
_RECORD_DECISION_SQL = (
    "WITH recorded AS (INSERT INTO decision ("
    + ", ".join(_DECISION_COLUMNS)
    + ") VALUES ("
    + ", ".join(["%s"] * len(_DECISION_COLUMNS))
    + ") ON CONFLICT DO NOTHING RETURNING "
    + ", ".join(_DECIDED)
    + "), durable AS (SELECT set_config('synchronous_commit', 'on', true) AS setting),"
    " deltas AS (INSERT INTO stat_delta ("
    + ", ".join(DELTA_COLUMNS)
    + ") SELECT * FROM "
    + _unnest(StatDelta, DELTA_COLUMNS)
    + " WHERE EXISTS (SELECT 1 FROM recorded))"
    " SELECT recorded.*, (SELECT setting FROM durable) FROM recorded"
)


def _decided(row: Sequence[Any]) -> DecisionOnRecord | None:
    accepted, reason, text_, saving, decided_at = row
    if accepted is None:
        return None
    return DecisionOnRecord(accepted, reason, text_, saving, as_utc(decided_at))


def _line(row: Sequence[Any]) -> LineOnRecord:
    line, institution_id, item_code, verdict, saving, received_at, issuer_id = row[:7]
    return LineOnRecord(
        int(line),
        institution_id,
        item_code,
        verdict,
        saving,
        as_utc(received_at),
        issuer_id,
        _decided(row[7:]),
    )


def line_on_record(engine: Engine, check_id: str, line: int | str) -> LineOnRecord | None:
    """The recorded line of a check, by number or by its item's code (the first such line),
    with its decision; None when there is no such check or line."""
    by_item = isinstance(line, str)
    if engine.dialect.name == "postgresql":
        with _driver_cursor(engine) as cursor:
            cursor.execute(
                _LINE_BY_ITEM_SQL if by_item else _LINE_BY_NUMBER_SQL,
                {"check_id": check_id, "item_code": line, "line": line},
                prepare=True,
            )
            found = cursor.fetchone()
        return None if found is None else _line(found)
    statement = (
        select(
            CheckLine.line,
            RecognitionCheck.institution_id,
            CheckLine.item_code,
            CheckLine.verdict,
            CheckLine.estimated_saving,
            RecognitionCheck.received_at,
            CheckLine.issuer_institution_id,
            *(getattr(Decision, c) for c in _DECIDED),
        )
        .join(CheckLine, CheckLine.check_id == RecognitionCheck.id)
        .outerjoin(
            Decision, (Decision.check_id == CheckLine.check_id) & (Decision.line == CheckLine.line)
        )
        .where(RecognitionCheck.id == check_id)
    )
    if by_item:
        statement = statement.where(CheckLine.item_code == line).order_by(CheckLine.line).limit(1)
    else:
        statement = statement.where(CheckLine.line == line)
    with engine.connect() as connection:
        row = connection.execute(statement).first()
    return None if row is None else _line(row)


def record_decision(
    engine: Engine, row: DecisionRecord, deltas: DayDeltas
) -> tuple[DecisionOnRecord, bool]:
    """Record a decision with the ``stat_delta`` rows it adds, unless the
    line has one; the decision on record, and whether this call recorded it.

    The primary key (check, line) decides a race: the first decision stands, and only its
    deltas are kept. The commit is durable.
    """
    if engine.dialect.name != "postgresql":
        with Session(engine) as session, session.begin():
            new = insert_ignoring_conflicts(session, Decision, _columns(row, _DECISION_COLUMNS))
            if new and deltas.rows:
                session.execute(StatDelta.__table__.insert(), delta_params(deltas))  # type: ignore[attr-defined]
            found = session.execute(
                select(*(getattr(Decision, c) for c in _DECIDED)).where(
                    tuple_(Decision.check_id, Decision.line) == (row.check_id, row.line)
                )
            ).one()
        recorded = _decided(found)
        assert recorded is not None
        return recorded, new
    with _driver_cursor(engine) as cursor:
        cursor.execute(
            _RECORD_DECISION_SQL,
            [getattr(row, c) for c in _DECISION_COLUMNS] + _delta_arrays(deltas),
            prepare=True,
        )
        inserted = cursor.fetchone()
    if inserted is not None:
        recorded = _decided(inserted[: len(_DECIDED)])
        assert recorded is not None
        return recorded, True
    # Another call decided the line between our read and our write.
    on_record = line_on_record(engine, row.check_id, row.line)
    assert on_record is not None
    assert on_record.decision is not None
    return on_record.decision, False
