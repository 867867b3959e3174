"""What reading one instance's header may cost: inflated size, inflation ratio, element count.

A deflated dataset of some 34 KB can inflate to millions of empty elements; walking them took
23 s of CPU per instance, and a handful of them held every worker thread. The walk and the
inflation call these guards as they go and stop at the first limit passed, so no instance
costs more than the limits allow, whatever it holds.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
# Below this many inflated bytes the ratio is not checked: a small dataset of mostly empty
# values (a blank image, padding) legitimately inflates far, and costs little to walk.
RATIO_FLOOR_BYTES = 16 * MIB


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    """Per-instance caps; the defaults hold every real instance seen, with a wide margin."""

    # The largest a deflated dataset may inflate to.
    max_inflated_bytes: int = 1024 * MIB
    # Inflated bytes per compressed byte (DEFLATE's own maximum is about 1,032).
    max_inflate_ratio: float = 200.0
    # Data elements and sequence items in one instance; an enhanced multi-frame instance of
    # thousands of frames holds some tens of thousands.
    max_elements: int = 250_000


DEFAULT_LIMITS = HeaderLimits()


class OverLimit(ValueError):
    """An instance beyond one of its :class:`HeaderLimits`; ``reason`` is the violation code."""

    def __init__(self, description: str, reason: str) -> None:
        super().__init__(description)
        self.reason = reason


class ElementCount:
    """Counts the elements a walk passes; raises :class:`OverLimit` past the cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen = 0

    def __call__(self) -> None:
        self.seen += 1
        if self.seen > self.limit:
            raise OverLimit(
                f"the instance holds more than {self.limit} data elements",
                "TOO_MANY_ELEMENTS",
            )


class InflationGuard:
    """Checks an inflation's progress; raises :class:`OverLimit` past the size or ratio cap."""

    def __init__(self, limits: HeaderLimits) -> None:
        self.limits = limits

    def __call__(self, consumed: int, inflated: int) -> None:
        if inflated > self.limits.max_inflated_bytes:
            raise OverLimit(
                f"the deflated dataset inflates to more than "
                f"{self.limits.max_inflated_bytes // MIB} MiB",
                "INFLATES_TOO_LARGE",
            )
        if inflated > RATIO_FLOOR_BYTES and inflated > self.limits.max_inflate_ratio * max(
            consumed, 1
        ):
            raise OverLimit(
                f"the deflated dataset inflates more than {self.limits.max_inflate_ratio:g} "
                "times: a decompression bomb, not an instance",
                "INFLATION_RATIO",
            )
