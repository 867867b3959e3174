"""Recently verified API keys, so a hot call does not query the index to authenticate.

Only successful checks are kept, for ``ttl`` seconds. A revocation bumps the administrators'
change counter, which every server polls about once a second and which clears this cache
(:class:`mutualrec.change_watch.ChangeWatch`); ``ttl`` bounds a key's life only should that poll
fail. Keys are held by their SHA-256, never as presented.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections.abc import Callable

from mutualrec.security.api_keys import Principal

_MAX_ENTRIES = 10_000


class PrincipalCache:
    """A bounded map of token digest to principal, entries expiring after ``ttl`` seconds."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Principal]] = {}
        # Bumped by clear(): a verification that began before is not kept.
        self._generation = 0

    @property
    def generation(self) -> int:
        """Pass to :meth:`put`, read before the key is verified against the index."""
        return self._generation

    @staticmethod
    def _digest(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8")).hexdigest()

    def get(self, token: str) -> Principal | None:
        """The principal verified for ``token`` within the last ``ttl`` seconds, if any."""
        if self._ttl <= 0:
            return None
        entry = self._entries.get(self._digest(token))
        if entry is None or self._clock() - entry[0] >= self._ttl:
            return None
        # A key in its rotation grace period stops at its end, not when the entry ages.
        until = entry[1].valid_until
        if until is not None and dt.datetime.now(dt.UTC) >= until:
            return None
        return entry[1]

    def put(self, token: str, principal: Principal, generation: int | None = None) -> None:
        """Remember a successful verification, unless the cache was cleared since
        ``generation`` was read (the key may have been revoked meanwhile)."""
        if self._ttl <= 0:
            return
        with self._lock:
            if generation is not None and generation != self._generation:
                return
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            self._entries[self._digest(token)] = (self._clock(), principal)

    def clear(self) -> None:
        """Forget every verification (after an administrator's change)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()
