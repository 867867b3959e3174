"""What a re-index of the lab results reads and writes: current versions, their index rows, and
the checkpoint that makes it resumable. Domain types in, rows out; no catalog logic here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from mutualrec.storage.lab_index import text_array
from mutualrec.storage.models import (
    LabResult,
    LabResultVersion,
    RecognitionResult,
    ReindexCheckpoint,
)


@dataclass(frozen=True, slots=True)
class MappingRow:
    """What maps a result's current version to its items: read for every result."""

    lab_result_id: int
    version: int
    institution_id: int
    loinc: str
    other_loinc: str
    local_code: str
    value_kind: str
    result_groups: str


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """What an index row shows of a version: read only for the results whose rows change."""

    lab_result_id: int
    version: int
    status: str
    institution_id: int
    patient_key: str
    loinc: str
    other_loinc: str
    local_code: str
    code_text: str
    value_kind: str
    value_decimal: str | None
    value_unit: str
    value_text: str
    value_code_system: str
    value_code: str
    value_low: str | None
    value_high: str | None
    reference_low: str | None
    reference_high: str | None
    reference_text: str
    interpretation: str
    specimen_collected_at: dt.datetime | None
    effective_at: dt.datetime
    issued_at: dt.datetime | None
    report_time: dt.datetime
    report_ref: str
    result_groups: str


# The columns each row type is read from, in its fields' order.
_MAPPING_COLUMNS = [getattr(LabResultVersion, f.name) for f in fields(MappingRow)]
_VERSION_COLUMNS = [getattr(LabResultVersion, f.name) for f in fields(StoredVersion)]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A re-index run: where it stands."""

    id: int
    last_lab_result_id: int
    results: int
    rows_added: int
    rows_removed: int


def open_checkpoint(session: Session, version: str, sha256: str, now: dt.datetime) -> Checkpoint:
    """The unfinished run for this catalog content, or a new one from the start."""
    row = session.scalar(
        select(ReindexCheckpoint)
        .where(
            ReindexCheckpoint.catalog_version == version,
            ReindexCheckpoint.catalog_sha256 == sha256,
            ReindexCheckpoint.finished_at.is_(None),
        )
        .order_by(ReindexCheckpoint.id.desc())
        .limit(1)
    )
    if row is None:
        row = ReindexCheckpoint(
            catalog_version=version,
            catalog_sha256=sha256,
            last_lab_result_id=0,
            results=0,
            rows_added=0,
            rows_removed=0,
            started_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
    return Checkpoint(row.id, row.last_lab_result_id, row.results, row.rows_added, row.rows_removed)


def advance(session: Session, checkpoint: Checkpoint, now: dt.datetime, *, done: bool) -> None:
    """Record ``checkpoint`` in the transaction that wrote its batch."""
    session.execute(
        update(ReindexCheckpoint)
        .where(ReindexCheckpoint.id == checkpoint.id)
        .values(
            last_lab_result_id=checkpoint.last_lab_result_id,
            results=checkpoint.results,
            rows_added=checkpoint.rows_added,
            rows_removed=checkpoint.rows_removed,
            updated_at=now,
            finished_at=now if done else None,
        )
    )


def last_lab_result_id(session: Session) -> int:
    """The highest lab result id now held (0: none). Results created after a re-index starts are
    indexed by their own ingest, under the current catalog."""
    return int(session.scalar(select(func.max(LabResult.id))) or 0)


def current_versions(session: Session, after_id: int, up_to_id: int) -> list[MappingRow]:
    """What maps the current versions of the results with ids in
    (``after_id``, ``up_to_id``], by id.

    An id range on both tables, not a LIMIT: each side is read by its primary or unique index,
    whatever the planner's statistics say. Read without locks: most results of a re-index keep
    their items, and locking them all would write a row lock into each; see
    :func:`lock_still_current` for those that change.
    """
    statement = (
        select(*_MAPPING_COLUMNS)
        .join(
            LabResult,
            (LabResult.id == LabResultVersion.lab_result_id)
            & (LabResult.current_version == LabResultVersion.version),
        )
        .where(
            LabResult.id > after_id,
            LabResult.id <= up_to_id,
            LabResultVersion.lab_result_id > after_id,
            LabResultVersion.lab_result_id <= up_to_id,
        )
        .order_by(LabResult.id)
    )
    return [MappingRow(*row) for row in session.execute(statement)]


def versions(session: Session, keys: Sequence[tuple[int, int]]) -> dict[int, StoredVersion]:
    """The versions (lab result id, version), by result id."""
    wanted = set(keys)
    ids = sorted({lab_result_id for lab_result_id, _ in keys})
    found: dict[int, StoredVersion] = {}
    for start in range(0, len(ids), 2000):
        # By result id alone, then the version picked here: PostgreSQL reads a list of ids by
        # the primary key, where a list of (id, version) pairs cost it a scan per batch.
        rows = session.execute(
            select(*_VERSION_COLUMNS).where(
                LabResultVersion.lab_result_id.in_(ids[start : start + 2000])
            )
        )
        for row in rows:
            version = StoredVersion(*row)
            if (version.lab_result_id, version.version) in wanted:
                found[version.lab_result_id] = version
    return found


def lock_still_current(session: Session, versions: Mapping[int, int]) -> set[int]:
    """Lock the results (id -> version read) whose index rows are about to change; the ids whose
    current version is still the one read. An ingest that stored a newer version meanwhile
    indexed it itself, and the re-index leaves it alone."""
    if not versions:
        return set()
    statement = select(LabResult.id, LabResult.current_version).where(
        LabResult.id.in_(list(versions))
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return {i for i, version in session.execute(statement) if versions[i] == version}


_HELD_ITEMS_SQL = text(
    "SELECT result_ref, item_code, id FROM recognition_result "
    "WHERE result_ref = ANY(CAST(:refs AS text[]))"
)


def held_items(session: Session, refs: Sequence[str]) -> dict[str, dict[str, int]]:
    """The index rows held for each result ref: item code -> row id."""
    found: dict[str, dict[str, int]] = {}
    if session.get_bind().dialect.name == "postgresql":
        # One array parameter: thousands of bound values cost psycopg more than the query.
        chunks: list[Iterable[Any]] = [session.execute(_HELD_ITEMS_SQL, {"refs": text_array(refs)})]
    else:
        chunks = [
            session.execute(
                select(
                    RecognitionResult.result_ref, RecognitionResult.item_code, RecognitionResult.id
                ).where(RecognitionResult.result_ref.in_(refs[start : start + 5000]))
            )
            for start in range(0, len(refs), 5000)
        ]
    for rows in chunks:
        for ref, item, row_id in rows:
            found.setdefault(ref, {})[item] = row_id
    return found


def remove_items(session: Session, row_ids: Sequence[int]) -> None:
    """Delete the index rows with these ids (read by :func:`held_items` in this transaction,
    their results locked by :func:`lock_still_current` since)."""
    for start in range(0, len(row_ids), 2000):
        # By primary key: a list of (result ref, item code) pairs cost PostgreSQL a scan.
        session.execute(
            delete(RecognitionResult).where(RecognitionResult.id.in_(row_ids[start : start + 2000]))
        )
