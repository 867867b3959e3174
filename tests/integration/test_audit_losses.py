"""No entry of the audit trail is lost to another one, and a lost entry is never silent.

On SQLite and PostgreSQL, against the server's own writer and index.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text

from mutualrec.client.upload import auth_metadata
from mutualrec.identity import parse_identity, patient_key
from mutualrec.security.audit import AuditEvent
from mutualrec.security.patient_tokens import mint_patient_token
from mutualrec.storage import audit_log
from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc
from tests.conftest import RunningServer
from tests.helpers import file_messages, header_message, study_files, upload

PATIENT = "a" * 64


def _event(what: str, patient: str = PATIENT) -> AuditEvent:
    return AuditEvent(
        at=dt.datetime.now(dt.UTC),
        role="hospital",
        credential="mrk_test",
        institution_id=None,
        patient_key=patient,
        rpc="ImagingService/GetStudy",
        what=what,
        outcome="OK",
        peer="ipv4:127.0.0.1:1",
    )


def _whats(server: RunningServer) -> list[str]:
    with server.runtime.sessions() as session:
        return sorted(a.what for _, a in audit_log.accesses(session, PATIENT, 100))


def test_an_entry_the_index_refuses_does_not_lose_the_others_of_its_batch(
    server: RunningServer,
) -> None:
    writer = server.runtime.audit
    # A NUL is refused by PostgreSQL; the entry is first, so the others join its batch.
    writer.submit([_event("study 1.2\x00"), _event("check of 1 item"), _event("files of study")])
    assert writer.flush(10)
    whats = _whats(server)
    assert len(whats) == 3
    assert {"check of 1 item", "files of study"} <= set(whats)
    assert writer.lost == 0
    with server.runtime.sessions() as session:
        checked, problems = audit_log.verify(session)
    assert (checked, problems) == (3, [])


def _audit_health(server: RunningServer) -> int:
    stub = health_pb2_grpc.HealthStub(server.channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service="mutualrec.audit"), timeout=5)
    return int(reply.status)


def test_a_lost_entry_is_counted_and_turns_the_audit_health_not_serving(
    server: RunningServer,
) -> None:
    assert _audit_health(server) == health_pb2.HealthCheckResponse.SERVING
    # The trail's table is gone: nothing can be written, not even entry by entry.
    with server.runtime.engine.begin() as connection:
        connection.execute(text("ALTER TABLE audit_entry RENAME TO audit_entry_gone"))
    writer = server.runtime.audit
    writer.submit([_event("first"), _event("second")])
    assert writer.flush(30)
    assert writer.lost == 2
    deadline = time.monotonic() + 10
    while (status := _audit_health(server)) != health_pb2.HealthCheckResponse.NOT_SERVING:
        assert time.monotonic() < deadline, f"audit health still {status}"
        time.sleep(0.05)


def test_a_hospitals_refused_read_of_a_study_is_in_the_patients_trail(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    ct = manifest["ct_chest_contrast_hosp_a"]
    owner = server.add_hospital(ct["institution_code"])
    prying = server.add_hospital("H500106002")
    upload(server.channel, owner, [header_message(ct), *file_messages(study_files(ct))])
    stub = imaging_pb2_grpc.ImagingServiceStub(server.channel)
    with pytest.raises(grpc.RpcError) as refused:
        stub.GetStudy(
            imaging_pb2.GetStudyRequest(study_instance_uid=ct["study_instance_uid"]),
            metadata=auth_metadata(prying),
        )
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND

    settings = server.runtime.settings
    key = patient_key(
        parse_identity("RESIDENT_ID_CARD", ct["patient"]["document_number"]),
        settings.patient_key_secret,
    )
    token = mint_patient_token(settings.token_secret, key, dt.timedelta(minutes=10)).token
    # The call's entry is queued when the call has ended, a moment after the client's answer.
    deadline = time.monotonic() + 10
    while True:
        accesses = stub.ListAccesses(
            imaging_pb2.ListAccessesRequest(), metadata=auth_metadata(token)
        ).accesses
        attempts = [
            (a.institution_code, a.outcome) for a in accesses if a.rpc == "ImagingService/GetStudy"
        ]
        if attempts or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert attempts == [("H500106002", "NOT_FOUND")]
