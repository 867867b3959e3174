"""A patient's imaging history as the index holds it and the layers pass it: studies, series,
the files of their current instances, and how a listing is narrowed and paged."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """What a patient narrowed their history to; empty fields do not filter."""

    modality: str = ""
    from_date: dt.date | None = None
    to_date: dt.date | None = None
    institution_code: str = ""


@dataclass(frozen=True, slots=True)
class HistoryCursor:
    """Where the previous page ended: the sort key of its last study."""

    started_at: dt.datetime
    study_id: int


@dataclass(frozen=True, slots=True)
class HeldItem:
    """A catalog item a study counts as, and the report time its validity runs from."""

    item_code: str
    report_time: dt.datetime


@dataclass(frozen=True, slots=True)
class StudyEntry:
    """A study of the patient's history as the index holds it."""

    study_id: int
    study_instance_uid: str
    patient_key: str
    institution_code: str
    institution_name: str
    accession_number: str
    # None when the instances carry no date (such a study is never recognized).
    study_date: dt.date | None
    study_time: dt.time | None
    started_at: dt.datetime
    description: str
    series_count: int
    instance_count: int
    size_bytes: int
    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    contrast: bool = False
    items: tuple[HeldItem, ...] = ()
    # Why the study is not recognized; empty when it is.
    not_recognized_reason: str = ""


@dataclass(frozen=True, slots=True)
class SeriesEntry:
    """A series of a study with its current instance count and size."""

    series_instance_uid: str
    series_number: int | None
    modality: str
    body_part: str
    description: str
    contrast: bool
    instance_count: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class InstanceFile:
    """The current version of one instance: where its bytes are and what they hash to."""

    sop_instance_uid: str
    series_instance_uid: str
    instance_number: int | None
    version: int
    size_bytes: int
    sha256: str
    object_key: str
    # As ingest read it from the file's meta header.
    transfer_syntax_uid: str = ""
