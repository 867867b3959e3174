"""Writes audit entries in batches on a thread of its own, off every call's path.

A call's entries are queued when it ends and committed within ``interval`` seconds, together with
every other call's of that moment, in one transaction: a busy server pays one commit per batch,
not one per call. Closing the writer commits whatever is still queued.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session

from mutualrec.security.audit import AuditEvent
from mutualrec.storage import audit_log

_log = logging.getLogger(__name__)
BATCH = 500


class AuditWriter:
    """Appends queued events to this process's own hash chain."""

    def __init__(self, sessions: Callable[[], Session], interval: float = 0.1) -> None:
        self._sessions = sessions
        self._interval = interval
        self._queue: queue.Queue[AuditEvent | None] = queue.Queue()
        self.chain_id = str(uuid.uuid4())
        with sessions() as session, session.begin():
            audit_log.start_chain(session, self.chain_id, dt.datetime.now(dt.UTC))
        # Events queued and not yet committed; flush() waits for it to reach zero.
        self._pending = 0
        self._settled = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="mutualrec-audit", daemon=True)
        self._thread.start()

    def submit(self, events: list[AuditEvent]) -> None:
        """Queue events for the next batch."""
        if not events:
            return
        with self._settled:
            self._pending += len(events)
        for event in events:
            self._queue.put(event)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is committed (or given up); False on timeout."""
        with self._settled:
            return self._settled.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Commit what is queued and stop the thread."""
        self._queue.put(None)
        self._thread.join(30)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            # Gather what arrives within the interval, so one commit carries many calls.
            deadline = time.monotonic() + self._interval
            while len(batch) < BATCH:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._write(batch)
            with self._settled:
                self._pending -= len(batch)
                self._settled.notify_all()

    def _write(self, batch: list[AuditEvent]) -> None:
        for attempt in range(3):
            try:
                with self._sessions() as session, session.begin():
                    audit_log.append(session, self.chain_id, batch)
                return
            except Exception:
                # The index is unreachable: keep trying a little, then say loudly what is lost.
                _log.exception(
                    "audit batch of %d entries not written (try %d)", len(batch), attempt + 1
                )
        _log.error("audit: %d entries lost after 3 attempts", len(batch))
