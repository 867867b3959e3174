"""Reads of a patient's imaging history: their studies, a study's series, its current files.

Every read here is keyed by the patient (or by a study id already proven to be theirs): the
listing is one range scan of ``ix_study_patient_started`` whatever the size of the region's
index, and the counts it shows are the ones ingest keeps on the study row.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, select, tuple_
from sqlalchemy.orm import Session, aliased

from mutualrec.imaging.records import (
    HeldItem,
    HistoryCursor,
    HistoryFilter,
    InstanceFile,
    SeriesEntry,
    StudyEntry,
)
from mutualrec.matching.facts import Verdict
from mutualrec.matching.indexed_results import HELD
from mutualrec.storage.models import (
    CheckLine,
    Instance,
    Institution,
    RecognitionCheck,
    RecognitionResult,
    Series,
    Study,
)
from mutualrec.storage.sql import as_utc

# Separates the values an aggregate joins into one string (never inside a modality or body part).
_SEP = "\x1f"


def _facet(column: Any) -> Any:
    """The values of a study's series in ``column``, joined into one string."""
    return (
        select(func.aggregate_strings(column, _SEP))
        .where(Series.study_id == Study.id)
        .scalar_subquery()
    )


def _listing() -> Select[*tuple[Any, ...]]:
    """Studies with their institution and series facets, in one statement: a page is one
    round trip for the studies and one for their recognition items."""
    return select(
        Study.id,
        Study.study_instance_uid,
        Study.patient_key,
        Institution.code,
        Institution.name,
        Study.accession_number,
        Study.study_date,
        Study.study_time,
        Study.started_at,
        Study.description,
        Study.series_count,
        Study.instance_count,
        Study.size_bytes,
        _facet(Series.modality),
        _facet(Series.body_part),
        exists().where(Series.study_id == Study.id, Series.contrast.is_(True)),
        Study.date_source,
        Study.not_recognized_reason,
    ).join(Institution, Institution.id == Study.institution_id)


def _split(joined: str | None) -> tuple[str, ...]:
    return tuple(sorted({value for value in (joined or "").split(_SEP) if value}))


def _entries(session: Session, query: Select[*tuple[Any, ...]]) -> list[StudyEntry]:
    """Studies of ``query`` (a :func:`_listing`) with their recognition items filled in."""
    rows = session.execute(query).all()
    if not rows:
        return []
    items: dict[str, list[HeldItem]] = defaultdict(list)
    for ref, item_code, report_time in session.execute(
        select(
            RecognitionResult.result_ref,
            RecognitionResult.item_code,
            RecognitionResult.report_time,
        )
        .where(
            RecognitionResult.result_ref.in_([f"study:{row[1]}" for row in rows]),
            # A held row explains a check's verdict; the study is not recognized for its item.
            RecognitionResult.status != HELD,
        )
        .order_by(RecognitionResult.result_ref, RecognitionResult.item_code)
    ):
        items[ref].append(HeldItem(item_code, as_utc(report_time)))
    return [
        StudyEntry(
            study_id=row[0],
            study_instance_uid=row[1],
            patient_key=row[2],
            institution_code=row[3],
            institution_name=row[4],
            accession_number=row[5],
            study_date=row[6] if row[16] else None,
            study_time=row[7],
            started_at=row[8],
            description=row[9],
            series_count=row[10],
            instance_count=row[11],
            size_bytes=row[12],
            modalities=_split(row[13]),
            body_parts=_split(row[14]),
            contrast=bool(row[15]),
            items=tuple(items.get(f"study:{row[1]}", ())),
            not_recognized_reason=row[17],
        )
        for row in rows
    ]


def patient_studies(
    session: Session,
    patient_key: str,
    history_filter: HistoryFilter,
    after: HistoryCursor | None,
    limit: int,
) -> list[StudyEntry]:
    """Up to ``limit`` of the patient's studies, newest first, after ``after``."""
    query = _listing().where(Study.patient_key == patient_key)
    if after is not None:
        query = query.where(
            tuple_(Study.started_at, Study.id) < tuple_(after.started_at, after.study_id)
        )
    if history_filter.from_date is not None:
        query = query.where(Study.study_date >= history_filter.from_date)
    if history_filter.to_date is not None:
        # An undated study is in no date range.
        query = query.where(Study.study_date <= history_filter.to_date, Study.date_source != "")
    if history_filter.institution_code:
        query = query.where(Institution.code == history_filter.institution_code)
    if history_filter.modality:
        query = query.where(
            exists().where(Series.study_id == Study.id, Series.modality == history_filter.modality)
        )
    query = query.order_by(Study.started_at.desc(), Study.id.desc()).limit(limit)
    return _entries(session, query)


def patient_study(session: Session, patient_key: str, study_instance_uid: str) -> StudyEntry | None:
    """The patient's study with that UID; None if there is none, or it is someone else's."""
    query = _listing().where(
        Study.study_instance_uid == study_instance_uid, Study.patient_key == patient_key
    )
    entries = _entries(session, query)
    return entries[0] if entries else None


def study_checked_by(
    session: Session,
    study_instance_uid: str,
    institution_id: int,
    since: dt.datetime,
    check_id: str | None = None,
) -> StudyEntry | None:
    """The study with that UID if a check ``institution_id`` made at or after ``since`` for
    the study's patient recognized this very study (a RECOGNIZABLE line citing it); None
    otherwise (no such study, or no such check: indistinguishable). A check that recognized
    nothing, or another study, opens nothing. ``check_id``: that check only (a study link)."""
    recognized = (
        select(CheckLine.check_id)
        .join(RecognitionCheck, RecognitionCheck.id == CheckLine.check_id)
        .where(
            CheckLine.result_ref == f"study:{study_instance_uid}",
            CheckLine.verdict == Verdict.RECOGNIZABLE.value,
            RecognitionCheck.institution_id == institution_id,
            RecognitionCheck.patient_key == Study.patient_key,
            RecognitionCheck.received_at >= since,
            *([CheckLine.check_id == check_id] if check_id is not None else []),
        )
        .exists()
    )
    entries = _entries(
        session, _listing().where(Study.study_instance_uid == study_instance_uid, recognized)
    )
    return entries[0] if entries else None


def study_patient(session: Session, study_instance_uid: str) -> str | None:
    """The patient key of the study with that UID, or None if there is no such study."""
    return session.scalar(
        select(Study.patient_key).where(Study.study_instance_uid == study_instance_uid)
    )


def study_by_id(session: Session, study_id: int) -> StudyEntry | None:
    """A study by its row id (a share link's study)."""
    entries = _entries(session, _listing().where(Study.id == study_id))
    return entries[0] if entries else None


def _is_current() -> ColumnElement[bool]:
    newer = aliased(Instance)
    return ~exists().where(
        newer.sop_instance_uid == Instance.sop_instance_uid, newer.version > Instance.version
    )


def study_series(session: Session, study_id: int) -> list[SeriesEntry]:
    """The study's series by series number (then UID), counting current versions only."""
    counts = (
        select(
            Instance.series_id.label("series_id"),
            func.count().label("instances"),
            func.sum(Instance.size_bytes).label("size"),
        )
        .join(Series, Series.id == Instance.series_id)
        .where(Series.study_id == study_id, _is_current())
        .group_by(Instance.series_id)
        .subquery()
    )
    rows = session.execute(
        select(
            Series.series_instance_uid,
            Series.series_number,
            Series.modality,
            Series.body_part,
            Series.description,
            Series.contrast,
            func.coalesce(counts.c.instances, 0),
            func.coalesce(counts.c.size, 0),
        )
        .outerjoin(counts, counts.c.series_id == Series.id)
        .where(Series.study_id == study_id)
        .order_by(Series.series_number.is_(None), Series.series_number, Series.series_instance_uid)
    ).all()
    return [
        SeriesEntry(uid, number, modality, body_part, description, bool(contrast), n, int(size))
        for uid, number, modality, body_part, description, contrast, n, size in rows
    ]


def current_files(
    session: Session, study_id: int, series_instance_uid: str = ""
) -> list[InstanceFile]:
    """The current version of every instance of the study (or of one of its series), in
    series then SOP Instance UID order."""
    query = (
        select(
            Instance.sop_instance_uid,
            Series.series_instance_uid,
            Instance.instance_number,
            Instance.version,
            Instance.size_bytes,
            Instance.sha256,
            Instance.object_key,
            Instance.transfer_syntax_uid,
        )
        .join(Series, Series.id == Instance.series_id)
        .where(Series.study_id == study_id, _is_current())
        .order_by(Series.series_instance_uid, Instance.sop_instance_uid)
    )
    if series_instance_uid:
        query = query.where(Series.series_instance_uid == series_instance_uid)
    return [InstanceFile(*row) for row in session.execute(query)]


def studies_checked_by(
    session: Session, institution_id: int, since: dt.datetime, limit: int
) -> list[StudyEntry]:
    """Up to ``limit`` studies that checks ``institution_id`` made at or after ``since``
    recognized (the studies :func:`study_checked_by` opens to it), newest first.

    Driven from the institution's recent checks (``recognition_check.institution_id``), so
    the cost is that of its own day of checks, not of the region's studies."""
    prefix = "study:"
    recognized = (
        select(func.substr(CheckLine.result_ref, len(prefix) + 1))
        .join(RecognitionCheck, RecognitionCheck.id == CheckLine.check_id)
        .where(
            CheckLine.verdict == Verdict.RECOGNIZABLE.value,
            CheckLine.result_ref.startswith(prefix),
            RecognitionCheck.institution_id == institution_id,
            RecognitionCheck.received_at >= since,
        )
    )
    checked_patient = (
        select(RecognitionCheck.id)
        .join(CheckLine, CheckLine.check_id == RecognitionCheck.id)
        .where(
            RecognitionCheck.institution_id == institution_id,
            RecognitionCheck.received_at >= since,
            RecognitionCheck.patient_key == Study.patient_key,
            CheckLine.result_ref == prefix + Study.study_instance_uid,
            CheckLine.verdict == Verdict.RECOGNIZABLE.value,
        )
        .exists()
    )
    query = (
        _listing()
        .where(Study.study_instance_uid.in_(recognized), checked_patient)
        .order_by(Study.started_at.desc(), Study.id.desc())
        .limit(limit)
    )
    return _entries(session, query)
