"""The recognition index and the record of checks and decisions.

``recognition_result`` holds one row per (result, catalog item) at the result's current
version, kept up to date by ingest, so the ordering-time check is a single indexed read of one
patient's rows. Checks, their lines and decisions are the record that savings are booked from.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, cast

from sqlalchemy import Engine, Table, delete, select, text, tuple_, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from mutualrec.matching.indexed_results import IndexedResult, ResultItems
from mutualrec.statistics.tally import DayDeltas
from mutualrec.storage.driver_cursors import HeldConnection, lent_cursor
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


def _indexed(
    item: str,
    kind: str,
    ref: str,
    version: int,
    status: str,
    time: dt.datetime,
    institution: int,
    detail: str,
    collected: dt.datetime | None,
) -> IndexedResult:
    """An index row (the columns of ``_RESULTS_SELECT``, in order) as the rules read it: times
    in UTC whatever the database's driver gave back (SQLite's are naive)."""
    return IndexedResult(
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
    """The patient's indexed results of the given items: one check's read on its own (checks
    read in batches, :func:`results_of_checks`; bench/check_bench.py explains this one too)."""
    codes = sorted(set(item_codes))
    if not codes:
        return []
    rows = session.execute(
        _RESULTS_SELECT.where(
            RecognitionResult.patient_key == patient_key,
            RecognitionResult.item_code.in_(codes),
        )
    )
    return [_indexed(*row) for row in rows]


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


# One check's two statements on PostgreSQL, in the driver's terms (read; write and commit), as
# checks ran call by call before they were batched (:func:`results_of_checks`,
# :func:`record_checks_of_batch`): the floor server of bench/check_bench.py runs them, so the
# per-call floor stays measurable beside the batched server.
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
def _driver_cursor(engine: Engine, held: HeldConnection | None) -> Iterator[Any]:
    """A psycopg cursor for the hot paths' prepared statements: on ``held``, the connection
    its worker thread keeps, else on a connection ``engine``'s pool lends."""
    with held.cursor() if held is not None else lent_cursor(engine) as cursor:
        yield cursor


def _delta_arrays(day_deltas: DayDeltas) -> list[Any]:
    """``stat_delta`` rows as one parameter per column, for the unnest in the check's and the
    decision's statements (see :func:`_delta_param_arrays`)."""
    return _delta_param_arrays(delta_params(day_deltas))


def _delta_param_arrays(deltas: Sequence[dict[str, Any]]) -> list[Any]:
    """``stat_delta`` rows (:func:`delta_params`') as one parameter per column.

    The counters go as array literals ({1,0,...}): psycopg inspects every element of a list to
    pick its dumper, and for the 17 counter columns that cost 60 to 170 us per statement in a
    micro-benchmark. Counters are integers, so the literal needs no quoting.
    """
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


@dataclass(frozen=True, slots=True)
class WantedResults:
    """What one check reads: a patient's indexed results of some items."""

    patient_key: str
    item_codes: Sequence[str]


# The read of a batch of checks: one row per (check, patient, item) wanted, joined to the index
# on its exact (patient_key, item_code) key. A plain ``patient_key = ANY(...) AND item_code =
# ANY(...)`` would make PostgreSQL's B-tree (before 17) probe every key with every code of the
# batch; the pairs probe only what some check asked for, one descent each as a lone check does.
_BATCH_RESULTS_SQL = (
    "SELECT w.n, "
    + ", ".join(f"r.{c}" for c in _RESULT_COLUMNS)
    + " FROM unnest(%s::int4[], %s::text[], %s::text[]) AS w(n, patient_key, item_code)"
    " JOIN recognition_result r"
    " ON r.patient_key = w.patient_key AND r.item_code = w.item_code"
)


def results_of_checks(
    engine: Engine, wanted: Sequence[WantedResults], held: HeldConnection | None = None
) -> list[list[IndexedResult]]:
    """Each check's indexed results (one list per ``wanted``, in order), in one statement: the
    shared read of a batch of checks (on PostgreSQL through ``held`` when given)."""
    found: list[list[IndexedResult]] = [[] for _ in wanted]
    pairs = [
        (n, w.patient_key, code) for n, w in enumerate(wanted) for code in sorted(set(w.item_codes))
    ]
    if not pairs:
        return found
    if engine.dialect.name == "postgresql":
        with _driver_cursor(engine, held) as cursor:
            cursor.execute(
                _BATCH_RESULTS_SQL,
                ([n for n, _, _ in pairs], [k for _, k, _ in pairs], [c for _, _, c in pairs]),
                prepare=True,
            )
            for n, *row in cursor.fetchall():
                found[n].append(IndexedResult(*row))
        return found
    # SQLite: one statement over every key and code of the batch, each row then given to the
    # checks that asked for its (patient, item).
    asking: dict[tuple[str, str], list[int]] = {}
    for n, key, code in pairs:
        asking.setdefault((key, code), []).append(n)
    table = cast(Table, RecognitionResult.__table__)
    statement = select(table.c.patient_key, *_RESULTS_SELECT.selected_columns).where(
        table.c.patient_key.in_(sorted({k for _, k, _ in pairs})),
        table.c.item_code.in_(sorted({c for _, _, c in pairs})),
    )
    with engine.connect() as connection:
        rows = connection.execute(statement).all()
    for key, *row in rows:
        for n in asking.get((key, row[0]), ()):
            found[n].append(_indexed(*row))
    return found


# Checks, their lines and their statistics deltas, of a whole batch, in one statement: one
# round trip, atomic without a transaction (all recorded, or none). Checks and lines go as one
# JSON document each, typed by their table's row type: json.dumps writes a batch's hundreds of
# values in C, where psycopg's dumping of one list per column, element by element, took a
# tenth of the batch worker's time in the profile.
_RECORD_CHECKS_SQL = (
    "WITH recorded AS (INSERT INTO recognition_check ("
    + ", ".join(_CHECK_COLUMNS)
    + ") SELECT "
    + ", ".join(_CHECK_COLUMNS)
    + " FROM json_populate_recordset(NULL::recognition_check, %s::json)"
    + " RETURNING id), lines AS (INSERT INTO check_line ("
    + ", ".join(_LINE_COLUMNS)
    + ") SELECT "
    + ", ".join(_LINE_COLUMNS)
    + " FROM json_populate_recordset(NULL::check_line, %s::json)"
    + ") INSERT INTO stat_delta ("
    + ", ".join(DELTA_COLUMNS)
    + ") SELECT * FROM "
    + _unnest(StatDelta, DELTA_COLUMNS)
)


def _json_time(value: object) -> str:
    """A check's time in its JSON row (ISO 8601 with its offset, as timestamptz reads it)."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"no JSON form for {type(value).__name__}")


def record_checks_of_batch(
    engine: Engine,
    checks: Sequence[CheckRecord],
    lines: Sequence[CheckLineRecord],
    day_deltas: Sequence[DayDeltas],
    held: HeldConnection | None = None,
) -> None:
    """Record checks with their lines and the statistics deltas they add, all or none: the
    shared record of a batch of checks (on PostgreSQL through ``held`` when given).

    On PostgreSQL ``engine`` is a ``fast_records`` engine (autocommit, asynchronous commit, see
    :func:`mutualrec.storage.db.make_engine`): one statement through the driver, prepared.
    Other databases: one transaction.
    """
    if not checks:
        return
    deltas = [row for one_day in day_deltas for row in delta_params(one_day)]
    if engine.dialect.name != "postgresql":
        with Session(engine) as session, session.begin():
            record_checks(session, checks, lines, durable=False)
            if deltas:
                session.execute(StatDelta.__table__.insert(), deltas)  # type: ignore[attr-defined]
        return
    with _driver_cursor(engine, held) as cursor:
        cursor.execute(
            _RECORD_CHECKS_SQL,
            [
                json.dumps(
                    [_columns(check, _CHECK_COLUMNS) for check in checks],
                    default=_json_time,
                    ensure_ascii=False,
                ),
                json.dumps([_columns(line, _LINE_COLUMNS) for line in lines], ensure_ascii=False),
                *_delta_param_arrays(deltas),
            ],
            prepare=True,
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


# Decisions on PostgreSQL go through the driver with prepared statements, like checks: profiling
# showed SQLAlchemy's statement handling and six round trips taking most of a decision's 12 ms.
# The lines of a batch of decisions' checks, with their decisions, in one statement: a check has
# a handful of lines, so reading all of a named check's lines and picking the wanted one in
# Python costs less than a statement per way of naming a line (by number, by item code).
_LINES_OF_CHECKS_SQL = (
    "SELECT c.id, l.line, c.institution_id, l.item_code, l.verdict, l.estimated_saving,"
    " c.received_at, l.issuer_institution_id, "
    + ", ".join(f"d.{c}" for c in _DECIDED)
    + " FROM recognition_check c JOIN check_line l ON l.check_id = c.id"
    " LEFT JOIN decision d ON d.check_id = l.check_id AND d.line = l.line"
    # The ids on both tables: with the join's alone, a generic plan may hash all of check_line.
    " WHERE c.id = ANY(%(ids)s::text[]) AND l.check_id = ANY(%(ids)s::text[])"
    " ORDER BY c.id, l.line"
)


def lines_of_checks(
    engine: Engine, check_ids: Sequence[str], held: HeldConnection | None = None
) -> dict[str, list[LineOnRecord]]:
    """Every recorded line of the named checks, by check id and in line order, each with its
    decision; a check id not on record is absent. The shared read of a batch of decisions (on
    PostgreSQL through ``held`` when given)."""
    found: dict[str, list[LineOnRecord]] = {}
    ids = sorted(set(check_ids))
    if not ids:
        return found
    if engine.dialect.name == "postgresql":
        with _driver_cursor(engine, held) as cursor:
            cursor.execute(_LINES_OF_CHECKS_SQL, {"ids": ids}, prepare=True)
            rows: Sequence[Sequence[Any]] = cursor.fetchall()
    else:
        statement = (
            select(
                RecognitionCheck.id,
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
                Decision,
                (Decision.check_id == CheckLine.check_id) & (Decision.line == CheckLine.line),
            )
            .where(RecognitionCheck.id.in_(ids), CheckLine.check_id.in_(ids))
            .order_by(RecognitionCheck.id, CheckLine.line)
        )
        with engine.connect() as connection:
            rows = connection.execute(statement).all()
    for row in rows:
        found.setdefault(row[0], []).append(_line(row[1:]))
    return found


@dataclass(frozen=True, slots=True)
class DecisionToRecord:
    """A decision to record with the ``stat_delta`` rows it adds if it is the line's first."""

    decision: DecisionRecord
    deltas: DayDeltas


# A batch of decisions with their statistics deltas in one statement. The connection commits
# asynchronously (fast_records); a decision books a saving, so the statement switches its own
# transaction back to waiting for the WAL flush: set_config(..., true) lasts until the
# statement's implicit transaction ends, after its commit record is flushed.
# Each decision's deltas carry its (check, line) and go in only when that decision did: the
# first decision on a line stands. The batch holds one decision per line.
_RECORD_DECISIONS_SQL = (
    "WITH recorded AS (INSERT INTO decision ("
    + ", ".join(_DECISION_COLUMNS)
    + ") SELECT * FROM "
    + _unnest(Decision, _DECISION_COLUMNS)
    + " ON CONFLICT DO NOTHING RETURNING check_id, line, "
    + ", ".join(_DECIDED)
    + "), durable AS (SELECT set_config('synchronous_commit', 'on', true) AS setting),"
    " deltas AS (INSERT INTO stat_delta ("
    + ", ".join(DELTA_COLUMNS)
    + ") SELECT "
    + ", ".join(f"d.{c}" for c in DELTA_COLUMNS)
    + " FROM unnest(%s::text[], %s::int4[], "
    + ", ".join(f"%s::{pg_type}[]" for pg_type in postgres_types(StatDelta, DELTA_COLUMNS))
    + ") AS d(decided_check, decided_line, "
    + ", ".join(DELTA_COLUMNS)
    + ") JOIN recorded r ON r.check_id = d.decided_check AND r.line = d.decided_line)"
    " SELECT recorded.*, (SELECT setting FROM durable) FROM recorded"
)
_DECISIONS_SQL = (
    "SELECT check_id, line, " + ", ".join(_DECIDED) + " FROM decision WHERE (check_id, line) IN"
    " (SELECT * FROM unnest(%s::text[], %s::int4[]))"
)


def record_decisions(
    engine: Engine, rows: Sequence[DecisionToRecord], held: HeldConnection | None = None
) -> list[tuple[DecisionOnRecord, bool]]:
    """Record a batch of decisions (at most one per line) with their ``stat_delta`` rows, all or
    none, durably; per decision, in order, the decision on record and whether this batch
    recorded it (False: the line had one, which stands, and its deltas are not added). On
    PostgreSQL through ``held`` when given."""
    if not rows:
        return []
    keys = [(r.decision.check_id, r.decision.line) for r in rows]
    assert len(set(keys)) == len(keys), "one decision per line in a batch"
    recorded: dict[tuple[str, int], DecisionOnRecord] = {}
    if engine.dialect.name != "postgresql":
        new: set[tuple[str, int]] = set()
        with Session(engine) as session, session.begin():
            for row, key in zip(rows, keys, strict=True):
                if insert_ignoring_conflicts(
                    session, Decision, _columns(row.decision, _DECISION_COLUMNS)
                ):
                    new.add(key)
                    if row.deltas.rows:
                        session.execute(
                            StatDelta.__table__.insert(),  # type: ignore[attr-defined]
                            delta_params(row.deltas),
                        )
            found = session.execute(
                select(
                    Decision.check_id, Decision.line, *(getattr(Decision, c) for c in _DECIDED)
                ).where(tuple_(Decision.check_id, Decision.line).in_(keys))
            ).all()
        for check_id, line, *decided in found:
            on_record = _decided(decided)
            assert on_record is not None
            recorded[(check_id, line)] = on_record
        return [(recorded[key], key in new) for key in keys]
    deltas = [
        (row.decision.check_id, row.decision.line, delta)
        for row in rows
        for delta in delta_params(row.deltas)
    ]
    with _driver_cursor(engine, held) as cursor:
        cursor.execute(
            _RECORD_DECISIONS_SQL,
            [[getattr(row.decision, c) for row in rows] for c in _DECISION_COLUMNS]
            + [[c for c, _, _ in deltas], [line for _, line, _ in deltas]]
            + _delta_param_arrays([delta for _, _, delta in deltas]),
            prepare=True,
        )
        for check_id, line, *decided in cursor.fetchall():
            on_record = _decided(decided[: len(_DECIDED)])
            assert on_record is not None
            recorded[(check_id, line)] = on_record
        new_keys = set(recorded)
        # Lines another call decided between the batch's read and its write: theirs stands.
        raced = [key for key in keys if key not in recorded]
        if raced:
            cursor.execute(
                _DECISIONS_SQL,
                ([c for c, _ in raced], [line for _, line in raced]),
                prepare=True,
            )
            for check_id, line, *decided in cursor.fetchall():
                on_record = _decided(decided)
                assert on_record is not None
                recorded[(check_id, line)] = on_record
    return [(recorded[key], key in new_keys) for key in keys]
