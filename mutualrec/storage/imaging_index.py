"""Reads and writes of the imaging part of the index: patients, studies, series, instances."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session, aliased

from mutualrec.ingest.study_records import CurrentInstance, StudyOverview
from mutualrec.matching.codes import SeriesFacts
from mutualrec.storage.models import (
    Instance,
    Institution,
    Patient,
    PatientIdentifier,
    Series,
    Study,
    UnlinkedStudy,
)
from mutualrec.storage.sql import (
    as_utc,
    insert_ignoring_conflicts,
    insert_many_ignoring_conflicts,
)


class IndexConflict(Exception):
    """The data contradicts what the index holds (another patient, another institution)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class StudyRecord:
    """The study-level attributes an upload declares."""

    study_instance_uid: str
    patient_key: str
    institution_id: int
    accession_number: str
    # None when the instances carry no date; ``date_source`` names the attribute it came from.
    study_date: dt.date | None
    study_time: dt.time | None
    description: str
    performed_item_code: str
    date_source: str = "StudyDate"


# What the study row holds for an undated study; never read back as a date. In a newest-first
# history an undated study sorts after every dated one.
UNDATED = dt.date(1, 1, 1)


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    """The series-level attributes of an instance's header."""

    series_instance_uid: str
    modality: str
    body_part_examined: str
    body_part: str
    contrast_agent: str
    contrast: bool
    series_number: int | None
    description: str


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One received instance, already stored under ``object_key``."""

    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    transfer_syntax_uid: str
    size_bytes: int
    sha256: str
    object_key: str
    institution_id: int


@dataclass(frozen=True, slots=True)
class HeldVersion:
    """A version of a SOP instance the index holds."""

    version: int
    sha256: str
    series_instance_uid: str


def held_versions(session: Session, sop_instance_uid: str) -> list[HeldVersion]:
    """Every version held for a SOP Instance UID, oldest first."""
    rows = session.execute(
        select(Instance.version, Instance.sha256, Series.series_instance_uid)
        .join(Series, Series.id == Instance.series_id)
        .where(Instance.sop_instance_uid == sop_instance_uid)
        .order_by(Instance.version)
    ).all()
    return [HeldVersion(*row) for row in rows]


def link_patient(session: Session, institution_id: int, local_id: str, patient_key: str) -> None:
    """Record the hospital's own patient number for a patient; refuse if it names another.

    An empty ``local_id`` (anonymised or imported instances) records the patient only.
    """
    insert_ignoring_conflicts(session, Patient, {"patient_key": patient_key})
    if not local_id:
        return
    insert_ignoring_conflicts(
        session,
        PatientIdentifier,
        {"institution_id": institution_id, "local_id": local_id, "patient_key": patient_key},
    )
    owner = session.scalar(
        select(PatientIdentifier.patient_key).where(
            PatientIdentifier.institution_id == institution_id,
            PatientIdentifier.local_id == local_id,
        )
    )
    if owner != patient_key:
        raise IndexConflict(
            "(0010,0020) PatientID",
            f"PatientID {local_id!r} already names another patient at this institution; "
            "check the identity document declared in the header",
        )


# Holding keys start with this; a real patient key is the hex of a keyed hash, never with ":".
_HOLDING = "unlinked:"


def holding_key(institution_id: int, local_id: str) -> str:
    """The patient key a study held unlinked is stored under: one per institution and PatientID,
    so later instances of that PatientID join it, and never one an identity document hashes to
    (no history or check can reach it)."""
    digest = hashlib.sha256(f"{institution_id}\x00{local_id}".encode()).hexdigest()
    return _HOLDING + digest[: 64 - len(_HOLDING)]


def is_holding_key(patient_key: str) -> bool:
    """Whether ``patient_key`` holds unlinked studies rather than naming a patient."""
    return patient_key.startswith(_HOLDING)


def _lock_patient_id(session: Session, institution_id: int, local_id: str) -> None:
    """Hold holding and linking of one PatientID apart until commit: a study held while the
    PatientID is being linked is then either seen by the link, or sees the link itself.
    (SQLite has one writer at a time anyway.)"""
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"patient-id\x00{institution_id}\x00{local_id}".encode()).digest()
    session.execute(
        select(func.pg_advisory_xact_lock(int.from_bytes(digest[:8], "big", signed=True)))
    )


def hold_unlinked(
    session: Session, study_id: int, institution_id: int, local_id: str
) -> str | None:
    """Record the study as held unlinked under the hospital's PatientID (once). Returns the
    patient the PatientID was linked to meanwhile (a link committed since the instance was
    resolved), whom the caller must then give the study (:func:`adopt_unlinked`)."""
    _lock_patient_id(session, institution_id, local_id)
    insert_ignoring_conflicts(
        session,
        UnlinkedStudy,
        {
            "study_id": study_id,
            "institution_id": institution_id,
            "local_patient_id": local_id,
            "held_at": dt.datetime.now(dt.UTC),
        },
    )
    return linked_patient(session, institution_id, local_id)


def adopt_unlinked(
    session: Session, institution_id: int, local_id: str, patient_key: str
) -> list[str]:
    """Move every study the institution holds unlinked under ``local_id`` to the patient; their
    Study Instance UIDs (to re-index). The PatientID must already be linked to the patient."""
    _lock_patient_id(session, institution_id, local_id)
    rows = session.execute(
        select(UnlinkedStudy.study_id, Study.study_instance_uid)
        .join(Study, Study.id == UnlinkedStudy.study_id)
        .where(
            UnlinkedStudy.institution_id == institution_id,
            UnlinkedStudy.local_patient_id == local_id,
        )
        .with_for_update()
    ).all()
    if not rows:
        return []
    ids = [row[0] for row in rows]
    session.execute(update(Study).where(Study.id.in_(ids)).values(patient_key=patient_key))
    session.execute(delete(UnlinkedStudy).where(UnlinkedStudy.study_id.in_(ids)))
    return [str(row[1]) for row in rows]


@dataclass(frozen=True, slots=True)
class UnlinkedStudyRow:
    """A study the institution holds unlinked, as the hospital lists them."""

    study_id: int
    study_instance_uid: str
    local_patient_id: str
    study_date: dt.date | None
    description: str
    modalities: list[str]
    instance_count: int
    held_at: dt.datetime


def unlinked_studies(
    session: Session, institution_id: int, after_id: int | None, limit: int
) -> list[UnlinkedStudyRow]:
    """The institution's studies held unlinked, newest held first (keyset on the study id)."""
    query = (
        select(UnlinkedStudy, Study)
        .join(Study, Study.id == UnlinkedStudy.study_id)
        .where(UnlinkedStudy.institution_id == institution_id)
    )
    if after_id is not None:
        query = query.where(UnlinkedStudy.study_id < after_id)
    rows = session.execute(query.order_by(UnlinkedStudy.study_id.desc()).limit(limit)).all()
    modalities: dict[int, set[str]] = {}
    if rows:
        for study_id, modality in session.execute(
            select(Series.study_id, Series.modality).where(
                Series.study_id.in_([held.study_id for held, _ in rows])
            )
        ):
            modalities.setdefault(int(study_id), set()).add(str(modality))
    return [
        UnlinkedStudyRow(
            study_id=held.study_id,
            study_instance_uid=study.study_instance_uid,
            local_patient_id=held.local_patient_id,
            study_date=study.study_date if study.date_source else None,
            description=study.description,
            modalities=sorted(modalities.get(held.study_id, set())),
            instance_count=study.instance_count,
            held_at=as_utc(held.held_at),
        )
        for held, study in rows
    ]


def linked_patient(session: Session, institution_id: int, local_id: str) -> str | None:
    """The patient key the institution's own patient number was linked to, if any."""
    if not local_id:
        return None
    return session.scalar(
        select(PatientIdentifier.patient_key).where(
            PatientIdentifier.institution_id == institution_id,
            PatientIdentifier.local_id == local_id,
        )
    )


def ensure_study(session: Session, record: StudyRecord) -> int:
    """The id of the study, creating it; refuse a study held for another patient or hospital."""
    study_date = record.study_date or UNDATED
    values = {
        "study_instance_uid": record.study_instance_uid,
        "patient_key": record.patient_key,
        "institution_id": record.institution_id,
        "accession_number": record.accession_number,
        "study_date": study_date,
        "study_time": record.study_time,
        "description": record.description,
        "performed_item_code": record.performed_item_code,
        "started_at": dt.datetime.combine(study_date, record.study_time or dt.time()),
        "date_source": record.date_source if record.study_date is not None else "",
    }
    insert_ignoring_conflicts(session, Study, values)
    study_id, patient_key, institution_id = session.execute(
        select(Study.id, Study.patient_key, Study.institution_id).where(
            Study.study_instance_uid == record.study_instance_uid
        )
    ).one()
    if institution_id != record.institution_id:
        raise IndexConflict(
            "(0020,000D) StudyInstanceUID",
            "this Study Instance UID is held for another institution",
        )
    if patient_key != record.patient_key:
        raise IndexConflict(
            "header.patient",
            "this study is held for another patient than the one the header declares",
        )
    return int(study_id)


def lock_study(session: Session, study_id: int) -> None:
    """Hold the study's row until commit, so concurrent uploads of one study count in turn.

    Taken before any instance row is written: every transaction adding to a study then waits
    at the same place, and the counts :func:`refresh_study_counts` reads see every commit made
    before it. (SQLite has one writer at a time anyway.)
    """
    session.execute(select(Study.id).where(Study.id == study_id).with_for_update())


def refresh_study_counts(session: Session, study_id: int) -> None:
    """Recount the study's series, current instances and bytes into its row."""
    newer = aliased(Instance)
    in_study = Series.study_id == study_id
    series_count = select(func.count()).select_from(Series).where(in_study).scalar_subquery()
    instance_count = (
        select(func.count(func.distinct(Instance.sop_instance_uid)))
        .join(Series, Series.id == Instance.series_id)
        .where(in_study)
        .scalar_subquery()
    )
    size_bytes = (
        select(func.coalesce(func.sum(Instance.size_bytes), 0))
        .join(Series, Series.id == Instance.series_id)
        .where(
            in_study,
            ~exists().where(
                newer.sop_instance_uid == Instance.sop_instance_uid,
                newer.version > Instance.version,
            ),
        )
        .scalar_subquery()
    )
    session.execute(
        update(Study)
        .where(Study.id == study_id)
        .values(series_count=series_count, instance_count=instance_count, size_bytes=size_bytes)
    )


def add_to_study_counts(session: Session, study_id: int, instances: int, size_bytes: int) -> None:
    """Add a batch's new instances (first versions) and their bytes to the study's counts and
    recount its series (a handful of rows): what :func:`refresh_study_counts` gives when the
    batch created no new version of an instance, at a cost that does not grow with the study."""
    series_count = (
        select(func.count()).select_from(Series).where(Series.study_id == study_id)
    ).scalar_subquery()
    session.execute(
        update(Study)
        .where(Study.id == study_id)
        .values(
            series_count=series_count,
            instance_count=Study.instance_count + instances,
            size_bytes=Study.size_bytes + size_bytes,
        )
    )


def ensure_series(session: Session, study_id: int, record: SeriesRecord) -> int:
    """The id of the series, creating it; refuse a series UID held under another study."""
    values = {
        "study_id": study_id,
        "series_instance_uid": record.series_instance_uid,
        "modality": record.modality,
        "body_part_examined": record.body_part_examined,
        "body_part": record.body_part,
        "contrast_agent": record.contrast_agent,
        "contrast": record.contrast,
        "series_number": record.series_number,
        "description": record.description,
    }
    insert_ignoring_conflicts(session, Series, values)
    series_id, owner_study = session.execute(
        select(Series.id, Series.study_id).where(
            Series.series_instance_uid == record.series_instance_uid
        )
    ).one()
    if owner_study != study_id:
        raise IndexConflict(
            "(0020,000E) SeriesInstanceUID",
            "this Series Instance UID is held under another study",
        )
    return int(series_id)


def _instance_row(
    series_id: int, record: InstanceRecord, version: int, received_at: dt.datetime
) -> dict[str, object]:
    return {
        "series_id": series_id,
        "sop_instance_uid": record.sop_instance_uid,
        "version": version,
        "sop_class_uid": record.sop_class_uid,
        "instance_number": record.instance_number,
        "transfer_syntax_uid": record.transfer_syntax_uid,
        "size_bytes": record.size_bytes,
        "sha256": record.sha256,
        "object_key": record.object_key,
        "institution_id": record.institution_id,
        "received_at": received_at,
    }


def add_first_versions(
    session: Session, items: list[tuple[int, InstanceRecord]]
) -> set[tuple[str, str]]:
    """Insert each (series id, record) as version 1 where its SOP Instance UID is new.

    One statement for a whole batch: the common case of a study seen for the first time. Returns
    the (sop_instance_uid, sha256) pairs inserted; the others need :func:`add_instance_version`.
    """
    now = dt.datetime.now(dt.UTC)
    rows = [_instance_row(series_id, record, 1, now) for series_id, record in items]
    inserted = insert_many_ignoring_conflicts(
        session,
        Instance,
        rows,
        ["sop_instance_uid", "sha256"],
    )
    return {(str(sop), str(sha)) for sop, sha in inserted}


def add_instance_version(
    session: Session, series_id: int, record: InstanceRecord
) -> tuple[int, bool]:
    """Index the instance's bytes; returns (version, created).

    ``created`` is False when the same bytes were already held (a duplicate). Races are settled
    by the unique constraints on (sop, sha256) and (sop, version): a loser re-reads and retries.
    """
    held_in = session.scalar(
        select(Instance.series_id)
        .where(Instance.sop_instance_uid == record.sop_instance_uid)
        .limit(1)
    )
    if held_in is not None and held_in != series_id:
        raise IndexConflict(
            "(0008,0018) SOPInstanceUID", "this SOP Instance UID is held in another series"
        )
    while True:
        existing = session.scalar(
            select(Instance.version).where(
                Instance.sop_instance_uid == record.sop_instance_uid,
                Instance.sha256 == record.sha256,
            )
        )
        if existing is not None:
            return int(existing), False
        latest = session.scalar(
            select(func.max(Instance.version)).where(
                Instance.sop_instance_uid == record.sop_instance_uid
            )
        )
        version = int(latest or 0) + 1
        inserted = insert_ignoring_conflicts(
            session,
            Instance,
            _instance_row(series_id, record, version, dt.datetime.now(dt.UTC)),
        )
        if inserted:
            return version, True


def object_referenced(session: Session, object_key: str) -> bool:
    """Whether any indexed instance refers to the blob under ``object_key``."""
    return session.scalar(select(Instance.id).where(Instance.object_key == object_key)) is not None


def study_owner(session: Session, study_instance_uid: str) -> int | None:
    """The id of the institution holding a study, or None if the region holds no such study."""
    return session.scalar(
        select(Study.institution_id).where(Study.study_instance_uid == study_instance_uid)
    )


def study_holder(session: Session, study_instance_uid: str) -> tuple[int, str] | None:
    """The (institution id, patient key) a study is held for, or None if the region holds no
    such study."""
    row = session.execute(
        select(Study.institution_id, Study.patient_key).where(
            Study.study_instance_uid == study_instance_uid
        )
    ).one_or_none()
    return None if row is None else (int(row[0]), str(row[1]))


def current_instances(session: Session, study_instance_uid: str) -> list[CurrentInstance]:
    """The newest version of every instance of a study, by series and SOP Instance UID."""
    newest = (
        select(Instance.sop_instance_uid, func.max(Instance.version).label("version"))
        .join(Series, Series.id == Instance.series_id)
        .join(Study, Study.id == Series.study_id)
        .where(Study.study_instance_uid == study_instance_uid)
        .group_by(Instance.sop_instance_uid)
        .subquery()
    )
    rows = session.execute(
        select(
            Instance.sop_instance_uid,
            Series.series_instance_uid,
            Instance.version,
            Instance.size_bytes,
            Instance.sha256,
        )
        .join(
            newest,
            (newest.c.sop_instance_uid == Instance.sop_instance_uid)
            & (newest.c.version == Instance.version),
        )
        .join(Series, Series.id == Instance.series_id)
        .order_by(Series.series_instance_uid, Instance.sop_instance_uid)
    ).all()
    return [CurrentInstance(*row) for row in rows]


def study_overview(session: Session, study_instance_uid: str) -> StudyOverview | None:
    """The summary of a study, counting current instance versions only (read from the counts
    ingest keeps on the study row, so it costs no instance scan)."""
    study = session.execute(
        select(Study, Institution.code)
        .join(Institution, Institution.id == Study.institution_id)
        .where(Study.study_instance_uid == study_instance_uid)
    ).one_or_none()
    if study is None:
        return None
    row, institution_code = study
    series = session.execute(
        select(Series.modality, Series.body_part, Series.contrast).where(Series.study_id == row.id)
    ).all()
    return StudyOverview(
        study_instance_uid=row.study_instance_uid,
        institution_code=institution_code,
        accession_number=row.accession_number,
        study_date=row.study_date if row.date_source else None,
        study_time=row.study_time,
        description=row.description,
        performed_item_code=row.performed_item_code,
        modalities=sorted({s.modality for s in series}),
        body_parts=sorted({s.body_part for s in series if s.body_part}),
        contrast=any(s.contrast for s in series),
        series_count=len(series),
        # Kept on the study row by every batch that adds instances (refresh_study_counts).
        instance_count=row.instance_count,
        size_bytes=row.size_bytes,
        declared_item_review=row.declared_item_review,
        not_recognized_reason=row.not_recognized_reason,
    )


def set_not_recognized_reason(session: Session, study_instance_uid: str, reason: str) -> None:
    """Record why the study is not recognized (empty: it is)."""
    session.execute(
        update(Study)
        .where(Study.study_instance_uid == study_instance_uid)
        .values(not_recognized_reason=reason[:512])
    )


def set_declared_item_review(session: Session, study_instance_uid: str, review: str) -> bool:
    """Record an administrator's word on the study's declared item; False if no such study."""
    changed = session.execute(
        update(Study)
        .where(Study.study_instance_uid == study_instance_uid)
        .values(declared_item_review=review)
    )
    return bool(changed.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class StudyParties:
    """Whose a study is and who made it: what recognition keys the study's results by."""

    patient_key: str
    institution_id: int
    series: list[SeriesFacts]


def study_parties(session: Session, study_instance_uid: str) -> StudyParties | None:
    """The patient, the issuing institution and each series' modality, body part and contrast."""
    study = session.execute(
        select(Study.id, Study.patient_key, Study.institution_id).where(
            Study.study_instance_uid == study_instance_uid
        )
    ).one_or_none()
    if study is None:
        return None
    series = session.execute(
        select(Series.modality, Series.body_part, Series.contrast).where(
            Series.study_id == study.id
        )
    ).all()
    return StudyParties(
        study.patient_key, study.institution_id, [SeriesFacts(m, b, c) for m, b, c in series]
    )
