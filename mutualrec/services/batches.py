"""Calls' work done in batches: what arrives while a batch runs goes together in the next one.

An ordering-time check costs two SQL statements whatever its size, and at a few hundred checks a
second those round trips (driver, thread hand-offs, the database's per-statement work) cost more
than the checks themselves. A :class:`Batcher` queues the calls' items for one worker thread,
which takes every item waiting (up to a maximum) and hands them to one function that answers each
item on its own. No timer: a call that finds the worker idle goes alone at once, so batching adds
no latency when the server is quiet and grows with the load (like a database's group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from mutualrec.violations import Unavailable

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True, slots=True)
class _Waiting(Generic[In, Out]):
    item: In
    future: asyncio.Future[Out]
    loop: asyncio.AbstractEventLoop


def _settle(answers: Sequence[tuple[asyncio.Future[Out], Out | Exception]]) -> None:
    """On the callers' event loop: give each its answer, unless it gave up meanwhile."""
    for future, answer in answers:
        if future.done():  # cancelled: the call's deadline passed or its client left
            continue
        if isinstance(answer, Exception):
            future.set_exception(answer)
        else:
            future.set_result(answer)


class Batcher(Generic[In, Out]):
    """One worker thread answering queued items in batches with ``handle``.

    ``handle`` gets the items of a batch and returns one outcome per item, in order: an answer,
    or the exception that item's caller gets; it must not let one item's failure decide
    another's. Should it raise all the same, every caller of the batch gets that exception.
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[list[In]], list[Out | Exception]],
        max_batch: int,
    ) -> None:
        self._name = name
        self._handle = handle
        self._max_batch = max(1, max_batch)
        self._queue: queue.SimpleQueue[_Waiting[In, Out] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    async def submit(self, item: In) -> Out:
        """``item``'s answer, once its batch is done; :class:`Unavailable` once closed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        with self._lock:
            # Checked and queued under the lock close() takes: an item is either ahead of the
            # worker's stop mark (answered) or refused, never queued behind it to wait for an
            # answer no one will give (the caller's whole deadline, then a timeout).
            if self._closed:
                raise Unavailable(f"{self._name} is shutting down; try again")
            self._start()
            self._queue.put(_Waiting(item, future, loop))
        return await future

    @property
    def waiting(self) -> int:
        """Items queued for a batch that has not started yet (approximate while calls arrive)."""
        return self._queue.qsize()

    def _start(self) -> None:
        """Start the worker on first use (a process that never checks holds no thread for it);
        called with the lock held."""
        if self._thread is None:
            thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            thread.start()
            self._thread = thread

    def close(self) -> None:
        """Answer what is queued, then stop the worker; later items are refused."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    waiting = self._queue.get_nowait()
                except queue.Empty:
                    break
                if waiting is None:
                    stop = True
                    break
                batch.append(waiting)
            # A caller that gave up before its batch started is not worked on (as a call queued
            # for a worker thread is not run once cancelled); a benign race with the loop thread:
            # one that gives up just now is answered to no one.
            live = [w for w in batch if not w.future.done()]
            if live:
                self._answer(live)

    def _answer(self, batch: list[_Waiting[In, Out]]) -> None:
        try:
            outcomes = self._handle([w.item for w in batch])
        except Exception as exc:  # a bug of handle's: every caller learns of it, the worker lives
            outcomes = [exc] * len(batch)
        assert len(outcomes) == len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Out], Out | Exception]]]
        by_loop = {}
        for waiting, outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(waiting.loop, []).append((waiting.future, outcome))
        for loop, answers in by_loop.items():
            # One wake-up of each loop per batch, not one per call.
            with contextlib.suppress(RuntimeError):  # the loop closed: its callers are gone
                loop.call_soon_threadsafe(_settle, answers)
