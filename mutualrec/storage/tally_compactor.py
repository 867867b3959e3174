"""Folds statistics deltas into the tallies every few seconds, on a thread of its own.

Reports add the deltas not yet folded, so the interval bounds how many rows a report reads
beyond the tallies, not how fresh its numbers are. Several servers on one database may each run
a compactor: each takes only deltas no other is folding.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from mutualrec.storage import statistics_index

_log = logging.getLogger(__name__)


class TallyCompactor:
    """Runs :func:`~mutualrec.storage.statistics_index.compact` every ``interval`` seconds."""

    def __init__(self, engine: Engine, interval: float = 5.0) -> None:
        self._engine = engine
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mutualrec-tally", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Fold what is left and stop the thread."""
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        # The first pass, at start, vacuums even when it folds nothing: dead deltas left behind
        # on a database without autovacuum would otherwise be scanned by every report until the
        # next fold.
        first = True
        while True:
            stopping = self._stop.wait(0 if first else self._interval)
            try:
                if statistics_index.compact(self._engine) or first:
                    statistics_index.vacuum_deltas(self._engine)
                first = False
            except SQLAlchemyError:
                # The deltas stay where they are, counted by reports, and fold next time.
                _log.exception(
                    "folding statistics deltas failed; retrying in %.0f s", self._interval
                )
            if stopping:
                return
