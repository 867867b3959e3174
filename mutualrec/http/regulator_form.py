"""The regulators' dashboard query: its parameters read into a report query, or the fields that
make it unusable; the quick picks of a period; links that keep the query.

Parameters are the gRPC ReportRequest's field names (``from_date``, ``to_date``, ``granularity``,
``group_by``), so a field violation names the same field over either door; the values are the
``mutualrec report`` command's (``district``, ``asking-institution``, ``month``, ...).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlencode

from mutualrec.services.statistics import ReportQuery, ReportRequest, check_request
from mutualrec.statistics.periods import Granularity
from mutualrec.statistics.report import GroupBy
from mutualrec.violations import Rejected, Violation

GROUPINGS: Mapping[str, GroupBy] = {
    "district": GroupBy.DISTRICT,
    "asking-institution": GroupBy.ASKING_INSTITUTION,
    "issuing-institution": GroupBy.ISSUING_INSTITUTION,
    "pair": GroupBy.ISSUER_ASKER_PAIR,
    "item": GroupBy.ITEM,
    "category": GroupBy.CATEGORY,
}
GRANULARITIES: Mapping[str, Granularity] = {
    "day": Granularity.DAY,
    "week": Granularity.WEEK,
    "month": Granularity.MONTH,
}
QUICK_PICKS = (
    "last-7-days",
    "last-30-days",
    "this-month",
    "last-month",
    "this-year",
    "last-year",
)
DEFAULT_RANGE = "last-30-days"
DEFAULT_GROUPING = "district"
DEFAULT_GRANULARITY = "month"
# A value is echoed back into the form and the links; none of ours is longer than this.
MAX_VALUE = 40


@dataclass(frozen=True, slots=True)
class DashboardForm:
    """The query as the form shows it: quick picks resolved into dates."""

    from_date: str
    to_date: str
    group_by: str
    granularity: str
    lang: str = ""

    def query(self, pick: str = "", **changes: str) -> str:
        """The query string of this form (with ``changes``), for a link; with ``pick``, the
        quick pick in place of the dates."""
        form = replace(self, **changes)
        fields = {
            "from_date": "" if pick else form.from_date,
            "to_date": "" if pick else form.to_date,
            "range": pick,
            "group_by": form.group_by,
            "granularity": form.granularity,
            "lang": form.lang,
        }
        return urlencode({name: value for name, value in fields.items() if value})


def quick_pick(name: str, today: dt.date) -> tuple[dt.date, dt.date] | None:
    """The (first, last) day a quick pick names on the region's calendar day ``today``; None
    for a name that is not one. Periods end today: this month and this year so far."""
    if name == "last-7-days":
        return today - dt.timedelta(days=6), today
    if name == "last-30-days":
        return today - dt.timedelta(days=29), today
    if name == "this-month":
        return today.replace(day=1), today
    if name == "last-month":
        last = today.replace(day=1) - dt.timedelta(days=1)
        return last.replace(day=1), last
    if name == "this-year":
        return today.replace(month=1, day=1), today
    if name == "last-year":
        year = today.year - 1
        return dt.date(year, 1, 1), dt.date(year, 12, 31)
    return None


def read_form(params: Mapping[str, str], today: dt.date) -> tuple[DashboardForm, list[Violation]]:
    """The form ``params`` fill (defaults where one is left out: the last 30 days by district
    and month), and what is wrong with it. ``range`` (a quick pick) stands for both dates."""
    violations: list[Violation] = []
    values = {name: params.get(name, "")[:MAX_VALUE] for name in params}
    from_date, to_date = values.get("from_date"), values.get("to_date")
    picked = values.get("range")
    if picked is None and from_date is None and to_date is None:
        picked = DEFAULT_RANGE
    if picked is not None:
        dates = quick_pick(picked, today)
        if dates is None:
            violations.append(
                Violation("range", f"one of {', '.join(QUICK_PICKS)}", "UNKNOWN_RANGE")
            )
            if from_date is None and to_date is None:
                # The form shows the default period rather than blame dates nobody sent.
                dates = quick_pick(DEFAULT_RANGE, today)
        if dates is not None:
            from_date, to_date = dates[0].isoformat(), dates[1].isoformat()
    group_by = values.get("group_by", DEFAULT_GROUPING)
    if group_by not in GROUPINGS:
        violations.append(
            Violation("group_by", f"one of {', '.join(GROUPINGS)}", "UNKNOWN_GROUP_BY")
        )
    granularity = values.get("granularity", DEFAULT_GRANULARITY)
    if granularity not in GRANULARITIES:
        violations.append(
            Violation("granularity", f"one of {', '.join(GRANULARITIES)}", "UNKNOWN_GRANULARITY")
        )
    form = DashboardForm(
        from_date or "",
        to_date if to_date is not None else today.isoformat(),
        group_by,
        granularity,
        values.get("lang", ""),
    )
    return form, violations


def report_query(form: DashboardForm, violations: list[Violation]) -> ReportQuery:
    """The report ``form`` asks for; raises :class:`Rejected` naming every unusable field
    (``violations`` of the form, then the period's as the statistics service judges it)."""
    try:
        query = check_request(
            ReportRequest(
                # Stand-ins for a grouping or granularity already refused: the period is judged
                # all the same (a month never makes a period too fine), so one answer names
                # every field to fix.
                group_by=GROUPINGS.get(form.group_by, GroupBy.DISTRICT),
                granularity=GRANULARITIES.get(form.granularity, Granularity.MONTH),
                from_date=form.from_date,
                to_date=form.to_date,
            )
        )
    except Rejected as rejected:
        raise Rejected(
            "the report request is not usable", [*violations, *rejected.violations]
        ) from None
    if violations:
        raise Rejected("the report request is not usable", violations)
    return query
