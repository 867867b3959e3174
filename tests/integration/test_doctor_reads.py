"""What the doctor reads, over real gRPC on SQLite and PostgreSQL: the pending result named over
an expired one, windows to the second, no result from the future, reasons in Chinese or English.
"""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from sqlalchemy import select

from mutualrec.client.upload import auth_metadata
from mutualrec.storage.models import CheckLine
from mutualrec.v1 import common_pb2, ingest_pb2, recognition_pb2, recognition_pb2_grpc
from tests.conftest import RunningServer
from tests.fhir_docs import PATIENT_ID, bundle, observation, submit
from tests.helpers import bad_request, lab_issuer_and_asker

ISSUER = "H500103001"  # tertiary, holds the city-wide lab mark
ASKER = "H500106002"  # secondary, asks
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def _fhir_time(moment: dt.datetime) -> str:
    return moment.astimezone(SHANGHAI).replace(microsecond=0).isoformat()


def _local(moment: dt.datetime, shape: str = "%Y-%m-%d %H:%M") -> str:
    return moment.astimezone(SHANGHAI).strftime(shape)


def _setup(server: RunningServer) -> dict[str, str]:
    keys = lab_issuer_and_asker(server, ISSUER, ASKER)
    return keys


def _check(
    server: RunningServer, key: str, *codes: str, accept_language: str = ""
) -> recognition_pb2.CheckOrderResponse:
    stub = recognition_pb2_grpc.RecognitionServiceStub(server.channel)
    response: recognition_pb2.CheckOrderResponse = stub.CheckOrder(
        recognition_pb2.CheckOrderRequest(
            patient=common_pb2.PatientIdentity(
                document_type=common_pb2.RESIDENT_ID_CARD, document_number=PATIENT_ID
            ),
            ordered_codes=list(codes),
            accept_language=accept_language,
        ),
        metadata=auth_metadata(key),
        timeout=30,
    )
    return response


def _verdicts(response: recognition_pb2.CheckOrderResponse) -> list[str]:
    return [recognition_pb2.Verdict.Name(line.verdict) for line in response.lines]


def test_a_newer_preliminary_is_named_over_an_expired_final(server: RunningServer) -> None:
    keys = _setup(server)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    final = now - dt.timedelta(days=10)
    pending = now - dt.timedelta(hours=2)
    submit(
        server.channel,
        keys[ISSUER],
        bundle(
            [
                observation("K-OLD", issued=_fhir_time(final)),
                observation("K-NEW", status="preliminary", issued=_fhir_time(pending)),
            ]
        ),
    )

    response = _check(server, keys[ASKER], "LAB-K", accept_language="en")

    assert _verdicts(response) == ["PRELIMINARY_ONLY"]
    line = response.lines[0]
    assert line.result.status == "preliminary"
    assert dt.datetime.fromisoformat(line.result.report_time) == pending
    # LAB-K is valid for 7 days.
    assert line.reason == (
        f"钾 (Potassium) from Hospital {ISSUER}, reported {_local(pending)}, 2 hours ago; "
        f"no final report yet; the last final result, reported {_local(final)}, expired "
        f"{_local(final + dt.timedelta(days=7))}"
    )


def test_a_window_ending_within_the_day_is_shown_to_the_second(server: RunningServer) -> None:
    keys = _setup(server)
    issued = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=7, hours=-3)
    submit(server.channel, keys[ISSUER], bundle([observation("K-1", issued=_fhir_time(issued))]))

    english = _check(server, keys[ASKER], "LAB-K", accept_language="en-US,en;q=0.9,zh;q=0.8")
    chinese = _check(server, keys[ASKER], "LAB-K", accept_language="zh-CN")

    until = _local(issued + dt.timedelta(days=7), "%Y-%m-%d %H:%M:%S")
    assert _verdicts(english) == _verdicts(chinese) == ["RECOGNIZABLE"]
    assert english.lines[0].reason == (
        f"钾 (Potassium) from Hospital {ISSUER}, reported {_local(issued)}, 6 days ago; "
        f"valid until {until}"
    )
    assert chinese.lines[0].reason == (
        f"钾，Hospital {ISSUER}，报告于{_local(issued)}（6天前）；有效期至{until}"
    )


@pytest.mark.parametrize(
    ("accept_language", "opening"),
    [
        ("", "该患者无"),  # Chinese unless asked otherwise
        ("en", "No result of"),
        ("fr-FR, en;q=0.5", "No result of"),  # the first language we write, by weight
        ("en;q=0.3, zh;q=0.7", "该患者无"),
        ("de, *", "该患者无"),  # nothing we write: Chinese
    ],
)
def test_reasons_are_in_the_language_asked_for_and_recorded_so(
    server: RunningServer, accept_language: str, opening: str
) -> None:
    keys = _setup(server)

    response = _check(server, keys[ASKER], "LAB-K", accept_language=accept_language)

    expected = {
        "该患者无": "该患者无钾的结果记录",
        "No result of": "No result of 钾 (Potassium) on record for this patient",
    }[opening]
    assert [line.reason for line in response.lines] == [expected]
    with server.runtime.sessions() as session:
        recorded = session.scalars(
            select(CheckLine.reason).where(CheckLine.check_id == response.check_id)
        ).all()
    assert recorded == [expected]


def test_an_overlong_language_preference_is_invalid_argument(server: RunningServer) -> None:
    keys = _setup(server)

    with pytest.raises(grpc.RpcError) as failed:
        _check(server, keys[ASKER], "LAB-K", accept_language="en;q=0.5," * 40)

    assert failed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(failed.value) == {"accept_language": "TOO_LONG"}


def test_a_result_stamped_beyond_the_clock_skew_is_refused_and_within_it_has_no_age(
    server: RunningServer,
) -> None:
    keys = _setup(server)
    now = dt.datetime.now(dt.UTC)

    refused = submit(
        server.channel,
        keys[ISSUER],
        bundle([observation("K-AHEAD", issued=_fhir_time(now + dt.timedelta(minutes=3)))]),
    )
    accepted = submit(
        server.channel,
        keys[ISSUER],
        bundle([observation("K-SOON", issued=_fhir_time(now + dt.timedelta(seconds=30)))]),
    )

    [ahead] = [o for o in refused.entries if o.outcome == ingest_pb2.ENTRY_REJECTED]
    assert [(v.field, v.reason) for v in ahead.violations] == [
        ("entry[1].resource.issued", "FUTURE_TIME")
    ]
    assert ingest_pb2.ENTRY_REJECTED not in [o.outcome for o in accepted.entries]
    response = _check(server, keys[ASKER], "LAB-K", accept_language="en")
    assert _verdicts(response) == ["RECOGNIZABLE"]
    assert response.lines[0].result.age_seconds == 0
    assert ", just now; valid until " in response.lines[0].reason
