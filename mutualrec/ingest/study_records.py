"""A held study as the region reports it back: what a gateway, a history view or a recognition
row shows of it. Plain values, read from the index and handed to every door."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StudyOverview:
    """A study as the region holds it: what a gateway or a history view shows."""

    study_instance_uid: str
    institution_code: str
    accession_number: str
    # None when the instances carry no date: such a study is never recognized.
    study_date: dt.date | None
    study_time: dt.time | None
    description: str
    performed_item_code: str
    modalities: list[str]
    body_parts: list[str]
    contrast: bool
    series_count: int
    instance_count: int
    size_bytes: int
    # "" | "confirmed" | "overruled": an administrator's word on a contradicted declared item.
    declared_item_review: str = ""
    # Why the study is not recognized; empty when it is.
    not_recognized_reason: str = ""


@dataclass(frozen=True, slots=True)
class CurrentInstance:
    """The current (newest) version of one SOP instance of a study."""

    sop_instance_uid: str
    series_instance_uid: str
    version: int
    size_bytes: int
    sha256: str
