"""Counters of check lines and decisions, how they add up, and the figures derived from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from mutualrec.matching.decisions import DeclineReason
from mutualrec.money import to_fen

RECOGNIZABLE = "RECOGNIZABLE"
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
    # Money in whole fen (0.01 yuan): sums are exact and cost an integer addition; yuan, as
    # Decimal text, only where a report leaves the service (:func:`mutualrec.money.yuan`).
    saving_fen: int = 0
    # The part of items_recognizable, accepted and saving whose result the asking institution
    # itself issued: reuse inside one hospital, which regulators report apart.
    items_recognizable_own: int = 0
    accepted_own: int = 0
    saving_fen_own: int = 0

    def add(self, other: Counters) -> None:
        """Add ``other`` into these counters."""
        self.checks += other.checks
        self.items_checked += other.items_checked
        self.items_recognizable += other.items_recognizable
        self.accepted += other.accepted
        self.declined += other.declined
        for reason, count in other.declined_by_reason.items():
            self.declined_by_reason[reason] = self.declined_by_reason.get(reason, 0) + count
        self.saving_fen += other.saving_fen
        self.items_recognizable_own += other.items_recognizable_own
        self.accepted_own += other.accepted_own
        self.saving_fen_own += other.saving_fen_own

    def add_line(
        self, verdict: str, accepted: bool | None, reason: str, saving: str, own: bool = False
    ) -> None:
        """Count one check line and its decision (``accepted`` None: not decided; ``saving``
        the booked saving in yuan, as stored); ``own``: the asking institution issued the cited
        result."""
        self.items_checked += 1
        if verdict == RECOGNIZABLE:
            self.items_recognizable += 1
            self.items_recognizable_own += own
        if accepted is True:
            fen = to_fen(saving)
            self.accepted += 1
            self.saving_fen += fen
            self.accepted_own += own
            self.saving_fen_own += fen if own else 0
        elif accepted is False:
            self.declined += 1
            key = reason or "UNSPECIFIED"
            self.declined_by_reason[key] = self.declined_by_reason.get(key, 0) + 1

    def cross_institution(self) -> Counters:
        """These counters without the asking institutions' own results: recognition between
        institutions only (a region whose policy does not count reuse inside a hospital)."""
        return Counters(
            checks=self.checks,
            items_checked=self.items_checked,
            items_recognizable=self.items_recognizable - self.items_recognizable_own,
            accepted=self.accepted - self.accepted_own,
            declined=self.declined,
            declined_by_reason=dict(self.declined_by_reason),
            saving_fen=self.saving_fen - self.saving_fen_own,
            items_recognizable_own=self.items_recognizable_own,
            accepted_own=self.accepted_own,
            saving_fen_own=self.saving_fen_own,
        )

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
