"""A savings report as CSV records: the columns a regulator's spreadsheet reads, money in yuan."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from mutualrec.money import yuan
from mutualrec.statistics.counters import REASONS, Counters, recognition_rate
from mutualrec.statistics.report import SavingsReport

HEADER = [
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


def _record(first: str, last: str, key: str, label: str, c: Counters) -> list[str]:
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


def csv_records(report: SavingsReport) -> list[list[str]]:
    """The report as CSV records: the header, one per row, then the totals."""
    lines = [list(HEADER)]
    for row in report.rows:
        lines.append(
            _record(
                row.period_start.isoformat(),
                row.period_end.isoformat(),
                row.group_key,
                report.names.label(report.group_by, row.group_key),
                row.counters,
            )
        )
    lines.append(
        _record(
            report.period.start.isoformat(),
            report.period.end.isoformat(),
            "TOTAL",
            "total",
            report.totals,
        )
    )
    return lines


def csv_chunks(records: Iterable[list[str]], chunk_chars: int) -> Iterator[str]:
    """``records`` as CSV text (RFC 4180: CRLF line ends, quoted where needed), in pieces of
    about ``chunk_chars`` characters, whole lines each: every door exports the same bytes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for record in records:
        writer.writerow(record)
        if buffer.tell() >= chunk_chars:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
