"""The dashboard's SVG chart: one saving bar and one rate bar per group, lengths to scale,
values written out, every text escaped, many groups folded into one bar."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from decimal import Decimal

from mutualrec.statistics.svg_chart import (
    BAR_WIDTH,
    MAX_LABEL_COLUMNS,
    ChartText,
    GroupBar,
    chart_groups,
    grouped_yuan,
    percent,
    savings_chart,
)

SVG = "{http://www.w3.org/2000/svg}"
TEXT = ChartText(
    title="Savings and recognition rate by group",
    saving="Savings (yuan)",
    rate="Recognition rate",
    others="{count} other groups",
    empty="No checks",
    no_rate="–",
)


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # also proves it is well-formed XML


def _bars(root: ET.Element, kind: str) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") == f"bar {kind}"]


def _texts(root: ET.Element, kind: str) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text") if t.get("class") == kind]


def test_one_saving_bar_and_one_rate_bar_per_group_to_scale() -> None:
    groups = [
        GroupBar("渝中区", saving_fen=40_000, accepted=3, recognizable=4),
        GroupBar("江北区", saving_fen=10_000, accepted=1, recognizable=1),
        GroupBar("沙坪坝区", saving_fen=0, accepted=0, recognizable=2),
    ]

    root = _parse(savings_chart(groups, TEXT))

    savings, rates = _bars(root, "saving"), _bars(root, "rate")
    assert len(savings) == len(rates) == 3
    # Largest saving first; it spans the bar area, the others in proportion.
    assert _texts(root, "label") == ["渝中区", "江北区", "沙坪坝区"]
    assert [float(r.get("width", "")) for r in savings] == [BAR_WIDTH, BAR_WIDTH / 4, 0]
    assert [float(r.get("width", "")) for r in rates] == [BAR_WIDTH * 0.75, BAR_WIDTH, 0]
    assert _texts(root, "value") == ["¥400.00", "75.0%", "¥100.00", "100.0%", "¥0.00", "0.0%"]
    assert root.find(f"{SVG}title") is not None
    # Styled by class only: a page under a strict CSP refuses inline styles.
    assert "style" not in ET.tostring(root, encoding="unicode")


def test_a_group_with_nothing_recognizable_has_no_rate() -> None:
    root = _parse(savings_chart([GroupBar("H1", 0, 0, 0)], TEXT))
    assert _texts(root, "value") == ["¥0.00", "–"]
    assert [r.get("width") for r in _bars(root, "rate")] == ["0"]


def test_a_small_saving_still_shows() -> None:
    root = _parse(savings_chart([GroupBar("a", 10_000_000, 1, 1), GroupBar("b", 1, 1, 1)], TEXT))
    assert float(_bars(root, "saving")[1].get("width", "")) == 1


def test_labels_are_escaped_and_long_ones_cut_with_the_whole_name_kept() -> None:
    hostile = '<script>alert("x")</script> & Co'
    long_name = "重庆医科大学附属第一医院" * 5
    root = _parse(savings_chart([GroupBar(hostile, 1, 1, 1), GroupBar(long_name, 2, 1, 1)], TEXT))
    labels = [t for t in root.iter(f"{SVG}text") if t.get("class") == "label"]
    assert labels[1].text == hostile  # as text, not markup
    assert not list(root.iter(f"{SVG}script"))
    assert not list(root.iter("script"))
    cut = labels[0].text or ""
    assert cut.endswith("…")
    assert long_name.startswith(cut[:-1])
    assert len(cut[:-1]) * 2 <= MAX_LABEL_COLUMNS
    assert "".join(labels[0].find(f"{SVG}title").itertext()) == long_name  # type: ignore[union-attr]


def test_many_groups_fold_the_smallest_into_one_bar() -> None:
    groups = [
        GroupBar(f"H{n:03d}", saving_fen=n * 100, accepted=n, recognizable=2 * n)
        for n in range(1, 31)
    ]
    drawn = chart_groups(groups, TEXT.others, limit=20)
    assert len(drawn) == 20
    assert [g.label for g in drawn[:3]] == ["H030", "H029", "H028"]
    others = drawn[-1]
    assert others.label == "11 other groups"
    assert others.saving_fen == sum(n * 100 for n in range(1, 12))
    assert (others.accepted, others.recognizable) == (66, 132)
    root = _parse(savings_chart(groups, TEXT))
    assert len(_bars(root, "saving")) == 20


def test_no_groups_says_so() -> None:
    root = _parse(savings_chart([], TEXT))
    assert _bars(root, "saving") == []
    assert _texts(root, "empty") == ["No checks"]


def test_money_and_rates_as_written() -> None:
    assert grouped_yuan(123_456_789) == "1,234,567.89"
    assert grouped_yuan(5) == "0.05"
    assert grouped_yuan(-120_000) == "-1,200.00"
    assert percent(Decimal(2) / Decimal(3)) == "66.7%"
    assert percent(Decimal("0.0005")) == "0.1%"
