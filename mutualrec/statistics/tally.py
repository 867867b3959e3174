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

from mutualrec.matching.decisions import DeclineReason
from mutualrec.money import to_fen
from mutualrec.statistics.counters import Counters
from mutualrec.statistics.periods import Granularity, Period, period_of
from mutualrec.statistics.report import Directory, GroupBy, LineFact, Row, fold_day

UNSPECIFIED = "UNSPECIFIED"
# The reasons a decline is tallied under, each a counter of its own (a column, not a row: a
# year of day tallies is then one row per day and group). A reason the service does not know
# (there is none today: decisions take a DeclineReason) counts as unspecified.
TALLY_REASONS = (*(reason.value for reason in DeclineReason), UNSPECIFIED)


def reason_column(reason: str) -> str:
    """The tally column of a decline reason."""
    return "declined_" + (reason if reason in TALLY_REASONS else UNSPECIFIED).lower()


REASON_COLUMNS = tuple(reason_column(reason) for reason in TALLY_REASONS)


@dataclass(frozen=True, slots=True)
class TallyRow:
    """What a check or a decision (or a whole day) adds to one group of one grouping."""

    group_by: GroupBy
    group_key: str
    checks: int = 0
    items_checked: int = 0
    items_recognizable: int = 0
    accepted: int = 0
    saving_fen: int = 0
    # Declines by reason (a DeclineReason value or UNSPECIFIED); ``declined`` is their sum.
    declined_by_reason: tuple[tuple[str, int], ...] = ()
    # The asking institution's own results among the recognizable, accepted and saved.
    items_recognizable_own: int = 0
    accepted_own: int = 0
    saving_fen_own: int = 0

    @property
    def declined(self) -> int:
        """Every decline, whatever its reason."""
        return sum(count for _, count in self.declined_by_reason)


@dataclass(frozen=True, slots=True)
class DayDeltas:
    """What one check or decision adds to the statistics: its tally rows, on the Asia/Shanghai
    day they count for."""

    day: dt.date
    rows: tuple[TallyRow, ...]


def counter_row(group_by: GroupBy, key: str, counters: Counters) -> TallyRow:
    """``counters`` of one group as a tally row."""
    return TallyRow(
        group_by,
        key,
        checks=counters.checks,
        items_checked=counters.items_checked,
        items_recognizable=counters.items_recognizable,
        accepted=counters.accepted,
        saving_fen=counters.saving_fen,
        declined_by_reason=tuple(
            sorted((r, n) for r, n in counters.declined_by_reason.items() if n)
        ),
        items_recognizable_own=counters.items_recognizable_own,
        accepted_own=counters.accepted_own,
        saving_fen_own=counters.saving_fen_own,
    )


def lines_rows(lines: Iterable[LineFact], directory: Directory) -> list[TallyRow]:
    """Tally rows of ``lines`` (a check's, or a whole day's) in every grouping, in key order."""
    folded = fold_day(lines, directory, list(GroupBy))
    return [
        counter_row(group_by, key, groups[key])
        for group_by, groups in folded.items()
        for key in sorted(groups)
    ]


def decision_rows(line: LineFact, directory: Directory) -> list[TallyRow]:
    """What a new decision on ``line`` adds in every grouping (nothing while undecided)."""
    if line.accepted is None:
        return []
    rows = []
    for group_by in GroupBy:
        key = directory.key(group_by, line)
        if line.accepted:
            saving = to_fen(line.booked_saving)
            rows.append(
                TallyRow(
                    group_by,
                    key,
                    accepted=1,
                    saving_fen=saving,
                    accepted_own=int(line.own),
                    saving_fen_own=saving if line.own else 0,
                )
            )
        else:
            rows.append(
                TallyRow(group_by, key, declined_by_reason=((line.reason or UNSPECIFIED, 1),))
            )
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
    """A sum of tally rows of one report row's period and group, as SQL returns it."""

    first: dt.date
    group_key: str
    checks: int
    items_checked: int
    items_recognizable: int
    accepted: int
    saving_fen: int
    # Declines per reason, in TALLY_REASONS order.
    declines: tuple[int, ...]
    items_recognizable_own: int = 0
    accepted_own: int = 0
    saving_fen_own: int = 0


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
        c.saving_fen += s.saving_fen
        c.items_recognizable_own += s.items_recognizable_own
        c.accepted_own += s.accepted_own
        c.saving_fen_own += s.saving_fen_own
        for reason, count in zip(TALLY_REASONS, s.declines, strict=True):
            if count:
                c.declined += count
                c.declined_by_reason[reason] = c.declined_by_reason.get(reason, 0) + count
    return [
        Row(first, last_of[first], key, counters[first, key]) for first, key in sorted(counters)
    ]
