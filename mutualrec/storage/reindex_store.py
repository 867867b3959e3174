"""What a re-index of the lab results reads and writes: current versions, their index rows, and
the checkpoint that makes it resumable. Domain types in, rows out; no catalog logic here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.orm import Session

from mutualrec.storage.models import (
    LabResult,
    LabResultVersion,
    RecognitionResult,
    ReindexCheckpoint,
)

# The current version's columns a re-index needs: what maps it to items, and what an index row
# shows of it.
VERSION_FIELDS = (
    "lab_result_id",
    "version",
    "status",
    "institution_id",
    "patient_key",
    "loinc",
    "other_loinc",
    "local_code",
    "code_text",
    "value_kind",
    "value_decimal",
    "value_unit",
    "value_text",
    "value_code_system",
    "value_code",
    "value_low",
    "value_high",
    "reference_low",
    "reference_high",
    "reference_text",
    "interpretation",
    "specimen_collected_at",
    "effective_at",
    "issued_at",
    "report_time",
    "report_ref",
    "result_groups",
)


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


def current_versions(session: Session, after_id: int, limit: int) -> list[Sequence[Any]]:
    """The current versions of the next ``limit`` results after ``after_id``, by result id.

    Their results are locked (``FOR UPDATE`` on PostgreSQL) until the batch commits, so an
    ingest deciding a new version of one waits instead of racing the re-index.
    """
    columns = [getattr(LabResultVersion, name) for name in VERSION_FIELDS]
    statement = (
        select(*columns)
        .join(
            LabResult,
            (LabResult.id == LabResultVersion.lab_result_id)
            & (LabResult.current_version == LabResultVersion.version),
        )
        .where(LabResult.id > after_id)
        .order_by(LabResult.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(of=LabResult)
    return [tuple(row) for row in session.execute(statement)]


def held_items(session: Session, refs: Sequence[str]) -> dict[str, set[str]]:
    """The item codes the index holds for each result ref."""
    found: dict[str, set[str]] = {}
    for start in range(0, len(refs), 5000):
        rows = session.execute(
            select(RecognitionResult.result_ref, RecognitionResult.item_code).where(
                RecognitionResult.result_ref.in_(refs[start : start + 5000])
            )
        )
        for ref, item in rows:
            found.setdefault(ref, set()).add(item)
    return found


def remove_items(session: Session, pairs: Iterable[tuple[str, str]]) -> None:
    """Delete the index rows (result ref, item code)."""
    listed = list(pairs)
    for start in range(0, len(listed), 2000):
        session.execute(
            delete(RecognitionResult).where(
                tuple_(RecognitionResult.result_ref, RecognitionResult.item_code).in_(
                    listed[start : start + 2000]
                )
            )
        )
