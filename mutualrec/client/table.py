"""Plain-text tables that stay aligned with Chinese names and long codes.

A terminal draws East Asian wide characters (汉字, full-width forms) in two columns and combining
marks in none, so padding by ``len`` misaligns every row holding a hospital's Chinese name.
Widths here are display widths (Unicode's East Asian Width property, from the standard
library's ``unicodedata``); cells are never cut, columns grow to their widest cell.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

LEFT, RIGHT = "<", ">"


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal."""
    return sum(
        0
        if unicodedata.combining(ch) or unicodedata.category(ch) in {"Mn", "Me", "Cf"}
        else 2
        if unicodedata.east_asian_width(ch) in {"W", "F"}
        else 1
        for ch in text
    )


def pad(text: str, width: int, align: str = LEFT) -> str:
    """``text`` padded with spaces to ``width`` display columns."""
    fill = " " * max(0, width - display_width(text))
    return text + fill if align == LEFT else fill + text


def render(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    align: Sequence[str] | None = None,
    *,
    footer: Sequence[Sequence[str]] = (),
    indent: str = "",
) -> list[str]:
    """The table as lines: header, rows, and ``footer`` rows under a rule.

    ``align`` gives each column's alignment (``LEFT`` or ``RIGHT``; default left). The last
    column of a left-aligned table is not padded, so lines carry no trailing spaces.
    """
    columns = len(header)
    aligns = list(align) if align is not None else [LEFT] * columns
    everything = [header, *rows, *footer]
    widths = [max(display_width(line[i]) for line in everything) for i in range(columns)]

    def line(cells: Sequence[str]) -> str:
        text = "  ".join(
            pad(cell, width, how) for cell, width, how in zip(cells, widths, aligns, strict=True)
        )
        return indent + text.rstrip()

    lines = [line(header), *(line(row) for row in rows)]
    if footer:
        lines.append(indent + "  ".join("-" * w for w in widths))
        lines.extend(line(row) for row in footer)
    return lines
