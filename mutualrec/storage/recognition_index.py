"""The recognition index and the record of checks and decisions.

``recognition_result`` holds one row per (result, catalog item) at the result's current
version, kept up to date by ingest, so the ordering-time check is a single indexed read of one
patient's rows. Checks, their lines and decisions are the record that savings are booked from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from mutualrec.storage.models import CheckLine, Decision, RecognitionCheck, RecognitionResult


@dataclass(frozen=True, slots=True)
class IndexedResult:
    """A row of the recognition index."""

    item_code: str
    kind: str
    result_ref: str
    version: int
    status: str
    report_time: dt.datetime
    institution_id: int
    detail: str


def _utc(moment: dt.datetime) -> dt.datetime:
    # SQLite returns naive datetimes; the index stores UTC.
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def upsert_results(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or refresh index rows; a row never goes back to an older version."""
    if not rows:
        return
    table = cast(Table, RecognitionResult.__table__)
    statement: Insert
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(table)
        statement = pg.on_conflict_do_update(
            index_elements=["result_ref", "item_code"],
            set_={c: pg.excluded[c] for c in _REFRESHED},
            where=pg.excluded.version >= table.c.version,
        )
    elif dialect == "sqlite":
        lite = sqlite.insert(table)
        statement = lite.on_conflict_do_update(
            index_elements=["result_ref", "item_code"],
            set_={c: lite.excluded[c] for c in _REFRESHED},
            where=lite.excluded.version >= table.c.version,
        )
    else:
        raise NotImplementedError(f"no upsert for {dialect}")
    session.execute(statement, list(rows))


_REFRESHED = ("patient_key", "kind", "version", "status", "report_time", "institution_id", "detail")


def drop_stale_items(session: Session, current: dict[str, Iterable[str]]) -> None:
    """Remove rows of results (by ref) whose item is no longer among their current items."""
    for result_ref, item_codes in current.items():
        session.execute(
            delete(RecognitionResult).where(
                RecognitionResult.result_ref == result_ref,
                RecognitionResult.item_code.not_in(list(item_codes)),
            )
        )


def results_for(
    session: Session, patient_key: str, item_codes: Iterable[str]
) -> list[IndexedResult]:
    """The patient's indexed results of the given items: the hot read of every check."""
    codes = sorted(set(item_codes))
    if not codes:
        return []
    rows = session.execute(
        select(
            RecognitionResult.item_code,
            RecognitionResult.kind,
            RecognitionResult.result_ref,
            RecognitionResult.version,
            RecognitionResult.status,
            RecognitionResult.report_time,
            RecognitionResult.institution_id,
            RecognitionResult.detail,
        ).where(
            RecognitionResult.patient_key == patient_key,
            RecognitionResult.item_code.in_(codes),
        )
    )
    return [
        IndexedResult(item, kind, ref, version, status, _utc(time), institution, detail)
        for item, kind, ref, version, status, time, institution, detail in rows
    ]


def record_checks(
    session: Session,
    checks: Sequence[dict[str, Any]],
    lines: Sequence[dict[str, Any]],
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
        session.execute(RecognitionCheck.__table__.insert(), list(checks))  # type: ignore[attr-defined]
    if lines:
        session.execute(CheckLine.__table__.insert(), list(lines))  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class LineOnRecord:
    """A check line as recorded, with who asked."""

    institution_id: int
    item_code: str
    verdict: str
    estimated_saving: str


def line_on_record(session: Session, check_id: str, line: int) -> LineOnRecord | None:
    """The recorded line of a check, or None when there is no such check or line."""
    row = session.execute(
        select(
            RecognitionCheck.institution_id,
            CheckLine.item_code,
            CheckLine.verdict,
            CheckLine.estimated_saving,
        )
        .join(CheckLine, CheckLine.check_id == RecognitionCheck.id)
        .where(RecognitionCheck.id == check_id, CheckLine.line == line)
    ).first()
    return None if row is None else LineOnRecord(*row)


def line_of_item(session: Session, check_id: str, item_code: str) -> int | None:
    """The first line of a check that stands for ``item_code``."""
    found = session.scalar(
        select(CheckLine.line)
        .where(CheckLine.check_id == check_id, CheckLine.item_code == item_code)
        .order_by(CheckLine.line)
        .limit(1)
    )
    return None if found is None else int(found)


@dataclass(frozen=True, slots=True)
class DecisionOnRecord:
    """A decision as recorded."""

    accepted: bool
    reason: str
    reason_text: str
    booked_saving: str
    decided_at: dt.datetime


def record_decision(session: Session, row: dict[str, Any]) -> tuple[DecisionOnRecord, bool]:
    """Record a decision unless the line has one; the decision on record, and whether it is new.

    The primary key (check, line) decides a race: the first decision stands.
    """
    table = cast(Table, Decision.__table__)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    inserted = session.execute(
        insert.values(**row).on_conflict_do_nothing().returning(table.c.check_id)
    ).first()
    found = session.execute(
        select(
            Decision.accepted,
            Decision.reason,
            Decision.reason_text,
            Decision.booked_saving,
            Decision.decided_at,
        ).where(tuple_(Decision.check_id, Decision.line) == (row["check_id"], row["line"]))
    ).one()
    accepted, reason, text, saving, decided_at = found
    return DecisionOnRecord(accepted, reason, text, saving, _utc(decided_at)), inserted is not None
