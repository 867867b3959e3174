"""Report periods: Asia/Shanghai calendar days, ISO weeks from Monday, calendar months."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from mutualrec.localtime import LOCAL_ZONE
from mutualrec.violations import Violation

MAX_DAYS = 366
# A day-by-day report longer than this is a spreadsheet nobody reads: ask for weeks or months.
MAX_DAYS_BY_DAY = 92


class Granularity(enum.Enum):
    """How a report's period is cut into rows."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class Period:
    """A report's period: first and last calendar day, both inclusive."""

    start: dt.date
    end: dt.date

    def days(self) -> list[dt.date]:
        """Every day of the period, in order."""
        return [self.start + dt.timedelta(days=n) for n in range((self.end - self.start).days + 1)]


def today(now: dt.datetime | None = None) -> dt.date:
    """The current calendar day in Asia/Shanghai."""
    return (now or dt.datetime.now(dt.UTC)).astimezone(LOCAL_ZONE).date()


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The instants (UTC) a Shanghai calendar day starts and ends (end exclusive)."""
    start = dt.datetime.combine(day, dt.time(), LOCAL_ZONE)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), LOCAL_ZONE)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def parse_period(
    from_text: str, to_text: str, granularity: Granularity | None
) -> tuple[Period | None, list[Violation]]:
    """The period a request names, or the violations that make it unusable."""
    violations: list[Violation] = []
    dates: dict[str, dt.date] = {}
    for field, text in (("from_date", from_text), ("to_date", to_text)):
        try:
            if len(text.strip()) != 10:
                raise ValueError(text)
            dates[field] = dt.date.fromisoformat(text.strip())
        except ValueError:
            violations.append(
                Violation(field, f"a calendar day YYYY-MM-DD, got {text!r}", "BAD_DATE")
            )
    if violations:
        return None, violations
    start, end = dates["from_date"], dates["to_date"]
    if end < start:
        return None, [
            Violation("to_date", f"{end} is before from_date {start}", "END_BEFORE_START")
        ]
    length = (end - start).days + 1
    if length > MAX_DAYS:
        return None, [
            Violation("to_date", f"the period spans {length} days; at most {MAX_DAYS}", "TOO_LONG")
        ]
    if granularity is Granularity.DAY and length > MAX_DAYS_BY_DAY:
        return None, [
            Violation(
                "granularity",
                f"day rows cover at most {MAX_DAYS_BY_DAY} days, the period has {length}:"
                " ask for weeks or months",
                "GRANULARITY_TOO_FINE",
            )
        ]
    return Period(start, end), []


def period_of(day: dt.date, granularity: Granularity, period: Period) -> tuple[dt.date, dt.date]:
    """The (first, last) day of the row ``day`` falls in, clipped to ``period``."""
    if granularity is Granularity.DAY:
        return day, day
    if granularity is Granularity.WEEK:
        first = day - dt.timedelta(days=day.weekday())
        last = first + dt.timedelta(days=6)
    else:
        first = day.replace(day=1)
        following = (first + dt.timedelta(days=32)).replace(day=1)
        last = following - dt.timedelta(days=1)
    return max(first, period.start), min(last, period.end)


def full_months(period: Period) -> Period | None:
    """The calendar months wholly inside ``period``, as one period; None when there is none."""
    start = period.start if period.start.day == 1 else _next_month(period.start)
    ends_a_month = _next_month(period.end) - dt.timedelta(days=1) == period.end
    end = period.end if ends_a_month else period.end.replace(day=1) - dt.timedelta(days=1)
    return Period(start, end) if start <= end else None


def _next_month(day: dt.date) -> dt.date:
    """The first day of the month after ``day``'s."""
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
