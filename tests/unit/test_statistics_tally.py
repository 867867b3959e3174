"""Tallies: checks and decisions added one at a time sum to the day counted at once."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mutualrec.matching.decisions import DeclineReason
from mutualrec.money import to_fen
from mutualrec.statistics.periods import Granularity, Period
from mutualrec.statistics.report import Directory, GroupBy, InstitutionInfo, LineFact
from mutualrec.statistics.tally import (
    REASON_COLUMNS,
    TALLY_REASONS,
    TallyRow,
    TallySum,
    buckets,
    decision_rows,
    lines_rows,
    reason_column,
    report_rows,
)

DIRECTORY = Directory(
    {
        1: InstitutionInfo("H1", "One", "Yuzhong"),
        2: InstitutionInfo("H2", "Two", "Jiangbei"),
        3: InstitutionInfo("H3", "Three", "Yuzhong"),
    },
    {"LAB-K": "lab", "IMG-CT-CHEST": "imaging"},
)

_decision = st.sampled_from(
    [(None, ""), (True, ""), (False, "EMERGENCY"), (False, "OTHER"), (False, "")]
)
_line = st.tuples(
    st.sampled_from([None, 1, 2, 3, 9]),
    st.sampled_from(["LAB-K", "LAB-NA", "IMG-CT-CHEST", "IMG-MR-HEAD", ""]),
    st.sampled_from(["RECOGNIZABLE", "NO_RESULT", "EXPIRED"]),
    _decision,
    st.sampled_from(["0.00", "4.00", "12.35", "180.5"]),
)
_check = st.tuples(st.sampled_from([1, 2, 3]), st.lists(_line, min_size=1, max_size=5))


def _summed(rows: list[TallyRow]) -> dict[tuple[GroupBy, str], dict[str, int]]:
    sums: dict[tuple[GroupBy, str], Counter[str]] = {}
    for r in rows:
        c = sums.setdefault((r.group_by, r.group_key), Counter())
        for name in ("checks", "items_checked", "items_recognizable", "accepted", "declined"):
            c[name] += getattr(r, name)
        c["saving_fen"] += r.saving_fen
        for reason, count in r.declined_by_reason:
            c[f"declined {reason}"] += count
    return {key: {n: v for n, v in c.items() if v} for key, c in sums.items() if any(c.values())}


@given(st.lists(_check, min_size=1, max_size=8))
def test_checks_then_decisions_add_up_to_the_day_counted_at_once(
    checks: list[tuple[int, list[tuple[int | None, str, str, tuple[bool | None, str], str]]]],
) -> None:
    one_at_a_time: list[TallyRow] = []
    every_line: list[LineFact] = []
    for n, (asker, lines) in enumerate(checks):
        facts = [
            LineFact(f"c{n}", asker, issuer, item, verdict, accepted, reason, saving)
            for issuer, item, verdict, (accepted, reason), saving in lines
        ]
        undecided = [replace(f, accepted=None, reason="", booked_saving="0") for f in facts]
        one_at_a_time += lines_rows(undecided, DIRECTORY)
        for fact in facts:
            one_at_a_time += decision_rows(fact, DIRECTORY)
        every_line += [f if f.accepted else replace(f, booked_saving="0") for f in facts]
    assert _summed(one_at_a_time) == _summed(lines_rows(every_line, DIRECTORY))


def test_a_check_counts_once_per_group_however_many_of_its_lines_fall_there() -> None:
    lines = [
        LineFact("c", 1, 2, "LAB-K", "RECOGNIZABLE", None, "", "0"),
        LineFact("c", 1, 2, "LAB-NA", "NO_RESULT", None, "", "0"),
        LineFact("c", 1, None, "IMG-CT-CHEST", "NO_RESULT", None, "", "0"),
    ]
    rows = {(r.group_by, r.group_key): r for r in lines_rows(lines, DIRECTORY)}
    assert rows[GroupBy.DISTRICT, "Yuzhong"].checks == 1
    assert rows[GroupBy.DISTRICT, "Yuzhong"].items_checked == 3
    assert rows[GroupBy.CATEGORY, "lab"].checks == 1
    assert rows[GroupBy.CATEGORY, "lab"].items_checked == 2
    assert rows[GroupBy.CATEGORY, "lab"].items_recognizable == 1
    assert rows[GroupBy.ISSUER_ASKER_PAIR, "H2>H1"].items_checked == 2
    assert rows[GroupBy.ISSUER_ASKER_PAIR, ">H1"].items_checked == 1


def test_a_decline_without_a_reason_counts_as_unspecified() -> None:
    fact = LineFact("c", 1, 2, "LAB-K", "RECOGNIZABLE", False, "", "0")
    rows = decision_rows(fact, DIRECTORY)
    assert {(r.declined_by_reason, r.declined) for r in rows} == {((("UNSPECIFIED", 1),), 1)}
    assert len(rows) == len(GroupBy)


def test_savings_are_whole_fen() -> None:
    assert to_fen("12.35") == 1235
    assert to_fen(Decimal("180.5")) == 18050
    assert to_fen("") == 0
    with pytest.raises(ValueError, match="whole number of fen"):
        to_fen("0.005")


def test_report_rows_put_declines_by_reason_and_savings_in_yuan() -> None:
    period = Period(dt.date(2026, 2, 20), dt.date(2026, 3, 10))
    spans = buckets(period, Granularity.MONTH)
    assert spans == [
        (dt.date(2026, 2, 20), dt.date(2026, 2, 28)),
        (dt.date(2026, 3, 1), dt.date(2026, 3, 10)),
    ]
    declines = dict.fromkeys(TALLY_REASONS, 0) | {"EMERGENCY": 1, "OTHER": 2}
    none = (0,) * len(TALLY_REASONS)
    rows = report_rows(
        [
            TallySum(dt.date(2026, 3, 1), "lab", 3, 5, 4, 2, 1235, tuple(declines.values())),
            TallySum(dt.date(2026, 2, 20), "imaging", 1, 1, 0, 0, 0, none),
        ],
        spans,
    )
    assert [(r.period_start, r.period_end, r.group_key) for r in rows] == [
        (dt.date(2026, 2, 20), dt.date(2026, 2, 28), "imaging"),
        (dt.date(2026, 3, 1), dt.date(2026, 3, 10), "lab"),
    ]
    lab = rows[1].counters
    assert (lab.checks, lab.items_checked, lab.items_recognizable, lab.accepted) == (3, 5, 4, 2)
    assert lab.declined == 3
    assert lab.declined_by_reason == {"EMERGENCY": 1, "OTHER": 2}
    assert lab.saving_fen == 1235  # 12.35 yuan


def test_every_decline_reason_has_a_tally_column_and_unknown_ones_are_unspecified() -> None:
    assert len(set(REASON_COLUMNS)) == len(DeclineReason) + 1
    assert reason_column("EMERGENCY") == "declined_emergency"
    assert reason_column("SOMETHING_NEW") == reason_column("UNSPECIFIED")
