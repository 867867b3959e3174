"""Checks batched across calls (issue 22): many concurrent CheckOrder calls, each answered on
its own and recorded, on SQLite and on PostgreSQL.

The expected verdicts and savings are worked out by hand from the catalog file
(``mutualrec/matching/data/recognition_items.csv``: LAB-K, LAB-NA and LAB-CL are valid 7 days
and priced 4 yuan) and the results submitted below.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select, text

from mutualrec.storage import statistics_index
from mutualrec.storage.models import CheckLine, RecognitionCheck, StatTally
from mutualrec.v1 import common_pb2, recognition_pb2, recognition_pb2_grpc
from tests.batch_lock import batch_behind_a_lock, writing_transactions
from tests.conftest import RunningServer, make_settings, start_server
from tests.fhir_docs import OTHER_PATIENT_ID, PATIENT_ID, entry, observation, patient, submit
from tests.helpers import bad_request
from tests.integration.test_recognition import ASKER, ISSUER, _fhir_time, _setup

ZHANG = PATIENT_ID  # potassium a day ago (recognizable), chloride 8 days ago (expired)
WANG = OTHER_PATIENT_ID  # sodium a day ago (recognizable)
LI = "500112199007211020"  # nothing
ORDER = ("LAB-K", "LAB-NA", "LAB-CL")
# Per patient: the verdicts of ORDER's lines, the total saving, the lab value each line cites.
EXPECTED = {
    ZHANG: (["RECOGNIZABLE", "NO_RESULT", "EXPIRED"], "4.00", ["4.1", "", "101"]),
    WANG: (["NO_RESULT", "RECOGNIZABLE", "NO_RESULT"], "4.00", ["", "139", ""]),
    LI: (["NO_RESULT", "NO_RESULT", "NO_RESULT"], "0.00", ["", "", ""]),
}


@pytest.fixture
def pg_server(tmp_path: Path, postgres_url: str) -> Iterator[RunningServer]:
    """The service on PostgreSQL: the tests holding a batch back use its table lock."""
    yield from start_server(make_settings(tmp_path, MUTUALREC_DATABASE_URL=postgres_url))


def _results(server: RunningServer) -> str:
    """Zhang's and Wang's results, from the qualified issuer; the asking hospital's key."""
    keys = _setup(server)
    now = dt.datetime.now(dt.UTC)
    day_ago, week_ago = (
        _fhir_time(now - dt.timedelta(days=1)),
        _fhir_time(now - dt.timedelta(days=8)),
    )
    submit(
        server.channel,
        keys[ISSUER],
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                patient("urn:uuid:zhang", ZHANG),
                entry(observation("B-K", subject="urn:uuid:zhang", issued=day_ago), "urn:uuid:o1"),
                entry(
                    observation(
                        "B-CL",
                        loinc="2075-0",
                        value=101,
                        subject="urn:uuid:zhang",
                        issued=week_ago,
                    ),
                    "urn:uuid:o2",
                ),
                patient("urn:uuid:wang", WANG),
                entry(
                    observation(
                        "B-NA", loinc="2951-2", value=139, subject="urn:uuid:wang", issued=day_ago
                    ),
                    "urn:uuid:o3",
                ),
            ],
        },
    )
    return keys[ASKER]


def _call(
    server: RunningServer,
    key: str,
    patient_id: str,
    order_id: str,
    codes: tuple[str, ...] = ORDER,
    timeout: float = 60,
) -> Callable[[], recognition_pb2.CheckOrderResponse]:
    stub = recognition_pb2_grpc.RecognitionServiceStub(server.channel)

    def call() -> recognition_pb2.CheckOrderResponse:
        response: recognition_pb2.CheckOrderResponse = stub.CheckOrder(
            recognition_pb2.CheckOrderRequest(
                patient=common_pb2.PatientIdentity(
                    document_type=common_pb2.RESIDENT_ID_CARD, document_number=patient_id
                ),
                ordered_codes=list(codes),
                context=recognition_pb2.ClinicalContext(order_id=order_id, department="内科"),
            ),
            metadata=(("authorization", f"Bearer {key}"),),
            timeout=timeout,
        )
        return response

    return call


def _assert_answered(
    server: RunningServer,
    patient_id: str,
    order_id: str,
    response: recognition_pb2.CheckOrderResponse,
) -> None:
    """``response`` is the answer for ``patient_id``'s order, and recorded as such."""
    verdicts, saving, values = EXPECTED[patient_id]
    assert [recognition_pb2.Verdict.Name(line.verdict) for line in response.lines] == verdicts
    assert [line.item_code for line in response.lines] == list(ORDER)
    assert response.total_estimated_saving == saving
    assert [line.result.lab.value for line in response.lines] == values
    with server.runtime.sessions() as session:
        check = session.get(RecognitionCheck, response.check_id)
        assert check is not None
        assert (check.order_id, check.department) == (order_id, "内科")
        lines = session.execute(
            select(CheckLine.line, CheckLine.item_code, CheckLine.verdict)
            .where(CheckLine.check_id == response.check_id)
            .order_by(CheckLine.line)
        ).all()
    assert [tuple(row) for row in lines] == [
        (n, code, verdict) for n, (code, verdict) in enumerate(zip(ORDER, verdicts, strict=True))
    ]


def _checks_recorded(server: RunningServer) -> int:
    with server.runtime.sessions() as session:
        return len(session.execute(select(RecognitionCheck.id)).all())


def test_concurrent_checks_each_get_their_own_answer(server: RunningServer) -> None:
    key = _results(server)
    # Different patients, the same patient many times, and one bad order among them.
    calls = [(patient_id, f"ORD-{n}") for n in range(10) for patient_id in (ZHANG, WANG, LI)]
    with ThreadPoolExecutor(max_workers=len(calls) + 1) as pool:
        futures = [pool.submit(_call(server, key, p, order)) for p, order in calls]
        bad = pool.submit(_call(server, key, ZHANG, "ORD-BAD", ("LAB-K", " ", "LAB-CL")))
        for (patient_id, order), future in zip(calls, futures, strict=True):
            _assert_answered(server, patient_id, order, future.result())
        with pytest.raises(grpc.RpcError) as rejected:
            bad.result()
    assert rejected.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(rejected.value) == {"ordered_codes[1]": "EMPTY_CODE"}
    assert _checks_recorded(server) == len(calls)
    assert len({f.result().check_id for f in futures}) == len(calls)
    # The statistics count every check and line once, however the batches summed their deltas:
    # 30 checks of 3 lines; Zhang's potassium and Wang's sodium recognizable, 10 times each.
    statistics_index.compact(server.runtime.engine)
    with server.runtime.sessions() as session:
        by_item = session.execute(
            select(
                StatTally.group_key,
                func.sum(StatTally.checks),
                func.sum(StatTally.items_checked),
                func.sum(StatTally.items_recognizable),
            )
            .where(StatTally.group_by == "item")
            .group_by(StatTally.group_key)
        ).all()
        by_asker = session.execute(
            select(
                func.sum(StatTally.checks),
                func.sum(StatTally.items_checked),
                func.sum(StatTally.items_recognizable),
            ).where(StatTally.group_by == "asking_institution")
        ).one()
    assert sorted(tuple(row) for row in by_item) == [
        ("LAB-CL", 30, 30, 0),
        ("LAB-K", 30, 30, 10),
        ("LAB-NA", 30, 30, 10),
    ]
    assert tuple(by_asker) == (30, 90, 20)


def _batch_behind_a_lock(
    server: RunningServer,
    key: str,
    calls: list[Callable[[], recognition_pb2.CheckOrderResponse]],
    before_release: Callable[[list[Future[recognition_pb2.CheckOrderResponse]]], None] = (
        lambda _futures: None
    ),
) -> tuple[
    Future[recognition_pb2.CheckOrderResponse], list[Future[recognition_pb2.CheckOrderResponse]]
]:
    """A first check of Li's alone, ``calls`` queued behind it, released as one batch."""
    return batch_behind_a_lock(
        server,
        "recognition_check",
        _call(server, key, LI, "ORD-FIRST"),
        calls,
        lambda: server.runtime.recognition.checks_waiting,
        before_release,
    )


def _transactions(server: RunningServer, check_ids: list[str]) -> set[str]:
    """The transactions that recorded these checks."""
    return writing_transactions(server, "recognition_check", "id", check_ids)


def test_checks_queued_together_share_one_record_and_a_bad_one_fails_alone(
    pg_server: RunningServer,
) -> None:
    key = _results(pg_server)
    calls = [(patient_id, f"ORD-{n}") for n in range(4) for patient_id in (ZHANG, WANG, LI)]
    first, futures = _batch_behind_a_lock(
        pg_server,
        key,
        [_call(pg_server, key, p, order) for p, order in calls]
        + [_call(pg_server, key, WANG, "ORD-BAD", ("LAB-K", "LAB-NA", ""))],
    )
    _assert_answered(pg_server, LI, "ORD-FIRST", first.result())
    answers = [f.result() for f in futures[:-1]]
    for (patient_id, order), response in zip(calls, answers, strict=True):
        _assert_answered(pg_server, patient_id, order, response)
    with pytest.raises(grpc.RpcError) as rejected:
        futures[-1].result()
    assert rejected.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(rejected.value) == {"ordered_codes[2]": "EMPTY_CODE"}
    # One statement recorded the whole batch: one transaction, not the first check's.
    batch = _transactions(pg_server, [a.check_id for a in answers])
    assert len(batch) == 1
    assert batch != _transactions(pg_server, [first.result().check_id])
    assert _checks_recorded(pg_server) == len(calls) + 1


def test_a_check_the_shared_record_refuses_fails_alone(pg_server: RunningServer) -> None:
    key = _results(pg_server)
    # The database refuses one order's check: the batch's record fails as a whole, and each
    # check is then recorded on its own, so only that one fails, as it would alone.
    with pg_server.runtime.engine.begin() as connection:
        connection.execute(
            text(
                "ALTER TABLE recognition_check ADD CONSTRAINT test_refused"
                " CHECK (order_id <> 'ORD-REFUSED')"
            )
        )
    refused = _call(pg_server, key, ZHANG, "ORD-REFUSED")
    calls = [(patient_id, f"ORD-{n}") for n in range(3) for patient_id in (ZHANG, WANG, LI)]
    first, futures = _batch_behind_a_lock(
        pg_server, key, [_call(pg_server, key, p, order) for p, order in calls] + [refused]
    )
    first.result()
    for (patient_id, order), future in zip(calls, futures[:-1], strict=True):
        _assert_answered(pg_server, patient_id, order, future.result())
    with pytest.raises(grpc.RpcError) as in_batch:
        futures[-1].result()
    with pytest.raises(grpc.RpcError) as by_itself:
        refused()
    assert in_batch.value.code() == by_itself.value.code() == grpc.StatusCode.UNKNOWN
    assert _checks_recorded(pg_server) == len(calls) + 1


def test_a_caller_that_gives_up_in_the_queue_leaves_the_others_answered(
    pg_server: RunningServer,
) -> None:
    key = _results(pg_server)
    calls = [(patient_id, f"ORD-{n}") for n in range(2) for patient_id in (ZHANG, WANG, LI)]
    impatient = _call(pg_server, key, ZHANG, "ORD-IMPATIENT", timeout=1)

    def expired(futures: list[Future[recognition_pb2.CheckOrderResponse]]) -> None:
        # Its deadline passes while it waits behind the batch at the database.
        with pytest.raises(grpc.RpcError) as gave_up:
            futures[-1].result()
        assert gave_up.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    first, futures = _batch_behind_a_lock(
        pg_server,
        key,
        [_call(pg_server, key, p, order) for p, order in calls] + [impatient],
        expired,
    )
    _assert_answered(pg_server, LI, "ORD-FIRST", first.result())
    for (patient_id, order), future in zip(calls, futures[:-1], strict=True):
        _assert_answered(pg_server, patient_id, order, future.result())
    # The pg_server still answers checks, alone and in batches.
    _assert_answered(pg_server, WANG, "ORD-AFTER", _call(pg_server, key, WANG, "ORD-AFTER")())
