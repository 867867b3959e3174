"""What a check or a decision adds to the statistics, and how tallies add up into report rows.

Statistics are kept as tallies: per grouping, Asia/Shanghai day and group, the counters of
:class:`~mutualrec.statistics.counters.Counters`. A check adds one check, its lines and its
recognizable lines to every group one of its lines falls in (a check counts once per group,
however many of its lines fall there); a decision adds one acceptance with its saving, or one
decline of its reason. Tallies are additive, so a report sums them in SQL instead of reading
every check line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from mutualrec.statistics.counters import Counters
from mutualrec.statistics.periods import Granularity, Period, period_of
from mutualrec.statistics.report import Directory, GroupBy, LineFact, Row, fold_day

MAIN = ""
"""The ``reason`` of the row that holds every counter but the declines."""

UNSPECIFIED = "UNSPECIFIED"


@dataclass(frozen=True, slots=True)
class TallyRow:
    """Counters of one group of one grouping, on one row: the main one or one decline reason."""

    group_by: GroupBy
    group_key: str
    reason: str = MAIN
    checks: int = 0
    items_checked: int = 0
    items_recognizable: int = 0
    accepted: int = 0
    declined: int = 0
    saving_fen: int = 0


def to_fen(amount: str | Decimal) -> int:
    """An amount of yuan as whole fen; refuses fractions of a fen rather than round them."""
    fen = Decimal(amount or "0") * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"{amount} yuan is not a whole number of fen")
    return int(fen)


def counter_rows(group_by: GroupBy, key: str, counters: Counters) -> list[TallyRow]:
    """``counters`` of one group as tally rows: the main row, then one row per decline reason."""
    rows = [
        TallyRow(
            group_by,
            key,
            MAIN,
            checks=counters.checks,
            items_checked=counters.items_checked,
            items_recognizable=counters.items_recognizable,
            accepted=counters.accepted,
            saving_fen=to_fen(counters.saving),
        )
    ]
    rows.extend(
        TallyRow(group_by, key, reason, declined=count)
        for reason, count in sorted(counters.declined_by_reason.items())
        if count
    )
    return rows


def lines_rows(lines: Iterable[LineFact], directory: Directory) -> list[TallyRow]:
    """Tally rows of ``lines`` (a check's, or a whole day's) in every grouping, in key order."""
    folded = fold_day(lines, directory, list(GroupBy))
    return [
        row
        for group_by, groups in folded.items()
        for key in sorted(groups)
        for row in counter_rows(group_by, key, groups[key])
    ]


def decision_rows(line: LineFact, directory: Directory) -> list[TallyRow]:
    """What a new decision on ``line`` adds in every grouping (nothing while undecided)."""
    if line.accepted is None:
        return []
    rows = []
    for group_by in GroupBy:
        key = directory.key(group_by, line)
        if line.accepted:
            rows.append(TallyRow(group_by, key, accepted=1, saving_fen=to_fen(line.booked_saving)))
        else:
            rows.append(TallyRow(group_by, key, line.reason or UNSPECIFIED, declined=1))
    return rows


def buckets(period: Period, granularity: Granularity) -> list[tuple[dt.date, dt.date]]:
    """The (first, last) days of the report's rows over ``period``, in order."""
    seen: dict[dt.date, dt.date] = {}
    for day in period.days():
        first, last = period_of(day, granularity, period)
        seen.setdefault(first, last)
    return sorted(seen.items())


@dataclass(frozen=True, slots=True)
class TallySum:
    """A sum of tally rows of one report row's period, group and reason, as SQL returns it."""

    first: dt.date
    group_key: str
    reason: str
    checks: int
    items_checked: int
    items_recognizable: int
    accepted: int
    declined: int
    saving_fen: int


def report_rows(sums: Iterable[TallySum], spans: Sequence[tuple[dt.date, dt.date]]) -> list[Row]:
    """Tally sums as report rows, ordered by period then key; ``spans`` are the row periods."""
    last_of = dict(spans)
    counters: dict[tuple[dt.date, str], Counters] = {}
    for s in sums:
        c = counters.setdefault((s.first, s.group_key), Counters())
        c.checks += s.checks
        c.items_checked += s.items_checked
        c.items_recognizable += s.items_recognizable
        c.accepted += s.accepted
        c.saving += Decimal(s.saving_fen) / 100
        if s.declined:
            c.declined += s.declined
            reason = s.reason or UNSPECIFIED
            c.declined_by_reason[reason] = c.declined_by_reason.get(reason, 0) + s.declined
    return [
        Row(first, last_of[first], key, counters[first, key]) for first, key in sorted(counters)
    ]
