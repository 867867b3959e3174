"""An index that cannot be reached while a caller authenticates: every door answers "try again"
(gRPC UNAVAILABLE, HTTP 503 with a problem body), never an unknown fault, and answers again once
the index is back."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import create_engine, make_url, text

from mutualrec.client.upload import auth_metadata
from mutualrec.v1 import common_pb2, recognition_pb2, recognition_pb2_grpc
from tests.cds_client import Ehr, hook_request
from tests.conftest import RunningServer, make_settings, start_server
from tests.fhir_docs import PATIENT_ID

HOSPITAL = "H500106002"


@pytest.fixture
def served(tmp_path: Path, postgres_url: str) -> Iterator[RunningServer]:
    yield from start_server(make_settings(tmp_path, MUTUALREC_DATABASE_URL=postgres_url))


def _allow_connections(admin_url: str, database: str, allowed: bool) -> None:
    """Let the database take connections or not; not: its open ones are ended too, as a
    restarting or unreachable server would end them."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(
            text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
        )
        if not allowed:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": database},
            )
    admin.dispose()


def _check(server: RunningServer, key: str) -> recognition_pb2.CheckOrderResponse:
    request = recognition_pb2.CheckOrderRequest(
        patient=common_pb2.PatientIdentity(
            document_type=common_pb2.RESIDENT_ID_CARD, document_number=PATIENT_ID
        ),
        ordered_codes=["LAB-K"],
        context=recognition_pb2.ClinicalContext(order_id="ORD-1", department="内科"),
    )
    return recognition_pb2_grpc.RecognitionServiceStub(server.channel).CheckOrder(  # type: ignore[no-any-return]
        request, metadata=auth_metadata(key), timeout=30
    )


def _http_status(server: RunningServer, key: str) -> tuple[int, dict[str, object]]:
    assert server.http_url is not None
    request = urllib.request.Request(
        f"{server.http_url}/dicomweb/studies", headers={"Authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_key_checked_while_the_index_is_down_is_unavailable_not_unknown(
    served: RunningServer, postgres_admin_url: str, postgres_url: str
) -> None:
    # Keys never used yet: no cache can answer for them, the index must be read.
    grpc_key = served.add_hospital(HOSPITAL)
    http_key = served.add_hospital("H500106003")
    served.add_hospital("H500106004")
    ehr = Ehr(served, "https://ehr.example.org")
    ehr.register("H500106004")
    order_select = hook_request("order-select", [], PATIENT_ID)
    database = str(make_url(postgres_url).database)
    _allow_connections(postgres_admin_url, database, False)
    try:
        with pytest.raises(grpc.RpcError) as refused:
            _check(served, grpc_key)
        status, problem = _http_status(served, http_key)
        cds = ehr.post("/cds-services/order-select", order_select)
    finally:
        _allow_connections(postgres_admin_url, database, True)

    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "the credential cannot be checked now" in str(refused.value.details())
    assert status == 503
    assert "the credential cannot be checked now" in str(problem.get("detail"))
    assert cds.status_code == 503, cds.text
    assert "the token cannot be checked now" in cds.json()["detail"]
    # Back: the same keys are accepted (the first call may still meet a connection the outage
    # ended, and is then UNAVAILABLE too, never anything else).
    codes: list[grpc.StatusCode] = []
    reply = None
    while reply is None and len(codes) < 3:
        try:
            reply = _check(served, grpc_key)
        except grpc.RpcError as again:
            codes.append(again.code())
    assert set(codes) <= {grpc.StatusCode.UNAVAILABLE}
    assert reply is not None, "the server did not answer once the index was back"
    assert [line.ordered_code for line in reply.lines] == ["LAB-K"]
    # No study is held: QIDO's "no content".
    assert _http_status(served, http_key)[0] == 204


def _used_once(
    served: RunningServer,
) -> tuple[str, Ehr, dict[str, Any], recognition_pb2.CheckOrderResponse]:
    """A hospital's key that checked once, and an EHR that called order-select once: the key,
    the EHR, its call's body, and the check."""
    key = served.add_hospital(HOSPITAL)
    served.add_hospital("H500106004")
    ehr = Ehr(served, "https://ehr.example.org")
    ehr.register("H500106004")
    order_select = hook_request("order-select", [], PATIENT_ID)
    checked = _check(served, key)
    assert ehr.post("/cds-services/order-select", order_select).status_code == 200
    return key, ehr, order_select, checked


def _failures_before_an_answer(call: Callable[[], object], tries: int = 3) -> list[grpc.StatusCode]:
    """The codes of ``call``'s failures before it is answered (all ``tries`` of them if never)."""
    codes: list[grpc.StatusCode] = []
    while len(codes) < tries:
        try:
            call()
            break
        except grpc.RpcError as failed:
            codes.append(failed.code())
    return codes


def _end_connections(admin_url: str, database: str) -> int:
    """End every connection to ``database`` (a restarted index, a failover); how many."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        ended = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": database},
        ).scalar_one()
    admin.dispose()
    return int(ended)


def test_checks_are_answered_again_after_the_index_ended_the_connections_they_kept(
    served: RunningServer, postgres_admin_url: str, postgres_url: str
) -> None:
    key = served.add_hospital(HOSPITAL)
    # The batch workers' connections are taken and kept by these.
    assert [line.ordered_code for line in _check(served, key).lines] == ["LAB-K"]
    assert [line.ordered_code for line in _check(served, key).lines] == ["LAB-K"]
    assert _end_connections(postgres_admin_url, str(make_url(postgres_url).database)) >= 1

    # The first call may meet a pooled connection the index ended (the credential's lookup):
    # UNAVAILABLE, never anything else. A kept connection fails the batch's shared read once;
    # the check is redone alone on a fresh connection, which the checks after it keep.
    codes = _failures_before_an_answer(lambda: _check(served, key))
    assert set(codes) <= {grpc.StatusCode.UNAVAILABLE}
    assert len(codes) < 3, codes
    for _ in range(3):
        reply = _check(served, key)
        assert [line.ordered_code for line in reply.lines] == ["LAB-K"]
        assert reply.check_id


def _decide(server: RunningServer, key: str, check_id: str) -> None:
    recognition_pb2_grpc.RecognitionServiceStub(server.channel).RecordDecision(
        recognition_pb2.RecordDecisionRequest(
            check_id=check_id, line=0, decision=recognition_pb2.ACCEPTED
        ),
        metadata=auth_metadata(key),
        timeout=30,
    )


@pytest.fixture
def keys_cached(tmp_path: Path, postgres_url: str) -> Iterator[RunningServer]:
    """The server with the production default's cache of verified keys (the tests' is off)."""
    yield from start_server(
        make_settings(
            tmp_path, MUTUALREC_DATABASE_URL=postgres_url, MUTUALREC_AUTH_CACHE_SECONDS="30"
        )
    )


def test_a_known_caller_is_told_to_try_again_while_the_index_is_down_never_unknown(
    keys_cached: RunningServer, postgres_admin_url: str, postgres_url: str
) -> None:
    # A key used already is admitted from the cache without the index, so the check's and the
    # decision's own statements are the first to meet the outage.
    served = keys_cached
    key, ehr, order_select, checked = _used_once(served)
    database = str(make_url(postgres_url).database)
    _allow_connections(postgres_admin_url, database, False)
    try:
        codes: list[tuple[grpc.StatusCode, str]] = []
        for call in (lambda: _check(served, key), lambda: _decide(served, key, checked.check_id)):
            try:
                call()
            except grpc.RpcError as refused:
                codes.append((refused.code(), str(refused.details())))
        cds = ehr.post("/cds-services/order-select", order_select)
    finally:
        _allow_connections(postgres_admin_url, database, True)
    assert [code for code, _ in codes] == [grpc.StatusCode.UNAVAILABLE] * 2, codes
    assert "the index cannot be reached now (OperationalError); check again" in codes[0][1]
    assert "nothing was recorded: send the decision again" in codes[1][1]
    assert cds.status_code == 503, cds.text
    assert "the token cannot be checked now" in cds.json()["detail"]


def test_connections_the_index_ended_fail_no_call_unknown(
    served: RunningServer, postgres_admin_url: str, postgres_url: str
) -> None:
    key, ehr, order_select, checked = _used_once(served)
    # A restarted index (or a failover): every open connection ends, new ones are taken.
    _end_connections(postgres_admin_url, str(make_url(postgres_url).database))
    check_codes = _failures_before_an_answer(lambda: _check(served, key))
    # The patient holds no result: the line was NO_RESULT, and the decision on it is refused
    # by the rules (FAILED_PRECONDITION) once the index answers.
    decision_codes: list[grpc.StatusCode] = []
    for _ in range(3):
        try:
            _decide(served, key, checked.check_id)
        except grpc.RpcError as failed:
            decision_codes.append(failed.code())
            if failed.code() != grpc.StatusCode.UNAVAILABLE:
                break
    statuses = [ehr.post("/cds-services/order-select", order_select).status_code for _ in range(3)]
    assert set(check_codes) <= {grpc.StatusCode.UNAVAILABLE}, check_codes
    assert len(check_codes) < 3, check_codes
    assert set(decision_codes[:-1]) <= {grpc.StatusCode.UNAVAILABLE}, decision_codes
    assert decision_codes[-1] == grpc.StatusCode.FAILED_PRECONDITION, decision_codes
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[-1] == 200
