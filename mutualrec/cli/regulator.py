"""Regulators' command: the savings report (with a regulator key), as a table, CSV or a chart."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mutualrec.cli import connection
from mutualrec.cli.options import client_options, sub
from mutualrec.config import ClientSettings

_REPORT_GROUPS = {
    "district": "GROUP_BY_DISTRICT",
    "asking-institution": "GROUP_BY_ASKING_INSTITUTION",
    "issuing-institution": "GROUP_BY_ISSUING_INSTITUTION",
    "pair": "GROUP_BY_ISSUER_ASKER_PAIR",
    "item": "GROUP_BY_ITEM",
    "category": "GROUP_BY_CATEGORY",
}


def register(commands: Any, client: ClientSettings) -> None:
    """Add ``report`` to the top-level commands."""
    report = sub(
        commands,
        "report",
        help="savings statistics (regulator key): a table in the terminal, CSV, or a PNG chart",
    )
    report.add_argument(
        "--from",
        dest="from_date",
        required=True,
        metavar="DATE",
        help="first day: YYYY-MM-DD, today, or today-N (N days ago, Asia/Shanghai)",
    )
    report.add_argument(
        "--to", dest="to_date", default="today", metavar="DATE", help="last day (default: today)"
    )
    report.add_argument("--by", required=True, choices=list(_REPORT_GROUPS))
    report.add_argument("--granularity", default="month", choices=["day", "week", "month"])
    report.add_argument("--format", default="table", choices=["table", "csv", "png"])
    report.add_argument(
        "--out",
        metavar="FILE.png",
        help="where --format png writes the chart (savings and recognition rate per period, "
        "top 8 groups by saving and the rest as one line)",
    )
    client_options(report, client)
    report.set_defaults(run=_report)


def _report(args: argparse.Namespace) -> int:
    from mutualrec.client.dates import region_today, report_date
    from mutualrec.v1 import statistics_pb2, statistics_pb2_grpc

    today = region_today()
    request = statistics_pb2.ReportRequest(
        from_date=report_date(args.from_date, today),
        to_date=report_date(args.to_date, today),
        granularity=f"GRANULARITY_{args.granularity.upper()}",
        group_by=_REPORT_GROUPS[args.by],
    )
    if args.format == "png" and not args.out:
        raise ValueError("--format png needs --out FILE.png")
    if args.format != "png" and args.out:
        raise ValueError("--out goes with --format png")
    from mutualrec.client.upload import auth_metadata

    metadata = auth_metadata(connection.api_key(args))
    with connection.channel(args) as channel:
        stub = statistics_pb2_grpc.StatisticsServiceStub(channel)
        if args.format == "csv":
            for chunk in stub.ExportReport(request, metadata=metadata, timeout=300):
                sys.stdout.write(chunk.data.decode("utf-8"))
            return 0
        report = stub.GetSavingsReport(request, metadata=metadata, timeout=300)
    if args.format == "png":
        # matplotlib only here: importing it costs the other commands' start-up time.
        from mutualrec.client.report_chart import write_chart

        chart = write_chart(report, Path(args.out))
        print(args.out)
        for drawn, named in chart.replaced_labels:
            print(f"    {drawn}: {named}")
        return 0
    from mutualrec.client.table import LEFT, RIGHT, render

    def cells(row: statistics_pb2.ReportRow, period: str, group: str) -> tuple[str, ...]:
        return (
            period,
            group,
            str(row.checks),
            str(row.items_checked),
            str(row.items_recognizable),
            str(row.accepted),
            str(row.declined),
            row.recognition_rate or "-",
            row.saving,
        )

    rows = [
        cells(
            row,
            row.period_start
            if row.period_start == row.period_end
            else f"{row.period_start}..{row.period_end}",
            row.group_label or row.group_key or "-",
        )
        for row in report.rows
    ]
    header = ("period", "group", "checks", "items", "recog.", "acc.", "decl.", "rate", "saving")
    total = cells(report.totals, f"{report.from_date}..{report.to_date}", "total")
    for line in render(header, rows, (LEFT, LEFT, *[RIGHT] * 7), footer=[total]):
        print(line)
    if not report.rows:
        print(f"no checks from {report.from_date} to {report.to_date}")
    if report.suppressed_rows:
        print(
            f"{report.suppressed_rows} rows of groups under {report.min_group_size} checks left out"
        )
    return 0
