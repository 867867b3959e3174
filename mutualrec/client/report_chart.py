"""The regulator's chart: a savings report as a PNG, savings and recognition rate over time.

Two panels share the time axis: yuan saved per period (top) and the recognition rate
(accepted / recognizable) per period (bottom), one line per group. Every period of the report
is on the axis, those without a row as a saving of zero; a report of one period is drawn as
bars, one per group, since a line of one point is a lone dot. Money is labelled in yuan with
as many decimals as the ticks need to differ (a range of 200 to 204 yuan is not five "202"s).
Only the ``top`` groups by total saving get their own line; the rest are summed into one
"other" line (its rate is the rate of the sums, not an average of rates), so the chart stays
readable with a thousand institutions. The title says so.

Drawn with matplotlib's Agg canvas (no display, no pyplot state), at a fixed size and
resolution, without the software version in the PNG metadata: the same report gives the same
bytes on the same installation. Group labels that the available fonts cannot draw (Chinese
names without a CJK font) fall back to the group key, or to the group's rank when the key is
not drawable either (district keys are names); a note under the chart says so, and
:attr:`Chart.replaced_labels` lists them for the caller to print.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from matplotlib import font_manager, rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, PercentFormatter

from mutualrec.statistics.periods import Granularity, Period, period_of
from mutualrec.v1 import statistics_pb2

TOP_GROUPS = 8
OTHER_LABEL = "other"
WIDTH_IN, HEIGHT_IN, DPI = 12.0, 7.5, 100
# Fonts that draw Chinese, by preference; the first one installed is used.
CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
    "Heiti SC",
    "AR PL UMing CN",
    "Droid Sans Fallback",
)
_BASE_FONT = "DejaVu Sans"
_GROUPINGS = {
    statistics_pb2.GROUP_BY_DISTRICT: "district",
    statistics_pb2.GROUP_BY_ASKING_INSTITUTION: "asking institution",
    statistics_pb2.GROUP_BY_ISSUING_INSTITUTION: "issuing institution",
    statistics_pb2.GROUP_BY_ISSUER_ASKER_PAIR: "issuer > asker pair",
    statistics_pb2.GROUP_BY_ITEM: "item",
    statistics_pb2.GROUP_BY_CATEGORY: "category",
}
_GRANULARITIES = {
    statistics_pb2.GRANULARITY_DAY: Granularity.DAY,
    statistics_pb2.GRANULARITY_WEEK: Granularity.WEEK,
    statistics_pb2.GRANULARITY_MONTH: Granularity.MONTH,
}


@dataclass
class Series:
    """One line of the chart: saving and counts per period index."""

    label: str
    saving: dict[int, Decimal] = field(default_factory=dict)
    accepted: dict[int, int] = field(default_factory=dict)
    recognizable: dict[int, int] = field(default_factory=dict)

    def add(self, period: int, row: statistics_pb2.ReportRow) -> None:
        """Count ``row`` in period ``period`` (rows of several groups add up)."""
        self.saving[period] = self.saving.get(period, Decimal(0)) + Decimal(row.saving or "0")
        self.accepted[period] = self.accepted.get(period, 0) + row.accepted
        self.recognizable[period] = self.recognizable.get(period, 0) + row.items_recognizable

    def savings(self, periods: int) -> list[float]:
        """Yuan saved per period (0 where the group has no row)."""
        return [float(self.saving.get(p, Decimal(0))) for p in range(periods)]

    def rates(self, periods: int) -> list[float]:
        """accepted / recognizable per period; NaN (a gap) where nothing was recognizable."""
        return [
            self.accepted.get(p, 0) / self.recognizable[p]
            if self.recognizable.get(p)
            else float("nan")
            for p in range(periods)
        ]


@functools.cache
def _cjk_font() -> str | None:
    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


@functools.cache
def _drawable_codepoints(family: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    path = font_manager.findfont(
        font_manager.FontProperties(family=family), fallback_to_default=False
    )
    return frozenset(FT2Font(path).get_charmap())


def _families() -> list[str]:
    cjk = _cjk_font()
    return [cjk, _BASE_FONT] if cjk else [_BASE_FONT]


def _drawable(text: str, families: Sequence[str]) -> bool:
    covered: set[int] = set()
    for family in families:
        covered |= _drawable_codepoints(family)
    return all(ord(ch) in covered for ch in text if not ch.isspace())


def _period_label(start: str, granularity: int) -> str:
    # Months by their name (a clipped first or last month too), weeks and days by first day.
    return start[:7] if granularity == statistics_pb2.GRANULARITY_MONTH else start


def _title(report: statistics_pb2.SavingsReport) -> str:
    grouping = _GROUPINGS.get(report.group_by, "group")
    cut = _GRANULARITIES.get(report.granularity)
    granularity = cut.value if cut else "period"
    return (
        f"Savings and recognition rate, {report.from_date} to {report.to_date}, "
        f"by {grouping}, per {granularity}"
    )


@dataclass(frozen=True)
class ChartData:
    """What the chart draws: period labels, the top groups' lines, the "other" line."""

    periods: list[str]
    lines: list[Series]
    other: Series | None
    other_groups: int
    # Group names the fonts cannot draw: (as drawn, as named).
    replaced_labels: list[tuple[str, str]]


def chart_data(
    report: statistics_pb2.SavingsReport,
    top: int = TOP_GROUPS,
    families: Sequence[str] | None = None,
) -> ChartData:
    """The lines of the chart: the ``top`` groups by total saving, the others summed.

    ``families`` are the fonts labels must be drawable with (default: those the chart uses).
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    if families is None:
        families = _families()
    order = report_periods(report)
    index = {p: n for n, p in enumerate(order)}
    total_saving: dict[str, Decimal] = {}
    total_accepted: dict[str, int] = {}
    labels: dict[str, str] = {}
    for row in report.rows:
        key = row.group_key
        total_saving[key] = total_saving.get(key, Decimal(0)) + Decimal(row.saving or "0")
        total_accepted[key] = total_accepted.get(key, 0) + row.accepted
        labels.setdefault(key, row.group_label or key or "(none)")
    ranked = sorted(total_saving, key=lambda k: (-total_saving[k], -total_accepted[k], k))
    shown = ranked[:top]
    rest = set(ranked[top:])
    replaced: list[tuple[str, str]] = []
    lines: dict[str, Series] = {}
    for rank, key in enumerate(shown, start=1):
        label = labels[key]
        if not _drawable(label, families):
            drawn = key if key and _drawable(key, families) else f"group #{rank}"
            replaced.append((drawn, label))
            label = drawn
        lines[key] = Series(label)
    other = Series(f"{OTHER_LABEL} ({len(rest)} groups)") if rest else None
    for row in report.rows:
        period = index[(row.period_start, row.period_end)]
        target = other if row.group_key in rest else lines[row.group_key]
        assert target is not None
        target.add(period, row)
    period_labels = [_period_label(start, report.granularity) for start, _ in order]
    return ChartData(period_labels, [lines[k] for k in shown], other, len(rest), replaced)


def report_periods(report: statistics_pb2.SavingsReport) -> list[tuple[str, str]]:
    """Every (first, last) day of the report's rows' periods, those without a row included,
    in order."""
    periods = {(row.period_start, row.period_end) for row in report.rows}
    granularity = _GRANULARITIES.get(report.granularity)
    try:
        span = Period(
            dt.date.fromisoformat(report.from_date), dt.date.fromisoformat(report.to_date)
        )
    except ValueError:
        return sorted(periods)
    if granularity is not None:
        for day in span.days():
            first, last = period_of(day, granularity, span)
            periods.add((first.isoformat(), last.isoformat()))
    return sorted(periods)


class YuanFormatter(Formatter):
    """Yuan with thousands separators and the fewest decimals (none to two: fen) that write
    every tick exactly: 0, 50, 100; 200.0, 200.5, 201.0; 0.00, 0.25, 0.50."""

    _decimals = 2

    def set_locs(self, locs: list[float]) -> None:
        """Choose the decimals for these tick locations."""
        super().set_locs(locs)
        exact = (d for d in (0, 1) if all(abs(round(t, d) - t) < 1e-6 for t in locs))
        self._decimals = next(exact, 2)

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:,.{self._decimals}f}"


@dataclass(frozen=True)
class Chart:
    """A drawn chart, and the group names it could not draw (as drawn, as named)."""

    png: bytes
    replaced_labels: list[tuple[str, str]]


def chart_png(report: statistics_pb2.SavingsReport, *, top: int = TOP_GROUPS) -> bytes:
    """The report as a PNG chart (bytes); a report without rows gives a chart saying so."""
    return render_chart(report, top=top).png


def render_chart(report: statistics_pb2.SavingsReport, *, top: int = TOP_GROUPS) -> Chart:
    """The report's chart, with the labels replaced for want of a font."""
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    families = _families()
    # Saved within the fonts' context: tick labels are made when the figure is drawn.
    with rc_context({"font.family": "sans-serif", "font.sans-serif": families}):
        figure, replaced = chart_figure(report, top, families)
        return Chart(_png(figure), replaced)


def chart_figure(
    report: statistics_pb2.SavingsReport, top: int, families: Sequence[str]
) -> tuple[Figure, list[tuple[str, str]]]:
    """The chart as a matplotlib figure (axes: savings, rates), and the replaced labels."""
    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    saving_axes, rate_axes = figure.subplots(2, 1, sharex=True)
    saving_axes.set_ylabel("saving (yuan)")
    saving_axes.yaxis.set_major_formatter(YuanFormatter())
    rate_axes.set_ylabel("recognition rate")
    rate_axes.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    rate_axes.set_ylim(0.0, 1.05)
    for axes in (saving_axes, rate_axes):
        axes.grid(True, color="#dddddd", linewidth=0.6)
    title = _title(report)
    if not report.rows:
        figure.suptitle(title, fontsize=12)
        for axes in (saving_axes, rate_axes):
            axes.text(
                0.5,
                0.5,
                "no data for this period",
                ha="center",
                va="center",
                transform=axes.transAxes,
                fontsize=14,
                color="#666666",
            )
            axes.set_xticks([])
            axes.set_yticks([])
        return figure, []
    data = chart_data(report, top, families)
    periods, lines, other, others = data.periods, data.lines, data.other, data.other_groups
    count = len(periods)
    positions = list(range(count))
    # The tab10 colours without its grey, which "other" uses.
    colors = [f"C{n}" for n in (0, 1, 2, 3, 4, 5, 6, 8, 9)]
    styled = [(line, colors[n % len(colors)]) for n, line in enumerate(lines)]
    if other is not None:
        styled.append((other, "#888888"))
    if count == 1:
        _draw_bars(saving_axes, rate_axes, styled)
        rate_axes.set_xticks([0], periods, rotation=45, ha="right")
    else:
        _draw_lines(saving_axes, rate_axes, styled, count, other)
        step = max(1, -(-count // 24))
        rate_axes.set_xticks(positions[::step], periods[::step], rotation=45, ha="right")
        rate_axes.set_xlim(-0.5, count - 0.5)
    # Savings start at zero; at least one yuan tall, so no tick falls between two fen.
    saving_axes.set_ylim(0, max(1.0, saving_axes.get_ylim()[1]))
    subtitle = f"total saving {report.totals.saving} yuan"
    if report.totals.recognition_rate:
        subtitle += f", recognition rate {float(report.totals.recognition_rate):.1%}"
    if others:
        subtitle += f"; top {len(lines)} groups by saving, the other {others} summed"
    if report.suppressed_rows:
        subtitle += f"; {report.suppressed_rows} rows of small groups left out"
    figure.suptitle(f"{title}\n{subtitle}", fontsize=11)
    figure.legend(loc="outside right upper", fontsize=8, title="group", title_fontsize=9)
    if data.replaced_labels:
        figure.supxlabel(
            "Some group names need a CJK font that is not installed here: "
            "their keys or ranks are shown instead.",
            fontsize=8,
            color="#666666",
        )
    return figure, data.replaced_labels


def _draw_lines(
    saving_axes: Axes,
    rate_axes: Axes,
    styled: list[tuple[Series, str]],
    count: int,
    other: Series | None,
) -> None:
    marker = "o" if count <= 31 else None
    for line, color in styled:
        dashed = line is other
        style: dict[str, Any] = {
            "color": color,
            "marker": marker,
            "markersize": 3 if dashed else 3.5,
            "linestyle": "--" if dashed else "-",
        }
        saving_axes.plot(range(count), line.savings(count), label=line.label, **style)
        rate_axes.plot(range(count), line.rates(count), **style)


def _draw_bars(saving_axes: Axes, rate_axes: Axes, styled: list[tuple[Series, str]]) -> None:
    """One period: a bar per group, side by side around the period's tick."""
    width = 0.8 / len(styled)
    for n, (line, color) in enumerate(styled):
        x = -0.4 + width * (n + 0.5)
        bars = saving_axes.bar(x, line.savings(1), width * 0.9, color=color, label=line.label)
        # Values on the bars: a zero saving is otherwise no bar at all.
        saving_axes.bar_label(bars, fmt="{:,.2f}", fontsize=8)
        rate = line.rates(1)[0]
        if rate == rate:  # NaN (nothing recognizable) draws no bar
            bars = rate_axes.bar(x, rate, width * 0.9, color=color)
            rate_axes.bar_label(bars, fmt="{:.0%}", fontsize=8)
    rate_axes.set_xlim(-0.5, 0.5)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def write_chart(
    report: statistics_pb2.SavingsReport, path: Path, *, top: int = TOP_GROUPS
) -> Chart:
    """Write the report's chart to ``path`` as PNG; the chart written."""
    chart = render_chart(report, top=top)
    path.write_bytes(chart.png)
    return chart
