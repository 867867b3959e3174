"""The regulators' dashboard chart: savings and recognition rate per group, as SVG text.

Drawn here from numbers alone, with no charting library and no script in the browser, so the
page shows it under a strict Content Security Policy. Geometry is in attributes; colours and
fonts come from the page's stylesheet through classes (an inline ``style`` would be refused).
Every text a caller passes in (group labels are institution names) is escaped here.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from mutualrec.money import yuan

# Narrow, so that on a phone (where the drawing is scaled to the screen) the text stays
# legible; a wide screen's stylesheet caps how far it grows.
WIDTH = 400
PAD = 4
LEGEND_HEIGHT = 30
ROW_HEIGHT = 54
LABEL_HEIGHT = 18
SAVING_HEIGHT = 14
RATE_HEIGHT = 8
GAP = 3
# Room right of the longest bar for its value ("¥1,234,567.89").
VALUE_WIDTH = 104
BAR_WIDTH = WIDTH - 2 * PAD - VALUE_WIDTH
# A label wider than this (in half-width columns; a Chinese character is two) is cut, whole
# in its tooltip.
MAX_LABEL_COLUMNS = 48
# Beyond this many groups the smallest savers are drawn as one bar: 112 items or hundreds of
# institution pairs as bars are a wall, not a chart (the table lists every one).
MAX_GROUPS = 20


@dataclass(frozen=True, slots=True)
class GroupBar:
    """One group's figures over the whole period."""

    label: str
    saving_fen: int
    accepted: int
    recognizable: int

    @property
    def rate(self) -> Decimal | None:
        """Accepted share of the recognizable lines; None when nothing was recognizable."""
        if self.recognizable == 0:
            return None
        return Decimal(self.accepted) / Decimal(self.recognizable)


@dataclass(frozen=True, slots=True)
class ChartText:
    """The chart's words, in the reader's language."""

    title: str
    saving: str
    rate: str
    # "{count}" is replaced by how many groups the bar sums.
    others: str
    empty: str
    no_rate: str


def grouped_yuan(fen: int) -> str:
    """Whole fen as yuan with thousands separators (``123456789`` -> ``"1,234,567.89"``)."""
    whole, _, cents = yuan(fen).partition(".")
    sign = "-" if whole.startswith("-") else ""
    return f"{sign}{int(whole.lstrip('-')):,}.{cents}"


def percent(rate: Decimal) -> str:
    """A share as a percentage with one decimal (``0.75`` -> ``"75.0%"``)."""
    return f"{(rate * 100).quantize(Decimal('0.1'), ROUND_HALF_UP)}%"


def chart_groups(
    groups: Sequence[GroupBar], others: str, limit: int = MAX_GROUPS
) -> list[GroupBar]:
    """The bars to draw: by saving, largest first (then by label); past ``limit``, the smallest
    summed into one bar labelled ``others``."""
    ranked = sorted(groups, key=lambda g: (-g.saving_fen, g.label))
    if len(ranked) <= limit:
        return ranked
    kept, rest = ranked[: limit - 1], ranked[limit - 1 :]
    summed = GroupBar(
        others.replace("{count}", str(len(rest))),
        sum(g.saving_fen for g in rest),
        sum(g.accepted for g in rest),
        sum(g.recognizable for g in rest),
    )
    return [*kept, summed]


def savings_chart(groups: Sequence[GroupBar], text: ChartText, limit: int = MAX_GROUPS) -> str:
    """An ``<svg>`` element: per group its label, a bar of its saving (scaled to the largest)
    and a bar of its recognition rate (scaled to 100%), each with its value."""
    bars = chart_groups(groups, text.others, limit)
    height = LEGEND_HEIGHT + max(len(bars), 1) * ROW_HEIGHT + PAD
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {height}"'
        f' role="img" aria-labelledby="chart-title">',
        f'<title id="chart-title">{_escape(text.title)}</title>',
        *_legend(text),
    ]
    if not bars:
        parts.append(_text(PAD, LEGEND_HEIGHT + LABEL_HEIGHT, "empty", text.empty))
    largest = max((bar.saving_fen for bar in bars), default=0)
    for position, bar in enumerate(bars):
        parts.extend(_row(LEGEND_HEIGHT + position * ROW_HEIGHT, bar, largest, text))
    parts.append("</svg>")
    return "\n".join(parts)


def _legend(text: ChartText) -> list[str]:
    half = WIDTH // 2
    return [
        _rect(PAD, 7, 14, 14, "key saving"),
        _text(PAD + 20, 19, "legend", text.saving),
        _rect(half, 10, 14, RATE_HEIGHT, "key rate"),
        _text(half + 20, 19, "legend", text.rate),
    ]


def _row(top: int, bar: GroupBar, largest: int, text: ChartText) -> list[str]:
    saving_top = top + LABEL_HEIGHT + GAP
    rate_top = saving_top + SAVING_HEIGHT + GAP
    saving_width = _length(bar.saving_fen, largest)
    rate = bar.rate
    rate_width = 0.0 if rate is None else _length(rate, Decimal(1))
    shown = _cut(bar.label, MAX_LABEL_COLUMNS)
    label = _text(PAD, top + LABEL_HEIGHT - 4, "label", shown)
    if shown != bar.label:
        # The whole name where the reader hovers (or long-presses) the cut one.
        label = label.replace("</text>", f"<title>{_escape(bar.label)}</title></text>")
    return [
        '<g class="group">',
        label,
        _rect(PAD, saving_top, saving_width, SAVING_HEIGHT, "bar saving"),
        _text(
            PAD + saving_width + 4,
            saving_top + SAVING_HEIGHT - 2,
            "value",
            "¥" + grouped_yuan(bar.saving_fen),
        ),
        _rect(PAD, rate_top, rate_width, RATE_HEIGHT, "bar rate"),
        _text(
            PAD + rate_width + 4,
            rate_top + RATE_HEIGHT,
            "value",
            text.no_rate if rate is None else percent(rate),
        ),
        "</g>",
    ]


def _length(value: int | Decimal, largest: int | Decimal) -> float:
    """A bar's length for ``value`` out of ``largest``; a value above nought shows at least a
    sliver, so a small saving is not read as none."""
    if largest <= 0 or value <= 0:
        return 0.0
    return round(max(1.0, float(Decimal(value) / Decimal(largest)) * BAR_WIDTH), 1)


def _rect(x: float, y: float, width: float, height: float, classes: str) -> str:
    return (
        f'<rect class="{classes}" x="{_num(x)}" y="{_num(y)}"'
        f' width="{_num(width)}" height="{_num(height)}"/>'
    )


def _text(x: float, y: float, classes: str, content: str) -> str:
    return f'<text class="{classes}" x="{_num(x)}" y="{_num(y)}">{_escape(content)}</text>'


def _num(value: float) -> str:
    return f"{value:g}"


def _escape(content: str) -> str:
    return html.escape(content, quote=True)


def _columns(char: str) -> int:
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _cut(label: str, limit: int) -> str:
    """``label`` cut to ``limit`` display columns, an ellipsis marking the cut."""
    if sum(_columns(c) for c in label) <= limit:
        return label
    kept, used = [], 0
    for char in label:
        used += _columns(char)
        if used > limit - 1:
            break
        kept.append(char)
    return "".join(kept) + "…"
