"""A patient's imaging history: request checking, paging cursors, and what each study is worth.

Paging is by keyset (the last study's sort key), carried in a signed cursor bound to the patient
and to the filters: a cursor altered, replayed by another patient or sent with other filters is
refused instead of silently showing another slice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from mutualrec.imaging.records import HeldItem, HistoryCursor, HistoryFilter
from mutualrec.matching.catalog import Catalog
from mutualrec.security.cursors import InvalidCursor, open_cursor, sign_cursor
from mutualrec.violations import Rejected, Violation

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
_PAGE_AUDIENCE = "mutualrec:page"
_MODALITY_MAX = 16
_CODE_MAX = 32


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """A checked ListStudies request."""

    history_filter: HistoryFilter
    page_size: int
    after: HistoryCursor | None


def _date(value: str, field: str, problems: list[Violation]) -> dt.date | None:
    if not value:
        return None
    # fromisoformat alone would also take "20240402" and week dates.
    if len(value) == 10:
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    problems.append(
        Violation(field, f"{value[:40]!r} is not a date in the form YYYY-MM-DD", "MALFORMED_DATE")
    )
    return None


def _filter_digest(history_filter: HistoryFilter) -> str:
    text = "|".join(
        [
            history_filter.modality,
            str(history_filter.from_date or ""),
            str(history_filter.to_date or ""),
            history_filter.institution_code,
        ]
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def encode_cursor(
    secret: bytes, patient_key: str, history_filter: HistoryFilter, cursor: HistoryCursor
) -> str:
    """The next_page_token resuming after ``cursor``."""
    key = [cursor.started_at.isoformat(), cursor.study_id]
    return sign_cursor(secret, _PAGE_AUDIENCE, patient_key, _filter_digest(history_filter), key)


def _decode_cursor(
    secret: bytes, patient_key: str, history_filter: HistoryFilter, token: str
) -> HistoryCursor:
    """The cursor a page token carries; raises InvalidCursor if it is not ours."""
    key = open_cursor(secret, _PAGE_AUDIENCE, patient_key, _filter_digest(history_filter), token)
    try:
        started_at, study_id = key
        return HistoryCursor(dt.datetime.fromisoformat(started_at), int(study_id))
    except (TypeError, ValueError):
        raise InvalidCursor("the page token is malformed or was altered") from None


def check_query(
    secret: bytes,
    patient_key: str,
    *,
    page_size: int,
    page_token: str,
    modality: str,
    from_date: str,
    to_date: str,
    institution_code: str,
) -> HistoryQuery:
    """A ListStudies request as a query; raises :class:`Rejected` naming every bad field."""
    problems: list[Violation] = []
    if page_size < 0 or page_size > MAX_PAGE_SIZE:
        problems.append(
            Violation(
                "page_size", f"must be between 1 and {MAX_PAGE_SIZE} (0 for 20)", "OUT_OF_RANGE"
            )
        )
    modality = modality.strip().upper()
    if len(modality) > _MODALITY_MAX or not all(c.isalnum() or c == "_" for c in modality):
        problems.append(Violation("modality", "not a DICOM modality code", "MALFORMED_CODE"))
    if len(institution_code) > _CODE_MAX:
        problems.append(
            Violation("institution_code", f"at most {_CODE_MAX} characters", "TOO_LONG")
        )
    start = _date(from_date, "from_date", problems)
    end = _date(to_date, "to_date", problems)
    if start is not None and end is not None and start > end:
        problems.append(Violation("to_date", "is before from_date", "EMPTY_RANGE"))
    history_filter = HistoryFilter(modality, start, end, institution_code.strip())
    after = None
    if page_token and not problems:
        try:
            after = _decode_cursor(secret, patient_key, history_filter, page_token)
        except InvalidCursor as exc:
            problems.append(Violation("page_token", str(exc), "INVALID_PAGE_TOKEN"))
    if problems:
        raise Rejected("the history request is invalid", problems)
    return HistoryQuery(history_filter, page_size or DEFAULT_PAGE_SIZE, after)


@dataclass(frozen=True, slots=True)
class ItemValidity:
    """A catalog item a study counts as, and until when it spares a repeat."""

    item_code: str
    item_name: str
    valid_until: dt.datetime
    within_validity: bool


def validity(items: Iterable[HeldItem], catalog: Catalog, now: dt.datetime) -> list[ItemValidity]:
    """Each held item's validity window under ``catalog``; items the catalog dropped are left
    out, as recognition would no longer cite them."""
    shown = []
    for held in items:
        item = catalog.get(held.item_code)
        if item is None:
            continue
        until = held.report_time + item.validity
        shown.append(ItemValidity(item.code, item.name_zh, until, until >= now))
    return shown
