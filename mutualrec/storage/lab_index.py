"""Lab results in the SQL index: identities, their current version, and every version.

Set-based on purpose: a bundle of 1,000 Observations costs a handful of statements, not
thousands. Races are settled by the unique constraint on (institution, identity), and rows of
results already held are locked (``FOR UPDATE``) before their next version is decided.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, insert, select, text, tuple_, update
from sqlalchemy.orm import Session

from mutualrec.ingest.lab_ingest import PendingResult
from mutualrec.ingest.lab_result import groups_text
from mutualrec.storage.models import LabResult, LabResultVersion, Patient
from mutualrec.storage.sql import column_names, insert_many_ignoring_conflicts, postgres_types


@dataclass(frozen=True, slots=True)
class HeldRow:
    """The current state of a held result."""

    lab_result_id: int
    version: int
    status: str
    content_sha256: str
    patient_key: str


@dataclass(frozen=True, slots=True)
class NewResult:
    """A result to create: its identity and the state of its first version."""

    identity: str
    patient_key: str
    status: str
    content_sha256: str


class NewVersion(NamedTuple):
    """A version of a held result to record: the Observation it is and its number.

    Immutable and typed like a frozen dataclass, but built for every result ingested: a frozen
    dataclass's ``__init__`` costs three times as much.
    """

    lab_result_id: int
    version: int
    pending: PendingResult


def text_array(values: Iterable[str]) -> str:
    """A PostgreSQL array literal of ``values``, for a parameter cast to ``text[]``.

    psycopg adapts a list element by element in Python, several times what this costs, and a
    bundle binds thousands of strings.
    """
    return (
        "{"
        + ",".join(
            [
                f'"{v}"'
                if '"' not in v and "\\" not in v
                else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                for v in values
            ]
        )
        + "}"
    )


_ENSURE_PATIENTS_SQL = text(
    """
    INSERT INTO patient (patient_key, created_at)
    SELECT k.patient_key, :now
    FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS k(patient_key, position)
    ORDER BY k.position
    ON CONFLICT DO NOTHING
    """
)


def ensure_patients(session: Session, patient_keys: Iterable[str]) -> None:
    """Make sure every patient key has its row."""
    # Sorted, so concurrent transactions take the primary key's locks in one order.
    keys = sorted(set(patient_keys))
    if not keys:
        return
    if session.get_bind().dialect.name == "postgresql":
        now = dt.datetime.now(dt.UTC)
        session.execute(_ENSURE_PATIENTS_SQL, {"now": now, "keys": text_array(keys)})
        return
    rows = [{"patient_key": key} for key in keys]
    insert_many_ignoring_conflicts(session, Patient, rows, returning=["patient_key"])


def create_results(
    session: Session, institution_id: int, results: Sequence[NewResult], now: dt.datetime
) -> dict[str, int]:
    """Insert the results not yet held, as version 1; the ids of those this call created.

    An identity another transaction holds (or is inserting) is skipped: the database, not a
    prior SELECT, decides who creates it.
    """
    rows = [
        {
            "institution_id": institution_id,
            "identity": r.identity,
            "patient_key": r.patient_key,
            "current_version": 1,
            "current_status": r.status,
            "current_sha256": r.content_sha256,
            "updated_at": now,
        }
        # Sorted, so concurrent transactions take the unique-index locks in one order.
        for r in sorted(results, key=lambda r: r.identity)
    ]
    if session.get_bind().dialect.name == "postgresql":
        inserted = _create_results_postgres(session, rows)
    else:
        inserted = insert_many_ignoring_conflicts(
            session, LabResult, rows, returning=["identity", "id"]
        )
    return {identity: lab_result_id for identity, lab_result_id in inserted}


# One statement with one array per column: PostgreSQL plans it once, whatever the row count,
# where a multi-row VALUES list binds seven parameters per row.
_CREATE_RESULTS_SQL = text(
    """
    INSERT INTO lab_result (institution_id, identity, patient_key, current_version,
                            current_status, current_sha256, updated_at)
    SELECT :institution_id, r.identity, r.patient_key, 1, r.status, r.sha, :now
    FROM unnest(CAST(:identities AS text[]), CAST(:patient_keys AS text[]),
                CAST(:statuses AS text[]), CAST(:shas AS text[]))
         WITH ORDINALITY AS r(identity, patient_key, status, sha, position)
    ORDER BY r.position
    ON CONFLICT DO NOTHING
    RETURNING identity, id
    """
)


def _create_results_postgres(session: Session, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    if not rows:
        return []
    result = session.execute(
        _CREATE_RESULTS_SQL,
        {
            "institution_id": rows[0]["institution_id"],
            "now": rows[0]["updated_at"],
            "identities": text_array([r["identity"] for r in rows]),
            "patient_keys": text_array([r["patient_key"] for r in rows]),
            "statuses": text_array([r["current_status"] for r in rows]),
            "shas": text_array([r["current_sha256"] for r in rows]),
        },
    )
    return [tuple(row) for row in result]


def lock_held(
    session: Session, institution_id: int, identities: Iterable[str]
) -> dict[str, HeldRow]:
    """The current state of held results, locked until the transaction ends."""
    wanted = sorted(set(identities))
    if not wanted:
        return {}
    rows = session.execute(
        select(
            LabResult.identity,
            LabResult.id,
            LabResult.current_version,
            LabResult.current_status,
            LabResult.current_sha256,
            LabResult.patient_key,
        )
        .where(LabResult.institution_id == institution_id, LabResult.identity.in_(wanted))
        .order_by(LabResult.identity)
        .with_for_update()
    )
    return {
        identity: HeldRow(lab_result_id, version, status, sha, patient_key)
        for identity, lab_result_id, version, status, sha, patient_key in rows
    }


def version_digests(
    session: Session, pairs: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], int]:
    """For (result id, content digest) pairs, the version already holding that content."""
    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    rows = session.execute(
        select(
            LabResultVersion.lab_result_id,
            LabResultVersion.content_sha256,
            LabResultVersion.version,
        ).where(tuple_(LabResultVersion.lab_result_id, LabResultVersion.content_sha256).in_(wanted))
    )
    return {(lab_result_id, sha): version for lab_result_id, sha, version in rows}


# The columns of a version row, in the order :func:`add_versions` takes them: the table's, less
# its id. Binary COPY sends each value in its column's own format, hence the types.
VERSION_COLUMNS = column_names(LabResultVersion, omit=("id",))
_VERSION_TYPES = postgres_types(LabResultVersion, VERSION_COLUMNS)
_COPY_VERSIONS = (
    f"COPY lab_result_version ({', '.join(VERSION_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
)


def _text(number: Decimal | None) -> str | None:
    return None if number is None else str(number)


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    # Stored in UTC: SQLite keeps a datetime's wall-clock digits and drops its offset.
    return None if moment is None else moment.astimezone(dt.UTC)


def _version_row(
    new: NewVersion, institution_id: int, document_key: str, received_at: dt.datetime
) -> tuple[Any, ...]:
    """The values of a version row, in the order of :data:`VERSION_COLUMNS`."""
    pending = new.pending
    result = pending.result
    value = result.value
    local = result.local_codes[0] if result.local_codes else None
    code = value.code
    return (
        new.lab_result_id,
        new.version,
        pending.sha256,
        result.status.value,
        institution_id,
        pending.patient_key,
        result.loinc[0] if result.loinc else "",
        ";".join(result.loinc[1:]),
        local.system if local else "",
        local.code if local else "",
        result.code_text[:200],
        value.kind,
        _text(value.number),
        value.unit,
        value.text[:1000],
        code.system if code else "",
        code.code if code else "",
        _text(value.low),
        _text(value.high),
        _text(result.reference_low),
        _text(result.reference_high),
        result.reference_text[:200],
        ";".join(result.interpretation)[:64],
        _utc(result.specimen_collected_at),
        _utc(result.effective_at),
        _utc(result.issued_at),
        _utc(result.report_time),
        result.report_ref[:300],
        document_key,
        pending.index,
        received_at,
        groups_text(result.groups),
    )


def add_versions(
    session: Session,
    versions: Sequence[NewVersion],
    institution_id: int,
    document_key: str,
    received_at: dt.datetime,
) -> None:
    """Insert the versions, all of the institution's document under ``document_key``.

    On PostgreSQL through binary COPY, inside the session's transaction: a bundle's thousand
    rows cost one round trip and no statement to plan, and psycopg formats binary rows in C
    (text rows cost several times as much).
    """
    if not versions:
        return
    rows = [_version_row(v, institution_id, document_key, received_at) for v in versions]
    if session.get_bind().dialect.name != "postgresql":
        session.execute(
            insert(LabResultVersion), [dict(zip(VERSION_COLUMNS, r, strict=True)) for r in rows]
        )
        return
    connection = session.connection().connection.driver_connection
    assert connection is not None
    with connection.cursor() as cursor, cursor.copy(_COPY_VERSIONS) as copy:
        copy.set_types(_VERSION_TYPES)
        for row in rows:
            copy.write_row(row)


def set_current(
    session: Session, updates: Sequence[tuple[int, int, str, str]], now: dt.datetime
) -> None:
    """Point results at their new current version: (id, version, status, digest) each."""
    if not updates:
        return
    table = cast(Table, LabResult.__table__)
    session.execute(
        update(table)
        .where(table.c.id == bindparam("lab_result_id"))
        .values(
            current_version=bindparam("version"),
            current_status=bindparam("status"),
            current_sha256=bindparam("sha"),
            updated_at=now,
        ),
        [{"lab_result_id": i, "version": v, "status": s, "sha": sha} for i, v, s, sha in updates],
    )
