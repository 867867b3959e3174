"""Savings reports for regulators: the request checked, the report summed from the tallies, and
as CSV records. A regulator sees aggregates only: groups below the minimum size are left out."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from mutualrec.services.outage import unavailable_on_outage
from mutualrec.services.reference import ReferenceData
from mutualrec.statistics.csv_export import csv_records
from mutualrec.statistics.periods import Granularity, Period, parse_period
from mutualrec.statistics.report import GroupBy, SavingsReport, suppress_small, totals
from mutualrec.storage import statistics_index
from mutualrec.violations import Rejected, Violation


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """A report as asked for. ``group_by`` and ``granularity`` are None when the caller named
    one the service does not know; the dates are as written (YYYY-MM-DD)."""

    group_by: GroupBy | None
    granularity: Granularity | None
    from_date: str
    to_date: str


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """A checked report request."""

    group_by: GroupBy
    granularity: Granularity
    period: Period


def check_request(request: ReportRequest) -> ReportQuery:
    """The request as a query; raises :class:`Rejected` naming every unusable field. Cheap:
    a door calls it before the report waits for its turn."""
    violations: list[Violation] = []
    if request.granularity is None:
        violations.append(
            Violation(
                "granularity",
                "GRANULARITY_DAY, GRANULARITY_WEEK or GRANULARITY_MONTH",
                "UNKNOWN_GRANULARITY",
            )
        )
    if request.group_by is None:
        violations.append(
            Violation(
                "group_by",
                "GROUP_BY_DISTRICT, _ASKING_INSTITUTION, _ISSUING_INSTITUTION,"
                " _ISSUER_ASKER_PAIR, _ITEM or _CATEGORY",
                "UNKNOWN_GROUP_BY",
            )
        )
    period, period_violations = parse_period(
        request.from_date, request.to_date, request.granularity
    )
    violations.extend(period_violations)
    if violations or period is None or request.granularity is None or request.group_by is None:
        raise Rejected("the report request is not usable", violations)
    return ReportQuery(request.group_by, request.granularity, period)


class Statistics:
    """Reports from the tallies; blocking (50 to 600 ms of CPU for a large one), so doors run
    them on worker threads."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        reference: Callable[[], ReferenceData],
        min_group_size: int,
    ) -> None:
        self._sessions = sessions
        # Labels of groups and the region's policy, from the cache the checks use too.
        self._reference = reference
        self._min_group_size = min_group_size

    def report(self, query: ReportQuery) -> SavingsReport:
        """The report, its small groups left out; :class:`Unavailable` when the index cannot
        be read."""
        with unavailable_on_outage("statistics cannot be read now"):
            data = self._reference()
            with self._sessions() as session:
                found = statistics_index.report(
                    session, query.group_by, query.granularity, query.period
                )
        own_counted = data.policy.own_institution_counts
        if not own_counted:
            found = [
                dataclasses.replace(row, counters=row.counters.cross_institution()) for row in found
            ]
        rows, suppressed = suppress_small(found, self._min_group_size)
        return SavingsReport(
            query.period,
            query.granularity,
            query.group_by,
            rows,
            totals(rows),
            suppressed,
            self._min_group_size,
            data.directory,
            own_counted,
        )

    def csv(self, query: ReportQuery) -> list[list[str]]:
        """The report as CSV records (header, rows, totals)."""
        return csv_records(self.report(query))
