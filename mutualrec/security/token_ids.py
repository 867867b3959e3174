"""Token ids (JWT ``jti``) this process accepted, until their tokens expire.

A replay sent to the same process is refused here, before any index query. This is a first
line only: the index records every id too, and stays what refuses a replay sent to another
process; an id this memory dropped early (it is bounded) is still refused there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# A five-minute token lifetime at a few hundred calls per second.
MAX_ENTRIES = 200_000


class RecentTokenIds:
    """A bounded map of (issuer, jti) to its token's expiry (epoch seconds)."""

    def __init__(
        self, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.time
    ) -> None:
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # In arrival order: tokens arrive roughly in the order they expire, so the oldest
        # entries are the first to go.
        self._expiries: dict[tuple[str, str], float] = {}

    def seen(self, issuer: str, jti: str) -> bool:
        """Whether this process accepted ``jti`` of ``issuer`` and its token has not expired."""
        expiry = self._expiries.get((issuer, jti))
        return expiry is not None and expiry > self._clock()

    def remember(self, issuer: str, jti: str, expires_at: float) -> None:
        """Keep ``jti`` of ``issuer`` until ``expires_at``."""
        with self._lock:
            self._drop_expired()
            if len(self._expiries) >= self._max:
                # Full of live ids: forget the oldest (the index still refuses its replay).
                del self._expiries[next(iter(self._expiries))]
            self._expiries[(issuer, jti)] = expires_at

    def __len__(self) -> int:
        return len(self._expiries)

    def _drop_expired(self) -> None:
        now = self._clock()
        while self._expiries:
            oldest = next(iter(self._expiries))
            if self._expiries[oldest] > now:
                return
            del self._expiries[oldest]
