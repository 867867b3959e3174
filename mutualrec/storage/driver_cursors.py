"""Driver (psycopg) cursors on the engine's pooled connections, for the hot paths' prepared
statements: on a connection lent for one use, or on one a worker thread keeps. Either way the
driver's exceptions come out as SQLAlchemy's, and a connection whose statement failed is
invalidated rather than given back to the pool broken."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection

from mutualrec.storage.driver_errors import as_sqlalchemy_errors


@contextmanager
def cursor_on(pooled: PoolProxiedConnection) -> Iterator[Any]:
    """A driver (psycopg) cursor on ``pooled``. A failure inside invalidates the connection: it
    may be broken (the index ended it), and must not go back to the pool for the next call."""
    try:
        connection = pooled.driver_connection
        assert connection is not None
        with connection.cursor() as cursor:
            yield cursor
    except BaseException:
        pooled.invalidate()
        raise


@contextmanager
def lent_cursor(engine: Engine) -> Iterator[Any]:
    """A driver cursor on a connection of ``engine``'s pool, given back afterwards."""
    with as_sqlalchemy_errors():
        pooled = engine.raw_connection()
        with cursor_on(pooled) as cursor:
            yield cursor
        pooled.close()


class HeldConnection:
    """A driver connection of ``engine`` taken from its pool once and kept, for the hot paths
    of one thread (a batch worker's prepared statements). Taking a connection from the pool and
    giving it back for each statement cost a tenth of a check's Python on the batch worker
    (SQLAlchemy's check-out and check-in bookkeeping), twice per batch of checks.

    Not thread-safe: one per thread. A statement that fails invalidates the connection (it
    may be broken: a dropped server, a network error) and the next takes a fresh one from the
    pool. A connection is kept ``max_age`` seconds at most, then goes back to the pool, which
    recycles it as it does those it lends (idle timeouts of servers and firewalls drop
    connections older than that silently). :meth:`release` gives the connection back.
    """

    def __init__(self, engine: Engine, max_age: float = 300.0) -> None:
        self._engine = engine
        self._max_age = max_age
        self._pooled: PoolProxiedConnection | None = None
        self._taken_at = 0.0

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        """A driver (psycopg) cursor on the held connection."""
        pooled, self._pooled = self._pooled, None
        with as_sqlalchemy_errors():
            if pooled is not None and time.monotonic() - self._taken_at > self._max_age:
                pooled.close()
                pooled = None
            if pooled is None:
                pooled = self._engine.raw_connection()
                self._taken_at = time.monotonic()
            with cursor_on(pooled) as cursor:
                yield cursor
        self._pooled = pooled

    def release(self) -> None:
        """Give the connection back to the pool (call from the thread that used it, or after it
        stopped)."""
        pooled, self._pooled = self._pooled, None
        if pooled is not None:
            pooled.close()
