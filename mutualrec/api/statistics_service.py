"""StatisticsService: savings reports for regulators, as messages or as streamed CSV."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime as dt
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import grpc
from sqlalchemy.exc import SQLAlchemyError

from mutualrec.api.auth import caller
from mutualrec.api.status import abort, abort_with_violations
from mutualrec.runtime import Runtime
from mutualrec.services.outage import is_outage
from mutualrec.statistics.counters import REASONS, Counters, recognition_rate, yuan
from mutualrec.statistics.periods import Granularity, Period, parse_period
from mutualrec.statistics.report import Directory, GroupBy, Row, suppress_small, totals
from mutualrec.storage import statistics_index
from mutualrec.v1 import statistics_pb2, statistics_pb2_grpc
from mutualrec.violations import Violation

Context: TypeAlias = grpc.aio.ServicerContext
T = TypeVar("T")
CSV_CHUNK_BYTES = 64 * 1024

_GRANULARITIES = {
    statistics_pb2.GRANULARITY_DAY: Granularity.DAY,
    statistics_pb2.GRANULARITY_WEEK: Granularity.WEEK,
    statistics_pb2.GRANULARITY_MONTH: Granularity.MONTH,
}
_GRANULARITY_PROTOS = {granularity: proto for proto, granularity in _GRANULARITIES.items()}
_GROUPINGS = {
    statistics_pb2.GROUP_BY_DISTRICT: GroupBy.DISTRICT,
    statistics_pb2.GROUP_BY_ASKING_INSTITUTION: GroupBy.ASKING_INSTITUTION,
    statistics_pb2.GROUP_BY_ISSUING_INSTITUTION: GroupBy.ISSUING_INSTITUTION,
    statistics_pb2.GROUP_BY_ISSUER_ASKER_PAIR: GroupBy.ISSUER_ASKER_PAIR,
    statistics_pb2.GROUP_BY_ITEM: GroupBy.ITEM,
    statistics_pb2.GROUP_BY_CATEGORY: GroupBy.CATEGORY,
}
_GROUPING_PROTOS = {group_by: proto for proto, group_by in _GROUPINGS.items()}


@dataclass(frozen=True, slots=True)
class Report:
    """A computed report, before it becomes a message or CSV."""

    period: Period
    granularity: Granularity
    group_by: GroupBy
    rows: list[Row]
    totals: Counters
    suppressed: int
    names: Directory
    own_institution_counted: bool


def row_proto(
    first: dt.date, last: dt.date, key: str, label: str, c: Counters
) -> statistics_pb2.ReportRow:
    """One row of the reply."""
    row = statistics_pb2.ReportRow(
        period_start=first.isoformat(),
        period_end=last.isoformat(),
        group_key=key,
        group_label=label,
        checks=c.checks,
        items_checked=c.items_checked,
        items_recognizable=c.items_recognizable,
        accepted=c.accepted,
        declined=c.declined,
        recognition_rate=recognition_rate(c.accepted, c.items_recognizable),
        saving=yuan(c.saving_fen),
        items_recognizable_own_institution=c.items_recognizable_own,
        accepted_own_institution=c.accepted_own,
        saving_own_institution=yuan(c.saving_fen_own),
    )
    # Added in place: building DeclineCount messages first and handing them over copies each
    # (a third of the time of a 1,500-row report's reply).
    add = row.declined_by_reason.add
    for reason, count in c.reasons_in_order():
        add(reason=reason, count=count)
    return row


def csv_lines(report: Report) -> list[list[str]]:
    """The report as CSV records: a header, one per row, then the totals."""
    header = [
        "period_start",
        "period_end",
        "group_key",
        "group_label",
        "checks",
        "items_checked",
        "items_recognizable",
        "accepted",
        "declined",
        *(f"declined_{reason.lower()}" for reason in REASONS),
        "recognition_rate",
        "saving_cny",
        "items_recognizable_own_institution",
        "accepted_own_institution",
        "saving_own_institution_cny",
    ]

    def record(first: str, last: str, key: str, label: str, c: Counters) -> list[str]:
        return [
            first,
            last,
            key,
            label,
            str(c.checks),
            str(c.items_checked),
            str(c.items_recognizable),
            str(c.accepted),
            str(c.declined),
            *(str(c.declined_by_reason.get(reason, 0)) for reason in REASONS),
            recognition_rate(c.accepted, c.items_recognizable),
            yuan(c.saving_fen),
            str(c.items_recognizable_own),
            str(c.accepted_own),
            yuan(c.saving_fen_own),
        ]

    lines = [header]
    for row in report.rows:
        lines.append(
            record(
                row.period_start.isoformat(),
                row.period_end.isoformat(),
                row.group_key,
                report.names.label(report.group_by, row.group_key),
                row.counters,
            )
        )
    lines.append(
        record(
            report.period.start.isoformat(),
            report.period.end.isoformat(),
            "TOTAL",
            "total",
            report.totals,
        )
    )
    return lines


class StatisticsService(statistics_pb2_grpc.StatisticsServiceServicer):  # type: ignore[misc]
    """Regulators' reports: rollups of closed days, today's figures live."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # Reports wait their turn (until their deadline) rather than take the CPU that
        # decisions and checks need: a few regulators must not slow every hospital's clicks.
        self._turns = asyncio.Semaphore(runtime.settings.max_concurrent_reports)

    async def GetSavingsReport(
        self, request: statistics_pb2.ReportRequest, context: Context
    ) -> statistics_pb2.SavingsReport:
        """The report as rows and totals."""
        asked = await self._request(request, context)
        async with self._turns:
            reply: statistics_pb2.SavingsReport = await self._compute(
                context, _reply, self.runtime, *asked
            )
        return reply

    async def ExportReport(
        self, request: statistics_pb2.ReportRequest, context: Context
    ) -> AsyncIterator[statistics_pb2.CsvChunk]:
        """The report as CSV, in chunks of at most 64 KiB."""
        asked = await self._request(request, context)
        async with self._turns:
            records: list[list[str]] = await self._compute(
                context, _csv_records, self.runtime, *asked
            )
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        for record in records:
            writer.writerow(record)
            if buffer.tell() >= CSV_CHUNK_BYTES:
                yield statistics_pb2.CsvChunk(data=buffer.getvalue().encode("utf-8"))
                buffer.seek(0)
                buffer.truncate()
        if buffer.tell():
            yield statistics_pb2.CsvChunk(data=buffer.getvalue().encode("utf-8"))

    async def _request(
        self, request: statistics_pb2.ReportRequest, context: Context
    ) -> tuple[GroupBy, Granularity, Period]:
        caller(self.runtime, context)
        violations: list[Violation] = []
        granularity = _GRANULARITIES.get(request.granularity)
        if granularity is None:
            violations.append(
                Violation(
                    "granularity",
                    "GRANULARITY_DAY, GRANULARITY_WEEK or GRANULARITY_MONTH",
                    "UNKNOWN_GRANULARITY",
                )
            )
        group_by = _GROUPINGS.get(request.group_by)
        if group_by is None:
            violations.append(
                Violation(
                    "group_by",
                    "GROUP_BY_DISTRICT, _ASKING_INSTITUTION, _ISSUING_INSTITUTION,"
                    " _ISSUER_ASKER_PAIR, _ITEM or _CATEGORY",
                    "UNKNOWN_GROUP_BY",
                )
            )
        period, period_violations = parse_period(request.from_date, request.to_date, granularity)
        violations.extend(period_violations)
        if violations or period is None or granularity is None or group_by is None:
            await abort_with_violations(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "the report request is not usable",
                violations,
            )
        return group_by, granularity, period

    async def _compute(self, context: Context, work: Callable[..., T], *args: Any) -> T:
        # A report is 50 to 600 ms of CPU: built in a worker thread, so the event loop keeps
        # serving ordering-time calls meanwhile.
        try:
            return await self.runtime.run_blocking(work, *args)
        except (SQLAlchemyError, OSError) as failure:
            if not is_outage(failure):
                raise
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"statistics cannot be read now ({failure.__class__.__name__}); try again",
            )


def _read_report(
    runtime: Runtime, group_by: GroupBy, granularity: Granularity, period: Period
) -> Report:
    """The report, its small groups left out, with the directory (cached reference data) that
    labels its rows."""
    data = runtime.reference.data()
    with runtime.sessions() as session:
        found = statistics_index.report(session, group_by, granularity, period)
    if not data.policy.own_institution_counts:
        found = [
            dataclasses.replace(row, counters=row.counters.cross_institution()) for row in found
        ]
    rows, suppressed = suppress_small(found, runtime.settings.min_group_size)
    return Report(
        period,
        granularity,
        group_by,
        rows,
        totals(rows),
        suppressed,
        data.directory,
        data.policy.own_institution_counts,
    )


def _reply(
    runtime: Runtime, group_by: GroupBy, granularity: Granularity, period: Period
) -> statistics_pb2.SavingsReport:
    report = _read_report(runtime, group_by, granularity, period)
    return statistics_pb2.SavingsReport(
        from_date=period.start.isoformat(),
        to_date=period.end.isoformat(),
        granularity=_GRANULARITY_PROTOS[granularity],
        group_by=_GROUPING_PROTOS[group_by],
        rows=[
            row_proto(
                row.period_start,
                row.period_end,
                row.group_key,
                report.names.label(group_by, row.group_key),
                row.counters,
            )
            for row in report.rows
        ],
        totals=row_proto(period.start, period.end, "TOTAL", "total", report.totals),
        suppressed_rows=report.suppressed,
        min_group_size=runtime.settings.min_group_size,
        generated_at=dt.datetime.now(dt.UTC).isoformat(),
        own_institution_counted=report.own_institution_counted,
    )


def _csv_records(
    runtime: Runtime, group_by: GroupBy, granularity: Granularity, period: Period
) -> list[list[str]]:
    return csv_lines(_read_report(runtime, group_by, granularity, period))
