"""Report periods: ISO weeks from Monday and months, clipped to the period; day bounds."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from mutualrec.statistics.counters import recognition_rate
from mutualrec.statistics.periods import Granularity, Period, day_bounds, full_months, period_of

D = dt.date


def test_weeks_start_on_monday_and_clip_to_the_period() -> None:
    period = Period(D(2026, 11, 18), D(2026, 11, 30))  # a Wednesday to a Monday
    assert period_of(D(2026, 11, 18), Granularity.WEEK, period) == (
        D(2026, 11, 18),
        D(2026, 11, 22),
    )
    assert period_of(D(2026, 11, 23), Granularity.WEEK, period) == (
        D(2026, 11, 23),
        D(2026, 11, 29),
    )
    assert period_of(D(2026, 11, 30), Granularity.WEEK, period) == (
        D(2026, 11, 30),
        D(2026, 11, 30),
    )


def test_months_clip_and_handle_february() -> None:
    period = Period(D(2028, 1, 15), D(2028, 3, 3))
    assert period_of(D(2028, 2, 10), Granularity.MONTH, period) == (D(2028, 2, 1), D(2028, 2, 29))
    assert period_of(D(2028, 1, 20), Granularity.MONTH, period) == (D(2028, 1, 15), D(2028, 1, 31))


def test_a_shanghai_day_starts_at_16_utc_the_day_before() -> None:
    start, end = day_bounds(D(2026, 11, 22))
    assert start == dt.datetime(2026, 11, 21, 16, tzinfo=dt.UTC)
    assert end - start == dt.timedelta(days=1)


def test_rate_has_four_decimals_and_is_empty_without_recognizable_items() -> None:
    assert recognition_rate(2, 3) == "0.6667"
    assert recognition_rate(0, 0) == ""


def test_full_months_are_the_whole_months_inside_the_period() -> None:
    assert full_months(Period(D(2025, 11, 23), D(2026, 11, 22))) == Period(
        D(2025, 12, 1), D(2026, 10, 31)
    )
    assert full_months(Period(D(2028, 2, 1), D(2028, 2, 29))) == Period(
        D(2028, 2, 1), D(2028, 2, 29)
    )
    assert full_months(Period(D(2026, 1, 2), D(2026, 2, 27))) is None
    assert full_months(Period(D(2026, 1, 1), D(2026, 1, 30))) is None


@given(
    st.dates(min_value=D(2020, 1, 1), max_value=D(2030, 12, 31)),
    st.integers(min_value=0, max_value=400),
)
def test_full_months_hold_exactly_the_days_whose_month_is_inside(
    start: dt.date, length: int
) -> None:
    period = Period(start, start + dt.timedelta(days=length))
    months = full_months(period)
    for day in period.days():
        whole = period_of(day, Granularity.MONTH, period)
        month_inside = whole[0].day == 1 and (whole[1] + dt.timedelta(days=1)).day == 1
        in_months = months is not None and months.start <= day <= months.end
        assert in_months == month_inside
