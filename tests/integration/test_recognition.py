"""CheckOrder and RecordDecision over real gRPC, on SQLite and on PostgreSQL.

Results arrive the way hospitals send them (SubmitObservations, UploadStudy); the expected
verdicts, savings and times are worked out by hand from the catalog file and the samples.
"""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select, update

from mutualrec.admin_files import read_prices
from mutualrec.statistics.report import GroupBy
from mutualrec.statistics.tally import DayDeltas, TallyRow
from mutualrec.storage import catalog_store, recognition_index, statistics_index
from mutualrec.storage.models import Decision, RecognitionCheck, StatTally
from mutualrec.storage.recognition_index import DecisionRecord, DecisionToRecord
from mutualrec.v1 import common_pb2, recognition_pb2, recognition_pb2_grpc
from tests.conftest import RunningServer
from tests.fhir_docs import PATIENT_ID, bundle, observation, submit
from tests.helpers import bad_request, file_messages, header_message, study_files, upload

ISSUER = "H500103001"  # tertiary, holds the city-wide lab and imaging marks
ASKER = "H500106002"  # secondary, asks
UNQUALIFIED = "H500112003"  # tertiary, holds no mark
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def _fhir_time(moment: dt.datetime) -> str:
    return moment.astimezone(SHANGHAI).replace(microsecond=0).isoformat()


def _setup(server: RunningServer) -> dict[str, str]:
    keys = {
        ISSUER: server.add_hospital(ISSUER, level="tertiary"),
        ASKER: server.add_hospital(ASKER, level="secondary"),
        UNQUALIFIED: server.add_hospital(UNQUALIFIED, level="tertiary"),
    }
    with server.runtime.sessions.begin() as session:
        catalog_store.ensure_packaged_catalog(session)
        catalog = catalog_store.current_catalog(session)
        for category in ("lab", "imaging"):
            catalog_store.add_qualification(
                session,
                ISSUER,
                item_code=None,
                category=category,
                scope="city",
                valid_from=dt.datetime(2020, 1, 1, tzinfo=SHANGHAI),
                valid_until=None,
                catalog=catalog,
            )
    server.runtime.reference.invalidate()
    return keys


def _check(
    server: RunningServer, key: str, *codes: str, patient: str = PATIENT_ID
) -> recognition_pb2.CheckOrderResponse:
    stub = recognition_pb2_grpc.RecognitionServiceStub(server.channel)
    response: recognition_pb2.CheckOrderResponse = stub.CheckOrder(
        recognition_pb2.CheckOrderRequest(
            patient=common_pb2.PatientIdentity(
                document_type=common_pb2.RESIDENT_ID_CARD, document_number=patient
            ),
            ordered_codes=list(codes),
            context=recognition_pb2.ClinicalContext(order_id="ORD-1", department="内科"),
        ),
        metadata=(("authorization", f"Bearer {key}"),),
        timeout=30,
    )
    return response


def _decide(
    server: RunningServer, key: str, check_id: str, line: int, **fields: Any
) -> recognition_pb2.RecordDecisionResponse:
    stub = recognition_pb2_grpc.RecognitionServiceStub(server.channel)
    response: recognition_pb2.RecordDecisionResponse = stub.RecordDecision(
        recognition_pb2.RecordDecisionRequest(check_id=check_id, line=line, **fields),
        metadata=(("authorization", f"Bearer {key}"),),
        timeout=30,
    )
    return response


def _verdicts(response: recognition_pb2.CheckOrderResponse) -> list[str]:
    return [recognition_pb2.Verdict.Name(line.verdict) for line in response.lines]


def test_lab_result_of_a_qualified_issuer_is_recognizable(server: RunningServer) -> None:
    keys = _setup(server)
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    submit(server.channel, keys[ISSUER], bundle([observation("K-1", issued=_fhir_time(issued))]))

    response = _check(server, keys[ASKER], "LAB-K", "2951-2", "IMG-CT-CHEST", "NO-SUCH-CODE")

    assert _verdicts(response) == ["RECOGNIZABLE", "NO_RESULT", "NO_RESULT", "UNKNOWN_CODE"]
    potassium = response.lines[0]
    assert (potassium.item_code, potassium.item_name) == ("LAB-K", "钾")
    assert potassium.estimated_saving == "4.00"  # LAB-K's catalog reference price
    assert response.total_estimated_saving == "4.00"
    result = potassium.result
    assert (result.kind, result.version, result.status) == ("lab", 1, "final")
    assert result.issuer_code == ISSUER
    assert (result.lab.loinc, result.lab.value, result.lab.unit) == ("2823-3", "4.1", "mmol/L")
    assert result.lab.reference_range == "3.5-5.3"
    assert dt.datetime.fromisoformat(result.report_time) == issued.replace(microsecond=0)
    # LAB-K is valid for 7 days from the report time.
    assert dt.datetime.fromisoformat(result.valid_until) == issued.replace(
        microsecond=0
    ) + dt.timedelta(days=7)
    assert potassium.reason
    assert response.lines[1].item_code == "LAB-NA"  # by its LOINC code
    assert response.lines[3].item_code == ""
    assert response.check_id


def test_amendment_is_cited_and_withdrawal_removes_the_result(server: RunningServer) -> None:
    keys = _setup(server)
    issued = _fhir_time(dt.datetime.now(dt.UTC) - dt.timedelta(hours=5))
    submit(server.channel, keys[ISSUER], bundle([observation("K-2", issued=issued)]))
    submit(
        server.channel,
        keys[ISSUER],
        bundle([observation("K-2", issued=issued, value=4.4, status="amended")]),
    )
    amended = _check(server, keys[ASKER], "LAB-K").lines[0]
    assert (amended.result.version, amended.result.lab.value) == (2, "4.4")

    submit(
        server.channel,
        keys[ISSUER],
        bundle([observation("K-2", issued=issued, status="entered-in-error")]),
    )
    assert _verdicts(_check(server, keys[ASKER], "LAB-K")) == ["NO_RESULT"]


def test_preliminary_expired_and_unqualified_issuers(server: RunningServer) -> None:
    keys = _setup(server)
    now = dt.datetime.now(dt.UTC)
    submit(
        server.channel,
        keys[ISSUER],
        bundle(
            [
                observation("P-1", loinc="2951-2", status="preliminary", issued=_fhir_time(now)),
                observation("E-1", loinc="2075-0", issued=_fhir_time(now - dt.timedelta(days=8))),
            ]
        ),
    )
    submit(
        server.channel,
        keys[UNQUALIFIED],
        bundle(
            [observation("U-1", loinc="14682-9", value=80, unit="umol/L", issued=_fhir_time(now))]
        ),
    )
    response = _check(server, keys[ASKER], "LAB-NA", "LAB-CL", "LAB-CREA")

    assert _verdicts(response) == ["PRELIMINARY_ONLY", "EXPIRED", "ISSUER_NOT_QUALIFIED"]
    assert response.lines[1].expired_since
    assert response.lines[1].estimated_saving == "0.00"


def test_contrast_ct_satisfies_a_plain_ct_order_and_expires_by_its_window(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    keys = _setup(server)
    study = manifest["ct_chest_contrast_hosp_a"]
    upload(
        server.channel, keys[ISSUER], [header_message(study), *file_messages(study_files(study))]
    )

    response = _check(server, keys[ASKER], "IMG-CT-CHEST", "IMG-CT-CHEST-C")

    # Study 2024-04-02 14:05:12 Asia/Shanghai = 06:05:12 UTC; CT chest is valid for 90 days.
    assert _verdicts(response) == ["EXPIRED", "EXPIRED"]
    for line in response.lines:
        assert dt.datetime.fromisoformat(line.expired_since) == dt.datetime(
            2024, 7, 1, 6, 5, 12, tzinfo=dt.UTC
        )
        assert line.result.item_code == "IMG-CT-CHEST-C"
        assert line.result.imaging.study_instance_uid == study["study_instance_uid"]
        assert line.result.imaging.contrast is True
        assert line.result.imaging.instance_count == study["instance_count"]


def test_decisions_book_a_saving_once(server: RunningServer) -> None:
    keys = _setup(server)
    issued = _fhir_time(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    submit(server.channel, keys[ISSUER], bundle([observation("D-1", issued=issued)]))
    check = _check(server, keys[ASKER], "LAB-K", "LAB-NA")

    accepted = _decide(server, keys[ASKER], check.check_id, 0, decision=recognition_pb2.ACCEPTED)
    again = _decide(server, keys[ASKER], check.check_id, 0, decision=recognition_pb2.ACCEPTED)

    assert (accepted.booked_saving, accepted.already_recorded) == ("4.00", False)
    assert (again.booked_saving, again.already_recorded) == ("4.00", True)
    with pytest.raises(grpc.RpcError) as changed:
        _decide(
            server,
            keys[ASKER],
            check.check_id,
            0,
            decision=recognition_pb2.DECLINED,
            reason=recognition_pb2.PATIENT_REQUEST,
        )
    assert changed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert bad_request(changed.value) == {"decision": "ALREADY_DECIDED"}
    with pytest.raises(grpc.RpcError) as nothing_to_decide:
        _decide(server, keys[ASKER], check.check_id, 1, decision=recognition_pb2.ACCEPTED)
    assert nothing_to_decide.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert bad_request(nothing_to_decide.value) == {"line": "NOT_RECOGNIZABLE"}
    with server.runtime.sessions() as session:
        booked = session.scalars(select(Decision.booked_saving)).all()
        assert booked == ["4.00"]
        assert session.scalar(select(func.count()).select_from(Decision)) == 1


def test_racing_decisions_on_one_line_record_one_and_count_once(server: RunningServer) -> None:
    keys = _setup(server)
    issued = _fhir_time(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    submit(server.channel, keys[ISSUER], bundle([observation("RACE-1", issued=issued)]))
    check = _check(server, keys[ASKER], "LAB-K")
    start = threading.Barrier(8)

    def decide(accept: bool) -> recognition_pb2.RecordDecisionResponse | grpc.StatusCode:
        start.wait()
        try:
            if accept:
                return _decide(
                    server, keys[ASKER], check.check_id, 0, decision=recognition_pb2.ACCEPTED
                )
            return _decide(
                server,
                keys[ASKER],
                check.check_id,
                0,
                decision=recognition_pb2.DECLINED,
                reason=recognition_pb2.EMERGENCY,
            )
        except grpc.RpcError as error:
            return error.code()

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(decide, [True, False] * 4))

    answered = [o for o in outcomes if not isinstance(o, grpc.StatusCode)]
    refused = [o for o in outcomes if isinstance(o, grpc.StatusCode)]
    assert sum(not o.already_recorded for o in answered) == 1
    winner = next(o for o in answered if not o.already_recorded)
    assert {o.decision for o in answered} == {winner.decision}
    # The losing side was told the line is decided otherwise, never an internal error.
    assert refused == [grpc.StatusCode.FAILED_PRECONDITION] * 4
    statistics_index.compact(server.runtime.engine)
    with server.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 1
        accepted, declined, emergency = session.execute(
            select(
                func.sum(StatTally.accepted),
                func.sum(StatTally.declined),
                func.sum(StatTally.declined_emergency),
            ).where(StatTally.group_by == "district")
        ).one()
    accepted_won = winner.decision == recognition_pb2.ACCEPTED
    assert (accepted, declined, emergency) == ((1, 0, 0) if accepted_won else (0, 1, 1))


def test_the_write_that_loses_a_race_returns_the_first_decision(server: RunningServer) -> None:
    """Both calls read the line undecided; the second write meets the first decision."""
    keys = _setup(server)
    issued = _fhir_time(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    submit(server.channel, keys[ISSUER], bundle([observation("RACE-2", issued=issued)]))
    check = _check(server, keys[ASKER], "LAB-K")
    engine = server.runtime.recognition.engine
    decided_at = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def row(accepted: bool) -> DecisionRecord:
        return DecisionRecord(
            check_id=check.check_id,
            line=0,
            accepted=accepted,
            reason="" if accepted else "emergency",
            reason_text="",
            booked_saving="4.00" if accepted else "0.00",
            decided_at=decided_at,
        )

    def delta(accepted: bool) -> DayDeltas:
        tally = (
            TallyRow(GroupBy.DISTRICT, "x", accepted=1)
            if accepted
            else TallyRow(GroupBy.DISTRICT, "x", declined_by_reason=(("emergency", 1),))
        )
        return DayDeltas(decided_at.date(), (tally,))

    [(first, first_new)] = recognition_index.record_decisions(
        engine, [DecisionToRecord(row(True), delta(True))]
    )
    [(second, second_new)] = recognition_index.record_decisions(
        engine, [DecisionToRecord(row(False), delta(False))]
    )

    assert (first_new, second_new) == (True, False)
    assert second == first
    assert (second.accepted, second.booked_saving, second.decided_at) == (True, "4.00", decided_at)
    statistics_index.compact(server.runtime.engine)
    with server.runtime.sessions() as session:
        kept = session.execute(
            select(StatTally.accepted, StatTally.declined).where(StatTally.group_key == "x")
        ).one()
    assert tuple(kept) == (1, 0)


def test_decline_needs_a_reason_and_checks_are_private_to_the_asker(
    server: RunningServer,
) -> None:
    keys = _setup(server)
    issued = _fhir_time(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    submit(server.channel, keys[ISSUER], bundle([observation("D-2", issued=issued)]))
    check = _check(server, keys[ASKER], "LAB-K")

    with pytest.raises(grpc.RpcError) as no_reason:
        _decide(server, keys[ASKER], check.check_id, 0, decision=recognition_pb2.DECLINED)
    assert bad_request(no_reason.value) == {"reason": "DECLINE_REASON_REQUIRED"}
    with pytest.raises(grpc.RpcError) as no_text:
        _decide(
            server,
            keys[ASKER],
            check.check_id,
            0,
            decision=recognition_pb2.DECLINED,
            reason=recognition_pb2.OTHER,
        )
    assert bad_request(no_text.value) == {"reason_text": "DECLINE_TEXT_REQUIRED"}
    for key, check_id, line in (
        (keys[UNQUALIFIED], check.check_id, 0),
        (keys[ASKER], "00000000-0000-0000-0000-000000000000", 0),
        (keys[ASKER], check.check_id, 7),
    ):
        with pytest.raises(grpc.RpcError) as unknown:
            _decide(server, key, check_id, line, decision=recognition_pb2.ACCEPTED)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    declined = _decide(
        server,
        keys[ASKER],
        check.check_id,
        0,
        decision=recognition_pb2.DECLINED,
        reason=recognition_pb2.FAST_CHANGING_VALUE,
    )
    assert (declined.booked_saving, declined.reason) == (
        "0.00",
        recognition_pb2.FAST_CHANGING_VALUE,
    )


def test_bad_checks_are_invalid_argument(server: RunningServer) -> None:
    keys = _setup(server)
    with pytest.raises(grpc.RpcError) as bad_id:
        _check(server, keys[ASKER], "LAB-K", patient="500103196803151091")
    assert bad_id.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(bad_id.value) == {"patient.document_number": "INVALID_IDENTITY"}
    with pytest.raises(grpc.RpcError) as empty:
        _check(server, keys[ASKER])
    assert bad_request(empty.value) == {"ordered_codes": "EMPTY_ORDER"}
    with pytest.raises(grpc.RpcError) as unauthenticated:
        _check(server, "mrk_0000000000000000_" + "x" * 43, "LAB-K")
    assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_asking_institutions_price_list_sets_the_saving(server: RunningServer) -> None:
    keys = _setup(server)
    with server.runtime.sessions.begin() as session:
        catalog = catalog_store.current_catalog(session)
        prices = read_prices("item_code,price_cny\nLAB-K,5.5\n", catalog)
        catalog_store.replace_prices(session, ASKER, prices)
    server.runtime.reference.invalidate()
    issued = _fhir_time(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    submit(server.channel, keys[ISSUER], bundle([observation("PR-1", issued=issued)]))

    assert _check(server, keys[ASKER], "LAB-K").lines[0].estimated_saving == "5.50"


def test_a_decision_a_day_after_its_check_is_refused(server: RunningServer) -> None:
    keys = _setup(server)
    issued = _fhir_time(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    submit(server.channel, keys[ISSUER], bundle([observation("L-1", issued=issued)]))
    check = _check(server, keys[ASKER], "LAB-K")
    with server.runtime.sessions.begin() as session:
        session.execute(
            update(RecognitionCheck)
            .where(RecognitionCheck.id == check.check_id)
            .values(received_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=25))
        )

    with pytest.raises(grpc.RpcError) as late:
        _decide(server, keys[ASKER], check.check_id, 0, decision=recognition_pb2.ACCEPTED)

    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert bad_request(late.value) == {"check_id": "DECISION_TOO_LATE"}


def test_a_hospital_registered_a_moment_ago_checks_at_once(server: RunningServer) -> None:
    keys = _setup(server)
    _check(server, keys[ASKER], "LAB-K")  # the reference snapshot is now loaded and fresh
    newcomer = server.add_hospital("H500199001", level="primary")

    checked = _check(server, newcomer, "LAB-K")

    assert checked.lines[0].verdict == recognition_pb2.NO_RESULT
