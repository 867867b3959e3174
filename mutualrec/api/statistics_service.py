"""StatisticsService: savings reports for regulators, as messages or as streamed CSV."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc

from mutualrec.api.auth import caller
from mutualrec.money import yuan
from mutualrec.runtime import Runtime
from mutualrec.services.statistics import ReportQuery, ReportRequest, check_request
from mutualrec.statistics.counters import Counters, recognition_rate
from mutualrec.statistics.csv_export import csv_chunks
from mutualrec.statistics.periods import Granularity
from mutualrec.statistics.report import GroupBy
from mutualrec.v1 import statistics_pb2, statistics_pb2_grpc

Context: TypeAlias = grpc.aio.ServicerContext
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


class StatisticsService(statistics_pb2_grpc.StatisticsServiceServicer):  # type: ignore[misc]
    """Regulators' reports: rollups of closed days, today's figures live."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.statistics = runtime.statistics
        # Reports wait their turn (until their deadline), with the dashboard's.
        self._turns = runtime.report_turns

    async def GetSavingsReport(
        self, request: statistics_pb2.ReportRequest, context: Context
    ) -> statistics_pb2.SavingsReport:
        """The report as rows and totals."""
        query = self._query(request, context)
        async with self._turns:
            # A report is 50 to 600 ms of CPU, its message too: built in a worker thread, so
            # the event loop keeps serving ordering-time calls meanwhile.
            return await self.runtime.run_blocking(self._reply, query)

    async def ExportReport(
        self, request: statistics_pb2.ReportRequest, context: Context
    ) -> AsyncIterator[statistics_pb2.CsvChunk]:
        """The report as CSV, in chunks of at most 64 KiB."""
        query = self._query(request, context)
        async with self._turns:
            records = await self.runtime.run_blocking(self.statistics.csv, query)
        for text in csv_chunks(records, CSV_CHUNK_BYTES):
            yield statistics_pb2.CsvChunk(data=text.encode("utf-8"))

    def _query(self, request: statistics_pb2.ReportRequest, context: Context) -> ReportQuery:
        caller(self.runtime, context)
        return check_request(
            ReportRequest(
                group_by=_GROUPINGS.get(request.group_by),
                granularity=_GRANULARITIES.get(request.granularity),
                from_date=request.from_date,
                to_date=request.to_date,
            )
        )

    def _reply(self, query: ReportQuery) -> statistics_pb2.SavingsReport:
        report = self.statistics.report(query)
        period, group_by = report.period, report.group_by
        return statistics_pb2.SavingsReport(
            from_date=period.start.isoformat(),
            to_date=period.end.isoformat(),
            granularity=_GRANULARITY_PROTOS[report.granularity],
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
            min_group_size=report.min_group_size,
            generated_at=dt.datetime.now(dt.UTC).isoformat(),
            own_institution_counted=report.own_institution_counted,
        )
