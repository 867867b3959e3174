"""Drops a server's cached reference data and keys within a second of an administrator's change.

Every administrative change (institution, qualification, code mapping, price list, catalog, key
revocation) bumps one counter row in the change's own transaction
(:mod:`mutualrec.storage.admin_changes`). A thread of each server reads that row every
``interval`` seconds, one primary-key read, and when it moved invalidates the caches, so the
next check or call reads the change, whichever server or command-line process made it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mutualrec.storage import admin_changes

_log = logging.getLogger(__name__)
# How often a server looks for a change: once a second costs nothing and keeps the promise
# "in effect on every server within about a second".
POLL_SECONDS = 1.0


class ChangeWatch:
    """Polls the change counter and calls ``on_change`` whenever it moved."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        on_change: Callable[[], None],
        interval: float = POLL_SECONDS,
    ) -> None:
        self._sessions = sessions
        self._on_change = on_change
        self._interval = interval
        self._seen = self._read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mutualrec-changes", daemon=True)
        self._thread.start()

    def _read(self) -> int | None:
        try:
            with self._sessions() as session:
                return admin_changes.version(session)
        except SQLAlchemyError:
            # The index is briefly unreachable: the caches' own ages still bound staleness.
            _log.warning("reading the administrators' change counter failed", exc_info=True)
            return None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            seen = self._read()
            if seen is None or seen == self._seen:
                continue
            self._seen = seen
            self._on_change()

    def close(self) -> None:
        """Stop polling."""
        self._stop.set()
        self._thread.join(10)
