"""Reference data every check reads: catalog, institutions, qualifications, mappings, prices.

Small (a catalog, about a thousand institutions) and read on every check, so it is held in
memory. An administrator's change bumps a counter every server polls about once a second
(:class:`mutualrec.change_watch.ChangeWatch`), which invalidates this cache; ``ttl`` only bounds
how old a snapshot can get should that poll fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from mutualrec.matching.order_lines import Reference
from mutualrec.matching.policy import DEFAULT_POLICY, Policy
from mutualrec.statistics.report import Directory
from mutualrec.storage import catalog_store, policy_store, statistics_index

DEFAULT_TTL_SECONDS = 30.0


@dataclass(frozen=True)
class ReferenceData(Reference):
    """One consistent snapshot of the reference data."""

    loaded_at: float
    # How statistics key what a check or a decision adds (districts, codes, categories).
    directory: Directory = field(default_factory=lambda: Directory({}, {}))
    # The region's rules: the policy version loaded last, the packaged one before any is.
    policy: Policy = DEFAULT_POLICY
    _by_code: dict[str, int] = field(default_factory=dict)

    def institution_id(self, code: str) -> int | None:
        """The id of the institution with ``code``."""
        if not self._by_code:
            self._by_code.update({f.code: i for i, f in self.institutions.items()})
        return self._by_code.get(code)


class ReferenceCache:
    """Reference data loaded from the index, refreshed after ``ttl`` seconds."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        ttl: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._data: ReferenceData | None = None
        self._mappings: dict[int, tuple[float, dict[str, tuple[str, ...]]]] = {}
        self._prices: dict[int, tuple[float, dict[str, int]]] = {}
        # Bumped by invalidate(): a load that began before is not kept (it may predate the
        # change that caused the invalidation).
        self._generation = 0

    def _fresh(self, loaded_at: float) -> bool:
        return self._clock() - loaded_at < self._ttl

    def data(self) -> ReferenceData:
        """The current snapshot, loading it when missing or stale."""
        data = self._data
        if data is not None and self._fresh(data.loaded_at):
            return data
        with self._lock:
            if self._data is None or not self._fresh(self._data.loaded_at):
                # Loads under the lock, which invalidate() takes too: an invalidation waits for
                # a load in progress and then drops it.
                with self._sessions() as session:
                    self._data = ReferenceData(
                        catalog=catalog_store.current_catalog(session),
                        institutions=catalog_store.institution_facts(session),
                        qualifications=tuple(catalog_store.qualifications(session)),
                        loaded_at=self._clock(),
                        directory=statistics_index.directory(session),
                        policy=policy_store.current_policy(session),
                    )
            return self._data

    def data_knowing(self, institution_id: int) -> ReferenceData:
        """The current snapshot, loaded afresh if it predates ``institution_id``: a hospital
        registered a moment ago checks at once instead of failing until the snapshot ages."""
        data = self.data()
        if institution_id in data.institutions:
            return data
        with self._lock:
            if self._data is data:
                self._data = None
        return self.data()

    def mappings(self, institution_id: int) -> dict[str, tuple[str, ...]]:
        """The institution's local code mapping."""
        cached = self._mappings.get(institution_id)
        if cached is not None and self._fresh(cached[0]):
            return cached[1]
        generation = self._generation
        with self._sessions() as session:
            found = catalog_store.institution_mappings(session, institution_id)
        with self._lock:
            if generation == self._generation:
                self._mappings[institution_id] = (self._clock(), found)
        return found

    def prices(self, institution_id: int) -> dict[str, int]:
        """The institution's own price list in fen (empty when none is loaded)."""
        cached = self._prices.get(institution_id)
        if cached is not None and self._fresh(cached[0]):
            return cached[1]
        generation = self._generation
        with self._sessions() as session:
            found = catalog_store.price_list(session, institution_id)
        with self._lock:
            if generation == self._generation:
                self._prices[institution_id] = (self._clock(), found)
        return found

    def invalidate(self) -> None:
        """Forget everything: the next read loads afresh (after an administrator's change)."""
        with self._lock:
            self._generation += 1
            self._data = None
            self._mappings.clear()
            self._prices.clear()
