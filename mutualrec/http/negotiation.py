"""The negotiation headers (RFC 9110 12.4 and 12.5: Accept, Accept-Encoding) read as one
shape: a comma-separated list of items, each a name with ``;``-separated parameters, ``q``
among them its weight."""

from __future__ import annotations

from dataclasses import dataclass

# A longer header is read this far only: no client needs more, and a hostile one costs nothing.
_LONGEST = 4096


@dataclass(frozen=True, slots=True)
class WeightedItem:
    """One item: its name lower-cased, its parameters (names lower-cased, values unquoted as
    sent) but ``q``, and that weight (1 when absent, 0 when unreadable)."""

    name: str
    parameters: dict[str, str]
    quality: float


def weighted_items(header: str | None) -> list[WeightedItem]:
    """The header's items in their order, those of weight 0 included; empty ones left out."""
    items = []
    for item in _split((header or "")[:_LONGEST], ","):
        pieces = [p.strip() for p in _split(item, ";")]
        if not pieces[0]:
            continue
        parameters: dict[str, str] = {}
        quality = 1.0
        for piece in pieces[1:]:
            name, _, value = piece.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
            elif name:
                parameters[name] = value
        items.append(WeightedItem(pieces[0].lower(), parameters, quality))
    return items


def _split(text: str, separator: str) -> list[str]:
    """``text`` split on ``separator`` outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for character in text:
        if character == '"':
            quoted = not quoted
        if character == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(character)
    parts.append("".join(current))
    return parts
