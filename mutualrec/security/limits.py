"""Per-credential and per-address limits: a call rate (token buckets) and concurrent calls
(slots).

Both live on the server's event loop, where every call is admitted, so they take no lock. They
remember a bounded number of credentials: an idle credential's bucket is full again anyway, so
forgetting the least recently seen one loses nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from mutualrec.security.api_keys import Principal


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """``rate`` calls per second per key, with bursts of up to ``burst`` calls."""

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float:
        """Spend one call of ``key``: 0.0 when allowed, else the seconds until one would be."""
        if self.rate <= 0:
            return 0.0
        bucket = self._refill(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def delay(self, key: str) -> float:
        """Like :meth:`take` but spends nothing: whether ``key`` has a call left right now."""
        if self.rate <= 0 or key not in self._buckets:
            return 0.0
        bucket = self._refill(key)
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self.rate

    def _refill(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        return bucket


class Slots:
    """At most ``limit`` calls at once per key (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        """Take a slot of ``key``; False when all are taken."""
        held = self._held.get(key, 0)
        if self.limit and held >= self.limit:
            return False
        self._held[key] = held + 1
        return True

    def release(self, key: str) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        left = self._held[key] - 1
        if left:
            self._held[key] = left
        else:
            del self._held[key]

    def held(self, key: str) -> int:
        """How many slots of ``key`` are taken."""
        return self._held.get(key, 0)

    def busy(self) -> int:
        """How many slots are taken, of every key."""
        return sum(self._held.values())


@dataclass(frozen=True, slots=True)
class Limits:
    """A server's limits per credential (its call rate and its concurrent uploads) and per client
    address (its calls in progress, and its failed authentications)."""

    calls: TokenBuckets
    uploads: Slots
    peers: Slots = field(default_factory=lambda: Slots(0))
    auth_failures: TokenBuckets = field(default_factory=lambda: TokenBuckets(0, 1))


def limit_key(principal: Principal) -> str:
    """Whose limits a call counts against, over every door: the API key or certificate, the
    share link, or the patient (every token of one patient shares them)."""
    if principal.patient_key is not None and principal.share_link_id is None:
        return f"patient:{principal.patient_key}"
    return f"{principal.role}:{principal.key_id}"
