"""Counters of check lines and decisions, how they add up, and the figures derived from them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal

from mutualrec.matching.decisions import DeclineReason

RECOGNIZABLE = "RECOGNIZABLE"
_FEN = Decimal("0.01")
_RATE = Decimal("0.0001")
REASONS = tuple(reason.value for reason in DeclineReason)
_KNOWN = frozenset(REASONS)


@dataclass(slots=True)
class Counters:
    """What one group did in one day (or a sum of those)."""

    checks: int = 0
    items_checked: int = 0
    items_recognizable: int = 0
    accepted: int = 0
    declined: int = 0
    declined_by_reason: dict[str, int] = field(default_factory=dict)
    saving: Decimal = Decimal(0)

    def add(self, other: Counters) -> None:
        """Add ``other`` into these counters."""
        self.checks += other.checks
        self.items_checked += other.items_checked
        self.items_recognizable += other.items_recognizable
        self.accepted += other.accepted
        self.declined += other.declined
        for reason, count in other.declined_by_reason.items():
            self.declined_by_reason[reason] = self.declined_by_reason.get(reason, 0) + count
        self.saving += other.saving

    def add_line(self, verdict: str, accepted: bool | None, reason: str, saving: str) -> None:
        """Count one check line and its decision (``accepted`` None: not decided)."""
        self.items_checked += 1
        if verdict == RECOGNIZABLE:
            self.items_recognizable += 1
        if accepted is True:
            self.accepted += 1
            self.saving += Decimal(saving or "0")
        elif accepted is False:
            self.declined += 1
            key = reason or "UNSPECIFIED"
            self.declined_by_reason[key] = self.declined_by_reason.get(key, 0) + 1

    def reasons_json(self) -> str:
        """The declines per reason as stored in a rollup row."""
        return json.dumps(self.declined_by_reason, sort_keys=True)

    def reasons_in_order(self) -> list[tuple[str, int]]:
        """(reason, count) with a count, in DeclineReason order, unknown names last."""
        counts = self.declined_by_reason
        known = [(r, counts[r]) for r in REASONS if counts.get(r)]
        others = sorted((r, n) for r, n in counts.items() if n and r not in _KNOWN)
        return known + others


def recognition_rate(accepted: int, recognizable: int) -> str:
    """accepted / recognizable with 4 decimals; "" when nothing was recognizable."""
    if recognizable == 0:
        return ""
    return str((Decimal(accepted) / Decimal(recognizable)).quantize(_RATE))


def yuan(amount: Decimal) -> str:
    """An amount of yuan with 2 decimals."""
    return str(amount.quantize(_FEN))
