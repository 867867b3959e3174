"""The audit use case: writes audit entries in batches on a thread of its own, off every
call's path.

A call's entries are queued when it ends and committed within ``interval`` seconds, together with
every other call's of that moment, in one transaction: a busy server pays one commit per batch,
not one per call. Closing the writer commits whatever is still queued. A batch the index refuses
is written entry by entry, so one bad entry never loses another; an entry lost all the same is
counted, logged and reported by the health service (:data:`AUDIT_HEALTH_SERVICE`).
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

from mutualrec.security.audit import AuditEvent, storable
from mutualrec.storage import audit_log

_log = logging.getLogger(__name__)
BATCH = 500
# The health service name that turns NOT_SERVING once an entry is lost.
AUDIT_HEALTH_SERVICE = "mutualrec.audit"


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
        # Entries that could not be written even one by one: never silent (log, health).
        self._lost = 0
        self._on_loss: list[Callable[[int], None]] = []
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

    @property
    def lost(self) -> int:
        """Entries that could not be written at all since the writer started."""
        return self._lost

    def _write(self, batch: list[AuditEvent]) -> None:
        if self._append(batch, retries=3):
            return
        # One entry the index refuses must not take the others down with it: write them one by
        # one; an entry refused on its own is written as a stand-in that still says who called
        # which RPC on whose data and how it ended.
        lost = 0
        for event in batch:
            if len(batch) > 1 and self._append([event], retries=1):
                continue
            if not self._append([_stand_in(event)], retries=1):
                lost += 1
        if lost:
            with self._settled:
                self._lost += lost
            _log.error(
                "audit: %d entries lost (%d since start); health reports %s NOT_SERVING",
                lost,
                self._lost,
                AUDIT_HEALTH_SERVICE,
            )
            for listener in list(self._on_loss):
                listener(self._lost)

    def _append(self, events: list[AuditEvent], retries: int) -> bool:
        for attempt in range(retries):
            try:
                with self._sessions() as session, session.begin():
                    audit_log.append(session, self.chain_id, events)
                return True
            except Exception:
                _log.exception(
                    "audit: %d entries not written (try %d of %d)",
                    len(events),
                    attempt + 1,
                    retries,
                )
        return False

    def on_loss(self, listener: Callable[[int], None]) -> None:
        """Call ``listener`` with the total lost so far whenever entries are lost (from the
        writer's thread)."""
        self._on_loss.append(listener)


def _stand_in(event: AuditEvent) -> AuditEvent:
    """What is known for sure of an entry the index refused, in values every index takes."""
    return AuditEvent(
        at=dt.datetime.now(dt.UTC),
        role=storable(str(event.role), 16),
        credential=storable(str(event.credential), 40),
        institution_id=event.institution_id,
        patient_key=storable(str(event.patient_key), 64),
        rpc=storable(str(event.rpc), 64),
        what="(the entry as recorded was refused by the index; see the server log)",
        outcome=storable(str(event.outcome), 24),
        peer=storable(str(event.peer), 100),
    )
