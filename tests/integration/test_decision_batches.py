"""Decisions batched across calls (issue 22): many concurrent RecordDecision calls, each
answered on its own and recorded once, on SQLite and on PostgreSQL.

The checks are test_check_batches.py's: Zhang's order answers line 0 (LAB-K) RECOGNIZABLE and
line 2 (LAB-CL) EXPIRED, Wang's line 1 (LAB-NA) RECOGNIZABLE; both recognizable lines save the
catalog's 4 yuan (400 fen), so the expected tallies below are counted by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select, text

from mutualrec.storage import statistics_index
from mutualrec.storage.models import Decision, StatTally
from mutualrec.v1 import recognition_pb2, recognition_pb2_grpc
from tests.batch_lock import batch_behind_a_lock, writing_transactions
from tests.conftest import RunningServer, make_settings, start_server
from tests.helpers import bad_request
from tests.integration.test_check_batches import LI, WANG, ZHANG, _call, _results

Reply = recognition_pb2.RecordDecisionResponse
UNKNOWN_CHECK = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def pg_server(tmp_path: Path, postgres_url: str) -> Iterator[RunningServer]:
    """The service on PostgreSQL: the tests holding a batch back use its table lock."""
    yield from start_server(make_settings(tmp_path, MUTUALREC_DATABASE_URL=postgres_url))


def _checks(server: RunningServer, key: str, patient_id: str, count: int) -> list[str]:
    """``count`` checks of ``patient_id``'s order, one after another: their ids."""
    return [_call(server, key, patient_id, f"ORD-{n}")().check_id for n in range(count)]


def _decision(
    server: RunningServer,
    key: str,
    check_id: str,
    line: int | str,
    timeout: float = 60,
    **fields: Any,
) -> Callable[[], Reply]:
    stub = recognition_pb2_grpc.RecognitionServiceStub(server.channel)
    where = {"item_code": line} if isinstance(line, str) else {"line": line}

    def call() -> Reply:
        response: Reply = stub.RecordDecision(
            recognition_pb2.RecordDecisionRequest(check_id=check_id, **where, **fields),
            metadata=(("authorization", f"Bearer {key}"),),
            timeout=timeout,
        )
        return response

    return call


ACCEPT = {"decision": recognition_pb2.ACCEPTED}
EMERGENCY = {"decision": recognition_pb2.DECLINED, "reason": recognition_pb2.EMERGENCY}
PATIENT_ASKS = {"decision": recognition_pb2.DECLINED, "reason": recognition_pb2.PATIENT_REQUEST}


def _refused(future: Future[Reply]) -> tuple[grpc.StatusCode, dict[str, str]]:
    with pytest.raises(grpc.RpcError) as refused:
        future.result()
    return refused.value.code(), bad_request(refused.value)


def _item_tallies(server: RunningServer) -> list[tuple[Any, ...]]:
    """Per item: accepted, saving in fen, declined, declined for emergency, at the patient's
    request; after folding every delta."""
    statistics_index.compact(server.runtime.engine)
    with server.runtime.sessions() as session:
        rows = session.execute(
            select(
                StatTally.group_key,
                func.sum(StatTally.accepted),
                func.sum(StatTally.saving_fen),
                func.sum(StatTally.declined),
                func.sum(StatTally.declined_emergency),
                func.sum(StatTally.declined_patient_request),
            )
            .where(StatTally.group_by == "item")
            .group_by(StatTally.group_key)
        ).all()
    return sorted(tuple(row) for row in rows)


def _decisions_recorded(server: RunningServer) -> int:
    with server.runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Decision)) or 0)


def test_concurrent_decisions_each_recorded_once_with_exact_tallies(
    server: RunningServer,
) -> None:
    key = _results(server)
    zhang, wang = _checks(server, key, ZHANG, 8), _checks(server, key, WANG, 6)
    # Zhang's potassium accepted on every check (two by item code, one twice); Wang's sodium
    # declined, four for an emergency and two at the patient's request.
    calls = (
        [_decision(server, key, c, 0, **ACCEPT) for c in zhang[:6]]
        + [_decision(server, key, c, "LAB-K", **ACCEPT) for c in zhang[6:]]
        + [_decision(server, key, zhang[0], 0, **ACCEPT)]
        + [_decision(server, key, c, 1, **EMERGENCY) for c in wang[:4]]
        + [_decision(server, key, c, "LAB-NA", **PATIENT_ASKS) for c in wang[4:]]
    )
    bad = [
        _decision(server, key, UNKNOWN_CHECK, 0, **ACCEPT),
        _decision(server, key, zhang[1], 2, **ACCEPT),  # LAB-CL expired: nothing to recognize
        _decision(server, key, wang[0], 1, decision=recognition_pb2.DECLINED),  # no reason
    ]
    with ThreadPoolExecutor(max_workers=len(calls) + len(bad)) as pool:
        futures = [pool.submit(call) for call in calls + bad]
        answers = [f.result() for f in futures[: len(calls)]]
        unknown, expired, no_reason = (_refused(f) for f in futures[len(calls) :])
    assert unknown[0] == grpc.StatusCode.NOT_FOUND
    assert expired == (grpc.StatusCode.FAILED_PRECONDITION, {"line": "NOT_RECOGNIZABLE"})
    assert no_reason == (grpc.StatusCode.INVALID_ARGUMENT, {"reason": "DECLINE_REASON_REQUIRED"})
    assert [(a.check_id, a.line) for a in answers] == (
        [(c, 0) for c in zhang] + [(zhang[0], 0)] + [(c, 1) for c in wang]
    )
    assert [a.booked_saving for a in answers] == ["4.00"] * 9 + ["0.00"] * 6
    assert [a.reason for a in answers[9:]] == [recognition_pb2.EMERGENCY] * 4 + [
        recognition_pb2.PATIENT_REQUEST
    ] * 2
    # The doubled decision on Zhang's first check: one call recorded it, the other was told so.
    assert sorted(a.already_recorded for a in (answers[0], answers[8])) == [False, True]
    assert not any(a.already_recorded for a in answers[1:8] + answers[9:])
    assert _decisions_recorded(server) == 14
    expected = [
        ("LAB-CL", 0, 0, 0, 0, 0),  # checked, never decided
        ("LAB-K", 8, 3200, 0, 0, 0),
        ("LAB-NA", 0, 0, 6, 4, 2),
    ]
    assert _item_tallies(server) == expected

    # Repeated afterwards, as before batching: the same decision is told it is recorded, a
    # different one ALREADY_DECIDED; neither counts again.
    again = _decision(server, key, wang[0], 1, **EMERGENCY)()
    assert (again.already_recorded, again.reason) == (True, recognition_pb2.EMERGENCY)
    with pytest.raises(grpc.RpcError) as changed:
        _decision(server, key, zhang[2], 0, **PATIENT_ASKS)()
    assert changed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert bad_request(changed.value) == {"decision": "ALREADY_DECIDED"}
    assert _decisions_recorded(server) == 14
    assert _item_tallies(server) == expected


def _batch_behind_a_lock(
    server: RunningServer,
    first_call: Callable[[], Reply],
    calls: list[Callable[[], Reply]],
    before_release: Callable[[list[Future[Reply]]], None] = lambda _futures: None,
) -> tuple[Future[Reply], list[Future[Reply]]]:
    """``first_call`` alone, ``calls`` queued behind it, released as one batch."""
    return batch_behind_a_lock(
        server,
        "decision",
        first_call,
        calls,
        lambda: server.runtime.recognition.decisions_waiting,
        before_release,
    )


def _transactions(server: RunningServer, check_ids: list[str]) -> set[str]:
    """The transactions that recorded the decisions on these checks."""
    return writing_transactions(server, "decision", "check_id", check_ids)


def test_decisions_queued_together_share_one_write_and_a_bad_one_fails_alone(
    pg_server: RunningServer,
) -> None:
    key = _results(pg_server)
    zhang, wang = _checks(pg_server, key, ZHANG, 5), _checks(pg_server, key, WANG, 3)
    batch = (
        [_decision(pg_server, key, c, 0, **ACCEPT) for c in zhang[1:]]
        + [_decision(pg_server, key, c, 1, **EMERGENCY) for c in wang]
        # Twice the same decision on one line in the batch: recorded once, the other told so.
        + [_decision(pg_server, key, zhang[1], "LAB-K", **ACCEPT)]
        + [_decision(pg_server, key, UNKNOWN_CHECK, 0, **ACCEPT)]
    )
    first, futures = _batch_behind_a_lock(
        pg_server, _decision(pg_server, key, zhang[0], 0, **ACCEPT), batch
    )
    assert not first.result().already_recorded
    answers = [f.result() for f in futures[:-1]]
    assert [(a.check_id, a.line, a.decision) for a in answers] == (
        [(c, 0, recognition_pb2.ACCEPTED) for c in zhang[1:]]
        + [(c, 1, recognition_pb2.DECLINED) for c in wang]
        + [(zhang[1], 0, recognition_pb2.ACCEPTED)]
    )
    assert sorted(a.already_recorded for a in (answers[0], answers[-1])) == [False, True]
    assert not any(a.already_recorded for a in answers[1:-1])
    assert _refused(futures[-1])[0] == grpc.StatusCode.NOT_FOUND
    # One statement recorded the whole batch: one transaction, not the first decision's.
    together = _transactions(pg_server, zhang[1:] + wang)
    assert len(together) == 1
    assert together != _transactions(pg_server, zhang[:1])
    assert _decisions_recorded(pg_server) == 8
    assert _item_tallies(pg_server) == [
        ("LAB-CL", 0, 0, 0, 0, 0),
        ("LAB-K", 5, 2000, 0, 0, 0),
        ("LAB-NA", 0, 0, 3, 3, 0),
    ]


def test_a_decision_the_shared_write_refuses_fails_alone(pg_server: RunningServer) -> None:
    key = _results(pg_server)
    zhang, wang = _checks(pg_server, key, ZHANG, 4), _checks(pg_server, key, WANG, 2)
    # The database refuses one decision: the batch's write fails as a whole, and each decision
    # is then written on its own, so only that one fails, as it would alone.
    with pg_server.runtime.engine.begin() as connection:
        connection.execute(
            text("ALTER TABLE decision ADD CONSTRAINT test_refused CHECK (reason_text <> 'NO')")
        )
    refused = _decision(
        pg_server,
        key,
        wang[1],
        1,
        decision=recognition_pb2.DECLINED,
        reason=recognition_pb2.OTHER,
        reason_text="NO",
    )
    first, futures = _batch_behind_a_lock(
        pg_server,
        _decision(pg_server, key, zhang[0], 0, **ACCEPT),
        [_decision(pg_server, key, c, 0, **ACCEPT) for c in zhang[1:]]
        + [_decision(pg_server, key, wang[0], 1, **PATIENT_ASKS), refused],
    )
    first.result()
    answers = [f.result() for f in futures[:-1]]
    assert [a.already_recorded for a in answers] == [False] * 4
    in_batch = _refused(futures[-1])
    assert in_batch == _refused(ThreadPoolExecutor(1).submit(refused))
    assert in_batch[0] == grpc.StatusCode.UNKNOWN
    assert _decisions_recorded(pg_server) == 5
    assert _item_tallies(pg_server) == [
        ("LAB-CL", 0, 0, 0, 0, 0),
        ("LAB-K", 4, 1600, 0, 0, 0),
        ("LAB-NA", 0, 0, 1, 0, 1),
    ]


def test_a_decision_that_gives_up_in_the_queue_leaves_the_others_answered(
    pg_server: RunningServer,
) -> None:
    key = _results(pg_server)
    zhang = _checks(pg_server, key, ZHANG, 4)
    impatient = _decision(pg_server, key, zhang[3], 0, timeout=1, **ACCEPT)

    def expired(futures: list[Future[Reply]]) -> None:
        # Its deadline passes while it waits behind the batch at the database.
        with pytest.raises(grpc.RpcError) as gave_up:
            futures[-1].result()
        assert gave_up.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    first, futures = _batch_behind_a_lock(
        pg_server,
        _decision(pg_server, key, zhang[0], 0, **ACCEPT),
        [_decision(pg_server, key, c, 0, **ACCEPT) for c in zhang[1:3]] + [impatient],
        expired,
    )
    assert not first.result().already_recorded
    assert [f.result().already_recorded for f in futures[:-1]] == [False, False]
    # Its line was never worked on: it is still open, and the server still decides.
    assert not _decision(pg_server, key, zhang[3], 0, **ACCEPT)().already_recorded
    assert _call(pg_server, key, LI, "ORD-AFTER")().check_id
    assert _decisions_recorded(pg_server) == 4
