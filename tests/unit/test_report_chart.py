"""The regulator's PNG chart of a savings report."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
from PIL import Image

from mutualrec.client import report_chart
from mutualrec.client.report_chart import (
    DPI,
    HEIGHT_IN,
    WIDTH_IN,
    chart_data,
    chart_png,
    render_chart,
    write_chart,
)
from mutualrec.v1 import statistics_pb2

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIZE = (int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI))
MONTHS = [("2026-01-01", "2026-01-31"), ("2026-02-01", "2026-02-28"), ("2026-03-01", "2026-03-15")]


def _row(
    period: tuple[str, str],
    key: str,
    label: str,
    saving: str,
    accepted: int,
    recognizable: int,
) -> statistics_pb2.ReportRow:
    return statistics_pb2.ReportRow(
        period_start=period[0],
        period_end=period[1],
        group_key=key,
        group_label=label,
        checks=recognizable + 3,
        items_checked=recognizable + 5,
        items_recognizable=recognizable,
        accepted=accepted,
        declined=recognizable - accepted,
        saving=saving,
    )


def _report(
    rows: list[statistics_pb2.ReportRow],
    group_by: int = statistics_pb2.GROUP_BY_ITEM,
    granularity: int = statistics_pb2.GRANULARITY_MONTH,
) -> statistics_pb2.SavingsReport:
    return statistics_pb2.SavingsReport(
        from_date="2026-01-01",
        to_date="2026-03-15",
        granularity=granularity,
        group_by=group_by,
        rows=rows,
        totals=statistics_pb2.ReportRow(
            group_key="TOTAL", saving="1234.50", recognition_rate="0.7500"
        ),
    )


def _opened(png: bytes) -> Image.Image:
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG"
    return image


def _three_items() -> statistics_pb2.SavingsReport:
    rows = []
    for n, period in enumerate(MONTHS):
        rows.append(_row(period, "LAB-K", "血钾 (potassium)", f"{40 + n}.00", 4 + n, 6 + n))
        rows.append(_row(period, "IMG-CT-CHEST", "胸部CT", f"{300 * (n + 1)}.00", 1, 2))
    # A group with rows in one period only: a gap elsewhere, not a crash.
    rows.append(_row(MONTHS[1], "LAB-CBC", "血常规", "30.00", 1, 1))
    return _report(rows)


def test_a_report_becomes_a_png_of_the_fixed_size() -> None:
    png = chart_png(_three_items())

    image = _opened(png)
    assert image.size == SIZE
    assert image.mode in {"RGBA", "RGB"}
    # Not a blank canvas: lines, text and axes in several colours.
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 20


def test_the_same_report_gives_the_same_bytes_without_version_metadata() -> None:
    report = _three_items()

    first, second = chart_png(report), chart_png(report)

    assert first == second
    assert b"matplotlib" not in first.lower()
    assert "Software" not in _opened(first).info


def test_lines_follow_the_rows_ranked_by_saving() -> None:
    data = chart_data(_three_items(), families=["DejaVu Sans"])

    assert data.periods == ["2026-01", "2026-02", "2026-03"]
    assert [line.label for line in data.lines] == ["IMG-CT-CHEST", "LAB-K", "LAB-CBC"]
    assert data.other is None
    assert data.other_groups == 0
    ct, potassium, cbc = data.lines
    assert ct.savings(3) == [300.0, 600.0, 900.0]
    assert potassium.rates(3) == [4 / 6, 5 / 7, 6 / 8]
    assert cbc.savings(3) == [0.0, 30.0, 0.0]
    assert math.isnan(cbc.rates(3)[0])
    assert cbc.rates(3)[1] == 1.0
    # Chinese names without a CJK font: the item codes stand in, and are reported.
    assert ("LAB-K", "血钾 (potassium)") in data.replaced_labels


def test_drawable_labels_are_kept() -> None:
    rows = [_row(MONTHS[0], "H500103001", "Yuzhong Demo Hospital → Jiangbei", "10.00", 1, 1)]

    data = chart_data(
        _report(rows, statistics_pb2.GROUP_BY_ASKING_INSTITUTION), families=["DejaVu Sans"]
    )

    assert [line.label for line in data.lines] == ["Yuzhong Demo Hospital → Jiangbei"]
    assert data.replaced_labels == []


def test_many_groups_keep_the_top_ones_and_sum_the_rest() -> None:
    rows = [
        _row(period, f"H5001{g:05d}", f"Hospital {g}", f"{g * 10 + m}.00", g % 5, 5)
        for g in range(1, 41)
        for m, period in enumerate(MONTHS)
    ]
    report = _report(rows, statistics_pb2.GROUP_BY_ASKING_INSTITUTION)

    data = chart_data(report, top=8, families=["DejaVu Sans"])

    assert [line.label for line in data.lines] == [f"Hospital {g}" for g in range(40, 32, -1)]
    assert data.other is not None
    assert data.other_groups == 32
    assert data.other.label == "other (32 groups)"
    assert data.other.savings(3) == [
        float(sum(g * 10 + m for g in range(1, 33))) for m in range(len(MONTHS))
    ]
    # The rate of the sums, not the mean of the rates.
    assert data.other.rates(3)[0] == sum(g % 5 for g in range(1, 33)) / (5 * 32)
    assert _opened(chart_png(report)).size == SIZE


def test_district_names_without_a_cjk_font_fall_back_to_ranks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(report_chart, "_cjk_font", lambda: None)
    rows = [
        _row(MONTHS[0], "渝中区", "渝中区", "500.00", 3, 4),
        _row(MONTHS[0], "江北区", "江北区", "200.00", 1, 4),
    ]

    chart = render_chart(_report(rows, statistics_pb2.GROUP_BY_DISTRICT))

    assert chart.replaced_labels == [("group #1", "渝中区"), ("group #2", "江北区")]
    assert _opened(chart.png).size == SIZE


def test_an_empty_report_gives_a_chart_that_says_so() -> None:
    empty = _report([], granularity=statistics_pb2.GRANULARITY_DAY)

    chart = render_chart(empty)

    assert _opened(chart.png).size == SIZE
    assert chart.replaced_labels == []
    assert chart_data(empty).lines == []


def test_a_single_period_and_a_long_day_by_day_period_are_drawn() -> None:
    single = _report([_row(MONTHS[0], "LAB-K", "LAB-K", "4.00", 1, 1)])
    days = _report(
        [
            _row((f"2026-01-{d:02d}", f"2026-01-{d:02d}"), "LAB-K", "LAB-K", f"{d}.00", 1, 2)
            for d in range(1, 32)
        ]
        + [
            _row((f"2026-02-{d:02d}", f"2026-02-{d:02d}"), "LAB-K", "LAB-K", f"{d}.00", 1, 2)
            for d in range(1, 29)
        ],
        granularity=statistics_pb2.GRANULARITY_DAY,
    )

    assert _opened(chart_png(single)).size == SIZE
    assert _opened(chart_png(days)).size == SIZE
    assert chart_data(days).periods[:2] == ["2026-01-01", "2026-01-02"]


def test_write_chart_writes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "chart.png"

    chart = write_chart(_three_items(), path)

    assert path.read_bytes() == chart.png
    assert Image.open(path).size == SIZE


def test_top_must_be_positive() -> None:
    with pytest.raises(ValueError, match="top"):
        chart_png(_three_items(), top=0)


def _tick_labels(report: statistics_pb2.SavingsReport) -> list[str]:
    figure, _ = report_chart.chart_figure(report, 8, ["DejaVu Sans"])
    figure.canvas.draw()
    savings = figure.axes[0]
    low, high = savings.get_ylim()
    return [
        label.get_text()
        for label, value in zip(savings.get_yticklabels(), savings.get_yticks(), strict=True)
        if low <= value <= high
    ]


def test_one_period_is_drawn_as_bars_with_distinct_money_labels() -> None:
    # Two groups saving 204 and 200 yuan in one month: once a dot over nine ticks all "204".
    report = _report(
        [
            _row(MONTHS[0], "Shapingba", "Shapingba", "204.00", 2, 5),
            _row(MONTHS[0], "Yuzhong", "Yuzhong", "200.00", 1, 2),
        ],
        group_by=statistics_pb2.GROUP_BY_DISTRICT,
    )
    report.from_date, report.to_date = MONTHS[0]

    figure, _ = report_chart.chart_figure(report, 8, ["DejaVu Sans"])
    savings, rates = figure.axes

    assert [bar.get_height() for bar in savings.patches] == [204.0, 200.0]
    assert [bar.get_height() for bar in rates.patches] == [0.4, 0.5]
    assert savings.get_lines() == []
    assert savings.get_ylim()[0] == 0
    labels = _tick_labels(report)
    assert len(set(labels)) == len(labels) > 2
    assert labels[0] == "0"


def test_money_labels_carry_the_decimals_the_ticks_need() -> None:
    formatter = report_chart.YuanFormatter()
    cases = {
        (0.0, 50.0, 100.0): ["0", "50", "100"],
        (200.0, 200.5, 201.0): ["200.0", "200.5", "201.0"],
        (0.0, 0.25, 0.5): ["0.00", "0.25", "0.50"],
        (0.0, 5000.0, 10000.0): ["0", "5,000", "10,000"],
    }
    for ticks, expected in cases.items():
        formatter.set_locs(list(ticks))
        assert [formatter(t) for t in ticks] == expected


def test_periods_without_rows_are_on_the_axis_as_zero() -> None:
    # Rows in January and March only: February is a period of the report all the same.
    report = _report(
        [
            _row(MONTHS[0], "LAB-K", "LAB-K", "4.00", 1, 1),
            _row(MONTHS[2], "LAB-K", "LAB-K", "8.00", 2, 2),
        ]
    )

    data = chart_data(report, families=["DejaVu Sans"])

    assert report_chart.report_periods(report) == MONTHS
    assert data.periods == ["2026-01", "2026-02", "2026-03"]
    assert data.lines[0].savings(3) == [4.0, 0.0, 8.0]


def test_week_periods_are_iso_weeks_clipped_to_the_report() -> None:
    report = _report([], granularity=statistics_pb2.GRANULARITY_WEEK)
    report.from_date, report.to_date = "2026-01-01", "2026-01-14"

    # 2026-01-01 is a Thursday.
    assert report_chart.report_periods(report) == [
        ("2026-01-01", "2026-01-04"),
        ("2026-01-05", "2026-01-11"),
        ("2026-01-12", "2026-01-14"),
    ]
