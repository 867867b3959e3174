"""Holding a batch back on PostgreSQL, for the tests of checks and decisions batched across calls:
a first call's write waits for a table lock while the other calls queue behind it, so that once
the lock goes they reach the database as one batch; and which transactions wrote which rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import text

from tests.conftest import RunningServer

Reply = TypeVar("Reply")


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail after a minute."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def batch_behind_a_lock(
    server: RunningServer,
    table: str,
    first_call: Callable[[], Reply],
    calls: list[Callable[[], Reply]],
    waiting: Callable[[], int],
    before_release: Callable[[list[Future[Reply]]], None] = lambda _futures: None,
) -> tuple[Future[Reply], list[Future[Reply]]]:
    """Run ``first_call`` alone while its write to ``table`` (a ``WITH recorded AS (INSERT INTO
    table ...`` statement) waits for a lock on it, queue ``calls`` behind it until ``waiting()``
    counts them all, then (after ``before_release`` with their futures) release the lock. The
    futures of the first call and of ``calls``."""
    pool = ThreadPoolExecutor(max_workers=len(calls) + 1)
    with server.runtime.engine.connect() as locker:
        locker.execute(text(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"))
        first = pool.submit(first_call)

        def blocked() -> bool:
            # From another connection: the locker's transaction sees one snapshot of the view.
            # This database's sessions only: another test run on the same server may be waiting
            # in the same statement.
            with server.runtime.engine.connect() as watcher:
                return bool(
                    watcher.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                            " AND datname = current_database() AND query LIKE :statement"
                        ),
                        {"statement": f"WITH recorded AS (INSERT INTO {table}%"},
                    ).scalar()
                )

        wait_for(blocked, f"the first call's write to {table} to wait for the lock")
        futures = [pool.submit(call) for call in calls]
        wait_for(lambda: waiting() == len(calls), "the other calls to queue")
        before_release(futures)
        locker.rollback()
    pool.shutdown(wait=False)
    return first, futures


def writing_transactions(
    server: RunningServer, table: str, column: str, ids: list[str]
) -> set[str]:
    """The transactions that wrote the rows of ``table`` whose ``column`` is one of ``ids``
    (one row each)."""
    with server.runtime.engine.connect() as connection:
        rows = connection.execute(
            text(f"SELECT xmin::text FROM {table} WHERE {column} = ANY(:ids)"), {"ids": ids}
        ).all()
    assert len(rows) == len(set(ids))
    return {row[0] for row in rows}
