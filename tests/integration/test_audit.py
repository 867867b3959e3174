"""The audit trail over real gRPC: every access to a patient's data leaves a chained entry."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import grpc
import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError

from mutualrec.client.upload import auth_metadata
from mutualrec.identity import parse_identity, patient_key
from mutualrec.security.patient_tokens import mint_patient_token
from mutualrec.storage import audit_log
from mutualrec.storage.models import AuditEntry
from mutualrec.v1 import (
    common_pb2,
    imaging_pb2,
    imaging_pb2_grpc,
    recognition_pb2,
    recognition_pb2_grpc,
)
from tests.conftest import RunningServer
from tests.helpers import bad_request, file_messages, header_message, study_files, upload

WANG = "500106195511021028"
ZHANG = "50010319680315109X"


def _token(server: RunningServer, number: str) -> str:
    settings = server.runtime.settings
    key = patient_key(parse_identity("RESIDENT_ID_CARD", number), settings.patient_key_secret)
    return mint_patient_token(settings.token_secret, key, dt.timedelta(minutes=10)).token


def _accesses(server: RunningServer, token: str, *, settled: int = 0, **request: Any) -> Any:
    """ListAccesses; with ``settled``, asked again until that many entries are there (a call's
    entry is queued when the call has ended, a moment after its client has the answer)."""
    stub = imaging_pb2_grpc.ImagingServiceStub(server.channel)
    for _ in range(50):
        response = stub.ListAccesses(
            imaging_pb2.ListAccessesRequest(**request), metadata=auth_metadata(token)
        )
        if len(response.accesses) >= settled:
            break
        time.sleep(0.1)
    return response


def _a_day_of_accesses(server: RunningServer, manifest: dict[str, Any]) -> dict[str, str]:
    """A hospital uploads Wang's MR, another checks her, she browses, a doctor opens a link."""
    mr = manifest["mr_brain_hosp_b"]
    uploader = server.add_hospital(mr["institution_code"])
    asker = server.add_hospital("H500103001")
    upload(server.channel, uploader, [header_message(mr), *file_messages(study_files(mr))])
    recognition_pb2_grpc.RecognitionServiceStub(server.channel).CheckOrder(
        recognition_pb2.CheckOrderRequest(
            patient=common_pb2.PatientIdentity(
                document_type=common_pb2.RESIDENT_ID_CARD, document_number=WANG
            ),
            ordered_codes=["IMG-MR-BRAIN"],
        ),
        metadata=auth_metadata(asker),
    )
    token = _token(server, WANG)
    imaging = imaging_pb2_grpc.ImagingServiceStub(server.channel)
    imaging.ListStudies(imaging_pb2.ListStudiesRequest(), metadata=auth_metadata(token))
    link = imaging.CreateShareLink(
        imaging_pb2.CreateShareLinkRequest(
            study_instance_uid=mr["study_instance_uid"],
            expire_time=(dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat(),
        ),
        metadata=auth_metadata(token),
    )
    imaging.GetStudy(imaging_pb2.GetStudyRequest(), metadata=auth_metadata(link.token))
    with pytest.raises(grpc.RpcError):
        imaging.GetStudy(
            imaging_pb2.GetStudyRequest(study_instance_uid="1.2.3.4"),
            metadata=auth_metadata(link.token),
        )
    return {"token": token, "link": link.link.link_id, "uploader": mr["institution_code"]}


def test_a_patient_sees_who_read_and_wrote_their_data(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    day = _a_day_of_accesses(server, manifest)

    accesses = _accesses(server, day["token"], settled=6).accesses

    seen = [(a.role, a.rpc, a.outcome) for a in accesses]
    # Newest first; the list call itself is recorded once it ends, so it is not in its own answer.
    assert seen == [
        ("share", "ImagingService/GetStudy", "NOT_FOUND"),
        ("share", "ImagingService/GetStudy", "OK"),
        ("patient", "ImagingService/CreateShareLink", "OK"),
        ("patient", "ImagingService/ListStudies", "OK"),
        ("hospital", "RecognitionService/CheckOrder", "OK"),
        ("hospital", "IngestService/UploadStudy", "OK"),
    ]
    assert accesses[0].credential == accesses[1].credential == day["link"]
    assert accesses[0].what == "study 1.2.3.4"
    by_rpc = {a.rpc: a for a in accesses}
    assert by_rpc["IngestService/UploadStudy"].institution_code == day["uploader"]
    assert by_rpc["RecognitionService/CheckOrder"].institution_code == "H500103001"
    assert by_rpc["RecognitionService/CheckOrder"].institution_name == "Hospital H500103001"
    assert by_rpc["RecognitionService/CheckOrder"].what == "check of 1 ordered items"
    assert all(a.time.endswith("Z") for a in accesses)

    # Nobody else's list shows any of it; Zhang's own list shows only her own call.
    others = _accesses(server, _token(server, ZHANG)).accesses
    assert others == []
    again = _accesses(server, _token(server, ZHANG), settled=1).accesses
    assert [(a.role, a.rpc) for a in again] == [("patient", "ImagingService/ListAccesses")]


def test_accesses_page_with_a_signed_token(server: RunningServer, manifest: dict[str, Any]) -> None:
    day = _a_day_of_accesses(server, manifest)
    _accesses(server, day["token"], settled=6)
    first = _accesses(server, day["token"], page_size=4)
    second = _accesses(server, day["token"], page_size=4, page_token=first.next_page_token)
    assert len(first.accesses) == 4
    assert first.next_page_token
    assert [a.rpc for a in second.accesses][-2:] == [
        "RecognitionService/CheckOrder",
        "IngestService/UploadStudy",
    ]
    with pytest.raises(grpc.RpcError) as error:
        _accesses(server, _token(server, ZHANG), page_token=first.next_page_token)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(error.value) == {"page_token": "INVALID_PAGE_TOKEN"}
    with pytest.raises(grpc.RpcError) as error:
        _accesses(server, day["token"], page_size=101)
    assert bad_request(error.value) == {"page_size": "OUT_OF_RANGE"}


def test_hospital_and_share_credentials_cannot_list_accesses(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    key = server.add_hospital("H500112003")
    with pytest.raises(grpc.RpcError) as error:
        _accesses(server, key)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _verify(server: RunningServer, entries: int = 0) -> tuple[int, list[audit_log.ChainProblem]]:
    """Verify the chains, once at least ``entries`` are written."""
    for _ in range(50):
        assert server.runtime.audit.flush()
        with server.runtime.sessions() as session:
            checked, problems = audit_log.verify(session)
        if checked >= entries:
            break
        time.sleep(0.1)
    return checked, problems


def test_the_chain_holds_and_any_edit_or_removal_is_detected(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    _a_day_of_accesses(server, manifest)
    checked, problems = _verify(server, entries=6)
    assert checked == 6
    assert problems == []
    engine = server.runtime.engine
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        # The database itself refuses to rewrite the trail...
        with pytest.raises(DBAPIError), server.runtime.sessions.begin() as session:
            session.execute(update(AuditEntry).values(what="nothing to see"))
        with pytest.raises(DBAPIError), server.runtime.sessions.begin() as session:
            session.execute(delete(AuditEntry))
        # ...so the hash chain is shown to catch one made by someone who lifts that guard.
        with engine.begin() as connection:
            connection.execute(
                text("ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_append_only")
            )
    with server.runtime.sessions.begin() as session:
        session.execute(
            update(AuditEntry).where(AuditEntry.seq == 2).values(what="check of 0 ordered items")
        )
        session.execute(delete(AuditEntry).where(AuditEntry.seq == 4))
    _, problems = _verify(server)
    assert [(p.seq, p.problem) for p in problems] == [
        (2, "was altered after it was written"),
        (4, "entries 4 to 4 are missing"),
        (5, "does not follow the entry before it"),
    ]
    with server.runtime.sessions.begin() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq >= 5))
    _, problems = _verify(server)
    assert problems[-1].problem.startswith("the chain's head does not match its last entry")
