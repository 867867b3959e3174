"""The parse workers' pool: made on first use, usable, and refusing work once shut down."""

from __future__ import annotations

import operator

import pytest

from mutualrec.parse_workers import ParseWorkers


def test_work_runs_in_a_worker_made_on_first_use() -> None:
    workers = ParseWorkers(1)
    try:
        assert workers.submit(operator.mul, 6, 7).result(timeout=60) == 42
    finally:
        workers.shutdown()
    with pytest.raises(RuntimeError):
        workers.submit(operator.mul, 1, 1)


def test_an_unused_pool_shuts_down_and_then_refuses_work() -> None:
    workers = ParseWorkers(2)
    workers.shutdown()
    with pytest.raises(RuntimeError):
        workers.submit(operator.mul, 1, 1)
