"""A batch worker's kept connection on real PostgreSQL: kept between statements, dropped when
a statement on it fails, given back to the pool on release."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from mutualrec.storage.db import make_engine
from mutualrec.storage.driver_cursors import HeldConnection

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    made = make_engine(postgres_url, pool_size=2, fast_records=True)
    yield made
    made.dispose()


def _backend(held: HeldConnection) -> int:
    with held.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def test_the_connection_is_kept_between_statements_and_given_back_on_release(
    engine: Engine,
) -> None:
    held = HeldConnection(engine)
    first = _backend(held)
    assert _backend(held) == first
    assert engine.pool.checkedout() == 1
    held.release()
    assert engine.pool.checkedout() == 0


def test_a_failed_statement_drops_the_connection_and_the_next_takes_a_working_one(
    engine: Engine,
) -> None:
    held = HeldConnection(engine)
    first = _backend(held)
    with pytest.raises(Exception, match="division by zero"), held.cursor() as cursor:
        cursor.execute("SELECT 1 / 0")
    assert engine.pool.checkedout() == 0
    assert _backend(held) != first
    held.release()
