"""Facts for the recognition tests: institutions, marks and results with readable defaults."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from mutualrec.matching.catalog import ItemCategory
from mutualrec.matching.facts import (
    InstitutionFacts,
    InstitutionLevel,
    Qualification,
    ResultFacts,
    ResultStatus,
    Scope,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
LONG_AGO = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

ISSUER = InstitutionFacts(
    "CQ-0001", "重庆市第一人民医院", InstitutionLevel.TERTIARY, "重庆市", "川渝"
)
ASKER = InstitutionFacts(
    "CQ-0002", "重庆医科大学附属第二医院", InstitutionLevel.TERTIARY, "重庆市", "川渝"
)


def shanghai(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> dt.datetime:
    """A Beijing-time datetime."""
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)


def mark(
    institution: InstitutionFacts = ISSUER,
    *,
    item_code: str | None = None,
    category: ItemCategory | None = None,
    scope: Scope = Scope.CITY,
    valid_from: dt.datetime = LONG_AGO,
    valid_until: dt.datetime | None = None,
) -> Qualification:
    """An HR mark; for the whole item's category unless an item code is given."""
    if item_code is None and category is None:
        category = ItemCategory.IMAGING
    return Qualification(institution.code, item_code, category, scope, valid_from, valid_until)


ALL_MARKS = (mark(category=ItemCategory.IMAGING), mark(category=ItemCategory.LAB))


def result(
    report_time: dt.datetime,
    *,
    item_code: str = "IMG-CT-CHEST",
    ref: str = "R1",
    version: int = 1,
    status: ResultStatus = ResultStatus.FINAL,
    issuer: InstitutionFacts = ISSUER,
) -> ResultFacts:
    """One version of a result."""
    return ResultFacts(ref, version, item_code, status, report_time, issuer)
