"""Groupings, how one check line falls into a group, and how day figures add up into rows."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mutualrec.statistics.counters import Counters
from mutualrec.statistics.periods import Granularity, Period, period_of

NO_ISSUER_LABEL = "(no result cited)"
NOT_AN_ITEM_LABEL = "(not a recognized item)"


class GroupBy(enum.Enum):
    """How a report groups check lines."""

    DISTRICT = "district"
    ASKING_INSTITUTION = "asking_institution"
    ISSUING_INSTITUTION = "issuing_institution"
    ISSUER_ASKER_PAIR = "issuer_asker_pair"
    ITEM = "item"
    CATEGORY = "category"


@dataclass(frozen=True, slots=True)
class InstitutionInfo:
    """What a report shows of an institution."""

    code: str
    name: str
    district: str


@dataclass(frozen=True, slots=True)
class LineFact:
    """One check line and its decision, without anything that names the patient."""

    check_id: str
    asker_id: int
    issuer_id: int | None
    item_code: str
    verdict: str
    accepted: bool | None
    reason: str
    booked_saving: str

    @property
    def own(self) -> bool:
        """Whether the asking institution issued the result the line cites."""
        return self.issuer_id == self.asker_id


@dataclass(frozen=True, slots=True)
class Directory:
    """Institutions by id and item categories by code, to key and label groups."""

    institutions: Mapping[int, InstitutionInfo]
    categories: Mapping[str, str]
    item_names: Mapping[str, str] = field(default_factory=dict)
    # Institution names by code, filled on first use: a report labels every row.
    _names_by_code: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def _code(self, institution_id: int | None) -> str:
        if institution_id is None:
            return ""
        info = self.institutions.get(institution_id)
        return info.code if info else f"#{institution_id}"

    def category(self, item_code: str) -> str:
        """``lab`` or ``imaging`` (by the catalog; by the code's prefix for retired items)."""
        if not item_code:
            return ""
        known = self.categories.get(item_code)
        if known:
            return known
        return "lab" if item_code.startswith("LAB-") else "imaging"

    def key(self, group_by: GroupBy, line: LineFact) -> str:
        """The group ``line`` falls in."""
        if group_by is GroupBy.DISTRICT:
            info = self.institutions.get(line.asker_id)
            return info.district if info else ""
        if group_by is GroupBy.ASKING_INSTITUTION:
            return self._code(line.asker_id)
        if group_by is GroupBy.ISSUING_INSTITUTION:
            return self._code(line.issuer_id)
        if group_by is GroupBy.ISSUER_ASKER_PAIR:
            return f"{self._code(line.issuer_id)}>{self._code(line.asker_id)}"
        if group_by is GroupBy.ITEM:
            return line.item_code
        return self.category(line.item_code)

    def label(self, group_by: GroupBy, key: str) -> str:
        """What a person reads for a group key."""
        if not self._names_by_code:
            self._names_by_code.update(
                {info.code: info.name for info in self.institutions.values()}
            )
        by_code = self._names_by_code
        if group_by is GroupBy.DISTRICT:
            return key or "(no district)"
        if group_by in (GroupBy.ASKING_INSTITUTION, GroupBy.ISSUING_INSTITUTION):
            return by_code.get(key, key) if key else NO_ISSUER_LABEL
        if group_by is GroupBy.ISSUER_ASKER_PAIR:
            issuer, _, asker = key.partition(">")
            issuer_name = by_code.get(issuer, issuer) if issuer else NO_ISSUER_LABEL
            return f"{issuer_name} → {by_code.get(asker, asker)}"
        if group_by is GroupBy.ITEM:
            return self.item_names.get(key, key) if key else NOT_AN_ITEM_LABEL
        return key or NOT_AN_ITEM_LABEL


def fold_day(
    lines: Iterable[LineFact], directory: Directory, groupings: Iterable[GroupBy]
) -> dict[GroupBy, dict[str, Counters]]:
    """One day's lines as counters per grouping and group; ``checks`` counts distinct checks."""
    wanted = list(groupings)
    result: dict[GroupBy, dict[str, Counters]] = {g: {} for g in wanted}
    seen: dict[GroupBy, dict[str, set[str]]] = {g: {} for g in wanted}
    for line in lines:
        for group_by in wanted:
            key = directory.key(group_by, line)
            counters = result[group_by].setdefault(key, Counters())
            counters.add_line(
                line.verdict, line.accepted, line.reason, line.booked_saving, line.own
            )
            checks = seen[group_by].setdefault(key, set())
            if line.check_id not in checks:
                checks.add(line.check_id)
                counters.checks += 1
    return result


@dataclass(frozen=True, slots=True)
class Row:
    """One report row: a period and a group with its counters."""

    period_start: dt.date
    period_end: dt.date
    group_key: str
    counters: Counters


def rows_of(
    days: Mapping[dt.date, Mapping[str, Counters]], granularity: Granularity, period: Period
) -> list[Row]:
    """Day figures summed into rows per (period, group), ordered by period then key.

    A check lives on exactly one day, so summing distinct checks over days stays exact.
    """
    sums: dict[tuple[dt.date, dt.date, str], Counters] = {}
    for day, groups in days.items():
        if not period.start <= day <= period.end:
            continue
        first, last = period_of(day, granularity, period)
        for key, counters in groups.items():
            sums.setdefault((first, last, key), Counters()).add(counters)
    return [Row(first, last, key, sums[first, last, key]) for first, last, key in sorted(sums)]


def suppress_small(rows: list[Row], min_checks: int) -> tuple[list[Row], int]:
    """Rows with at least ``min_checks`` checks, and how many were left out."""
    if min_checks <= 1:
        return rows, 0
    kept = [row for row in rows if row.counters.checks >= min_checks]
    return kept, len(rows) - len(kept)


def group_sums(rows: Iterable[Row]) -> dict[str, Counters]:
    """Each group's rows summed over the whole period, by group key (in key order)."""
    sums: dict[str, Counters] = {}
    for row in sorted(rows, key=lambda r: r.group_key):
        sums.setdefault(row.group_key, Counters()).add(row.counters)
    return sums


def totals(rows: Iterable[Row]) -> Counters:
    """The sum of the rows."""
    total = Counters()
    for row in rows:
        total.add(row.counters)
    return total


@dataclass(frozen=True, slots=True)
class SavingsReport:
    """A computed report: its rows (small groups left out), their totals, and the directory
    that labels them."""

    period: Period
    granularity: Granularity
    group_by: GroupBy
    rows: list[Row]
    totals: Counters
    # Rows left out for having fewer than ``min_group_size`` checks.
    suppressed: int
    min_group_size: int
    names: Directory
    own_institution_counted: bool
