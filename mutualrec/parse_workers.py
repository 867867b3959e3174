"""The parse workers: processes for pure CPU work (FHIR documents, thumbnails), started on first
use so that a server which never parses a lab document or renders a thumbnail holds none."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class ParseWorkers(Executor):
    """A process pool made on the first :meth:`submit`.

    Making a pool is not free even before a worker starts: its queues' semaphores start
    multiprocessing's resource tracker, a 13 MiB process of its own. Each worker then pays a
    second of imports and about 130 MiB when it starts.
    """

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._shut = False
        self._lock = threading.Lock()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self._workers,
                    # spawn, not fork: forking a process that runs gRPC's threads is unsafe.
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_parse_worker,
                )
            pool = self._pool
        return pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shut = True
            pool = self._pool
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def _start_parse_worker() -> None:
    """Prepare a parse worker: the server handles signals, and the heavy imports happen now."""
    # Ctrl-C reaches the whole process group; the server shuts its workers down in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    import mutualrec.ingest.lab_ingest  # noqa: F401 - imported for its import time


def _die_with_parent() -> None:
    """Have Linux end this worker when the server dies, even by SIGKILL: a killed server must
    not leave idle workers behind (they were seen to outlive it). Elsewhere a no-op."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    # The server may have died before the request above took effect.
    if os.getppid() == 1:
        os._exit(0)
