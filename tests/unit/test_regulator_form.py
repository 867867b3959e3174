"""The dashboard's query: quick picks on the region's calendar, defaults, and every unusable
field named at once."""

from __future__ import annotations

import datetime as dt

import pytest

from mutualrec.http.regulator_form import (
    QUICK_PICKS,
    DashboardForm,
    quick_pick,
    read_form,
    report_query,
)
from mutualrec.http.regulator_strings import STRINGS, choose_language
from mutualrec.matching.language import Language
from mutualrec.statistics.periods import Granularity, Period
from mutualrec.statistics.report import GroupBy
from mutualrec.violations import Rejected

# Fixed days: quick picks are pure functions of the day they are asked on.
LEAP_DAY = dt.date(2028, 2, 29)
NEW_YEAR = dt.date(2027, 1, 1)


@pytest.mark.parametrize(
    ("name", "today", "first", "last"),
    [
        ("last-7-days", LEAP_DAY, dt.date(2028, 2, 23), LEAP_DAY),
        ("last-30-days", LEAP_DAY, dt.date(2028, 1, 31), LEAP_DAY),
        ("this-month", LEAP_DAY, dt.date(2028, 2, 1), LEAP_DAY),
        ("last-month", LEAP_DAY, dt.date(2028, 1, 1), dt.date(2028, 1, 31)),
        ("last-month", NEW_YEAR, dt.date(2026, 12, 1), dt.date(2026, 12, 31)),
        ("this-year", NEW_YEAR, NEW_YEAR, NEW_YEAR),
        ("last-year", LEAP_DAY, dt.date(2027, 1, 1), dt.date(2027, 12, 31)),
    ],
)
def test_quick_picks(name: str, today: dt.date, first: dt.date, last: dt.date) -> None:
    assert quick_pick(name, today) == (first, last)


def test_every_quick_pick_is_a_period_the_report_takes() -> None:
    for name in QUICK_PICKS:
        form, violations = read_form({"range": name}, dt.date(2029, 12, 31))
        report_query(form, violations)  # raises if not


def test_no_parameters_are_the_last_30_days_by_district_and_month() -> None:
    form, violations = read_form({}, LEAP_DAY)
    assert violations == []
    query = report_query(form, violations)
    assert query.period == Period(dt.date(2028, 1, 31), LEAP_DAY)
    assert (query.group_by, query.granularity) == (GroupBy.DISTRICT, Granularity.MONTH)


def test_the_to_date_defaults_to_today() -> None:
    form, _ = read_form({"from_date": "2028-02-01", "group_by": "pair"}, LEAP_DAY)
    assert (form.from_date, form.to_date, form.group_by) == ("2028-02-01", "2028-02-29", "pair")


def test_every_unusable_field_is_named_at_once() -> None:
    form, violations = read_form(
        {"from_date": "2028-13-01", "to_date": "x", "group_by": "ward", "granularity": "hour"},
        LEAP_DAY,
    )
    with pytest.raises(Rejected) as rejected:
        report_query(form, violations)
    assert {(v.field, v.reason) for v in rejected.value.violations} == {
        ("group_by", "UNKNOWN_GROUP_BY"),
        ("granularity", "UNKNOWN_GRANULARITY"),
        ("from_date", "BAD_DATE"),
        ("to_date", "BAD_DATE"),
    }


def test_an_unknown_quick_pick_is_named() -> None:
    form, violations = read_form({"range": "last-decade"}, LEAP_DAY)
    with pytest.raises(Rejected) as rejected:
        report_query(form, violations)
    assert [(v.field, v.reason) for v in rejected.value.violations] == [("range", "UNKNOWN_RANGE")]


def test_links_keep_the_query() -> None:
    form = DashboardForm("2028-02-01", "2028-02-29", "item", "week", "en")
    assert form.query() == (
        "from_date=2028-02-01&to_date=2028-02-29&group_by=item&granularity=week&lang=en"
    )
    assert form.query(pick="this-year", lang="") == "range=this-year&group_by=item&granularity=week"


def test_language_from_the_parameter_then_the_browser() -> None:
    assert choose_language("en", "zh-CN") is Language.EN
    assert choose_language("", "en-US,en;q=0.9") is Language.EN
    assert choose_language("fr", "de") is Language.ZH
    # Every string is written in both languages.
    assert all(zh and en for zh, en in STRINGS.values())
