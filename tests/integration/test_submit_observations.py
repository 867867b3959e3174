"""SubmitObservations over real gRPC, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from mutualrec.identity import parse_identity, patient_key
from mutualrec.storage.fs_store import FileSystemObjectStore
from mutualrec.storage.keys import document_key
from mutualrec.storage.models import LabResult, LabResultVersion, Patient
from mutualrec.v1 import ingest_pb2
from tests.conftest import RunningServer, make_settings, start_server
from tests.fhir_docs import (
    OTHER_PATIENT_ID,
    PATIENT_ID,
    RESIDENT_ID_SYSTEM,
    bundle,
    encode,
    entry,
    modified,
    observation,
    patient,
    submit,
)
from tests.helpers import bad_request, file_messages, header_message, study_files, upload

HOSPITAL = "H500103001"


def _count(server: RunningServer, model: type) -> int:
    with server.runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _versions(server: RunningServer) -> list[tuple[str, int, str, str | None]]:
    with server.runtime.sessions() as session:
        rows = session.execute(
            select(
                LabResult.identity,
                LabResultVersion.version,
                LabResultVersion.status,
                LabResultVersion.value_decimal,
            )
            .join(LabResult, LabResult.id == LabResultVersion.lab_result_id)
            .order_by(LabResult.identity, LabResultVersion.version)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def _documents(server: RunningServer) -> list[str]:
    return sorted(o.key for o in server.runtime.store.list("fhir/"))


def _outcomes(response: ingest_pb2.SubmitObservationsResponse) -> list[int]:
    return [e.outcome for e in response.entries]


def _three_results() -> dict[str, Any]:
    return bundle(
        [
            observation("R1-1"),
            observation("R1-2", loinc="2951-2", value=140),
            observation("R1-3", loinc="2075-0", value=101),
        ]
    )


def test_batch_is_stored_with_patient_report_and_original(server: RunningServer) -> None:
    key = server.add_hospital(HOSPITAL)
    document = _three_results()
    specimen = {
        "resourceType": "Specimen",
        "id": "s1",
        "collection": {"collectedDateTime": "2026-11-20T07:45:00+08:00"},
    }
    report = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": "urn:lis-report", "value": "REP-9"}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]},
        "issued": "2026-11-20T10:30:00+08:00",
        "result": [{"reference": "urn:uuid:obs-0"}, {"reference": "urn:uuid:obs-1"}],
    }
    document["entry"][1]["resource"]["specimen"] = {"reference": "urn:uuid:specimen-1"}
    document["entry"].append(entry(specimen, "urn:uuid:specimen-1"))
    document["entry"].append(entry(report, "urn:uuid:report-1"))
    body = encode(document)

    response = submit(server.channel, key, body)

    assert response.bundle_type == "batch"
    assert (
        _outcomes(response)
        == [ingest_pb2.CONTEXT] + [ingest_pb2.CREATED] * 3 + [ingest_pb2.CONTEXT] * 2
    )
    assert [e.version for e in response.entries[1:4]] == [1, 1, 1]
    assert response.entries[1].identity == "identifier|urn:mutualrec:lis:H500103001|R1-1"
    assert response.counts.created == 3
    assert response.counts.context == 3
    # The original document is kept byte for byte under its digest.
    stored = b"".join(server.runtime.store.open(document_key(response.document_sha256)))
    assert stored == body
    expected_key = patient_key(
        parse_identity("RESIDENT_ID_CARD", PATIENT_ID), server.runtime.settings.patient_key_secret
    )
    with server.runtime.sessions() as session:
        rows = {r.loinc: r for r in session.scalars(select(LabResultVersion)).all()}
    assert set(rows) == {"2823-3", "2951-2", "2075-0"}
    potassium = rows["2823-3"]
    assert potassium.patient_key == expected_key
    assert potassium.value_decimal == "4.1"
    assert potassium.value_unit == "mmol/L"
    assert (potassium.reference_low, potassium.reference_high) == ("3.5", "5.3")
    assert potassium.report_ref == "identifier|urn:lis-report|REP-9"
    assert potassium.specimen_collected_at is not None
    assert potassium.specimen_collected_at.isoformat().startswith("2026-11-19T23:45:00")
    assert potassium.entry_index == 1
    assert rows["2075-0"].report_ref == ""


def test_resubmission_changes_nothing_even_with_new_bundle_references(
    server: RunningServer,
) -> None:
    key = server.add_hospital(HOSPITAL)
    first = submit(server.channel, key, _three_results())
    assert first.counts.created == 3
    again = submit(server.channel, key, _three_results())
    # A LIS regenerates urn:uuid references on every send; the content is still the same.
    renamed = json.loads(encode(_three_results()).decode().replace("urn:uuid:", "urn:uuid:x-"))
    third = submit(server.channel, key, renamed)

    for response in (again, third):
        assert _outcomes(response)[1:] == [ingest_pb2.UNCHANGED] * 3
        assert [e.version for e in response.entries[1:]] == [1, 1, 1]
    assert _count(server, LabResult) == 3
    assert _count(server, LabResultVersion) == 3


def test_amendment_supersedes_and_history_is_kept(server: RunningServer) -> None:
    key = server.add_hospital(HOSPITAL)
    submit(server.channel, key, bundle([observation("R2-1", value=4.1)]))
    amended = submit(
        server.channel, key, bundle([observation("R2-1", value=4.6, status="amended")])
    )
    corrected = submit(
        server.channel, key, bundle([observation("R2-1", value=4.5, status="corrected")])
    )

    assert _outcomes(amended)[1] == ingest_pb2.UPDATED_NEW_VERSION
    assert amended.entries[1].version == 2
    assert corrected.entries[1].version == 3
    assert _versions(server) == [
        (f"identifier|urn:mutualrec:lis:{HOSPITAL}|R2-1", 1, "final", "4.1"),
        (f"identifier|urn:mutualrec:lis:{HOSPITAL}|R2-1", 2, "amended", "4.6"),
        (f"identifier|urn:mutualrec:lis:{HOSPITAL}|R2-1", 3, "corrected", "4.5"),
    ]
    with server.runtime.sessions() as session:
        held = session.scalars(select(LabResult)).one()
    assert (held.current_version, held.current_status) == (3, "corrected")
    # Re-sending the original (stale) content is recognized as version 1, not a change.
    stale = submit(server.channel, key, bundle([observation("R2-1", value=4.1)]))
    assert (_outcomes(stale)[1], stale.entries[1].version) == (ingest_pb2.UNCHANGED, 1)


def test_preliminary_then_final_is_a_new_version(server: RunningServer) -> None:
    key = server.add_hospital(HOSPITAL)
    submit(server.channel, key, bundle([observation("R3-1", status="preliminary")]))
    final = submit(server.channel, key, bundle([observation("R3-1", value=4.2)]))
    assert (_outcomes(final)[1], final.entries[1].version) == (ingest_pb2.UPDATED_NEW_VERSION, 2)


@pytest.mark.parametrize(
    ("status", "value", "reason"),
    [
        ("preliminary", 4.1, "STATUS_REGRESSION"),
        ("registered", 4.1, "STATUS_REGRESSION"),
        ("final", 4.9, "AMENDMENT_STATUS_REQUIRED"),
    ],
)
def test_going_back_or_silent_change_of_a_final_result_is_refused(
    server: RunningServer, status: str, value: float, reason: str
) -> None:
    key = server.add_hospital(HOSPITAL)
    submit(server.channel, key, bundle([observation("R4-1")]))

    response = submit(
        server.channel, key, bundle([observation("R4-1", status=status, value=value)])
    )

    outcome = response.entries[1]
    assert outcome.outcome == ingest_pb2.ENTRY_REJECTED
    assert [(v.field, v.reason) for v in outcome.violations] == [
        ("entry[1].resource.status", reason)
    ]
    assert outcome.reason
    assert _versions(server) == [
        (f"identifier|urn:mutualrec:lis:{HOSPITAL}|R4-1", 1, "final", "4.1")
    ]


def test_entered_in_error_withdraws_and_the_result_stays_withdrawn(server: RunningServer) -> None:
    key = server.add_hospital(HOSPITAL)
    submit(server.channel, key, bundle([observation("R5-1")]))
    withdrawn = submit(
        server.channel, key, bundle([observation("R5-1", status="entered-in-error")])
    )
    revived = submit(server.channel, key, bundle([observation("R5-1", status="amended", value=5)]))

    assert (_outcomes(withdrawn)[1], withdrawn.entries[1].version) == (ingest_pb2.WITHDRAWN, 2)
    assert revived.entries[1].outcome == ingest_pb2.ENTRY_REJECTED
    assert revived.entries[1].violations[0].reason == "RESULT_WITHDRAWN"
    with server.runtime.sessions() as session:
        held = session.scalars(select(LabResult)).one()
    assert (held.current_version, held.current_status) == (2, "entered-in-error")


def test_batch_keeps_good_entries_beside_bad_ones(server: RunningServer) -> None:
    key = server.add_hospital(HOSPITAL)
    no_code = observation("R6-2")
    del no_code["code"]
    bad_unit = observation("R6-3", unit="mmol/litre")
    document = bundle([observation("R6-1"), no_code, bad_unit, observation("R6-4")])

    response = submit(server.channel, key, document)

    assert _outcomes(response) == [
        ingest_pb2.CONTEXT,
        ingest_pb2.CREATED,
        ingest_pb2.ENTRY_REJECTED,
        ingest_pb2.ENTRY_REJECTED,
        ingest_pb2.CREATED,
    ]
    assert {v.field for v in response.entries[2].violations} == {"entry[2].resource.code"}
    assert {(v.field, v.reason) for v in response.entries[3].violations} == {
        ("entry[3].resource.valueQuantity.code", "NOT_UCUM")
    }
    assert response.counts.rejected == 2
    assert _count(server, LabResultVersion) == 2


def test_transaction_is_all_or_nothing(server: RunningServer) -> None:
    key = server.add_hospital(HOSPITAL)
    bad = observation("R7-2", value="high")
    document = bundle([observation("R7-1"), bad], kind="transaction")

    with pytest.raises(grpc.RpcError) as failure:
        submit(server.channel, key, document)

    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "entry[2].resource.valueQuantity.value" in bad_request(failure.value)
    assert _count(server, LabResult) == 0
    assert _documents(server) == []

    good = bundle([observation("R7-1"), observation("R7-2")], kind="transaction")
    assert submit(server.channel, key, good).counts.created == 2


def test_transaction_with_refused_status_change_is_failed_precondition(
    server: RunningServer,
) -> None:
    key = server.add_hospital(HOSPITAL)
    submit(server.channel, key, bundle([observation("R8-1")]))
    documents_before = _documents(server)
    document = bundle(
        [observation("R8-2"), observation("R8-1", status="preliminary")], kind="transaction"
    )

    with pytest.raises(grpc.RpcError) as failure:
        submit(server.channel, key, document)

    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert bad_request(failure.value) == {"entry[2].resource.status": "STATUS_REGRESSION"}
    assert _count(server, LabResult) == 1
    assert _documents(server) == documents_before


def test_single_observation_with_subject_identifier_meets_the_imaging_patient(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest["ct_chest_contrast_hosp_a"]
    key = server.add_hospital(study["institution_code"])
    upload(server.channel, key, [header_message(study), *file_messages(study_files(study))])
    single = observation("R9-1")
    single["subject"] = {
        "identifier": {"system": RESIDENT_ID_SYSTEM, "value": study["patient"]["document_number"]}
    }

    response = submit(server.channel, key, single)

    assert response.bundle_type == ""
    assert _outcomes(response) == [ingest_pb2.CREATED]
    assert _count(server, Patient) == 1


def test_r5_document_is_accepted(server: RunningServer) -> None:
    key = server.add_hospital(HOSPITAL)
    response = submit(server.channel, key, bundle([observation("R10-1")]), ingest_pb2.FHIR_R5)
    assert response.counts.created == 1


def test_patient_without_valid_identity_rejects_its_results(server: RunningServer) -> None:
    key = server.add_hospital(HOSPITAL)
    document = bundle([observation("R11-1")])
    document["entry"][0] = patient(number="500103196803151091")  # wrong check digit

    response = submit(server.channel, key, document)

    assert _outcomes(response) == [ingest_pb2.ENTRY_REJECTED, ingest_pb2.ENTRY_REJECTED]
    assert response.entries[0].violations[0].field == "entry[0].resource.identifier[0].value"
    assert response.entries[1].violations[0].reason == "REJECTED_REFERENCE"
    assert _count(server, LabResult) == 0


def test_identifier_cannot_move_to_another_patient(server: RunningServer) -> None:
    key = server.add_hospital(HOSPITAL)
    submit(server.channel, key, bundle([observation("R12-1")]))
    document = bundle([observation("R12-1", status="amended", value=5.0)])
    document["entry"][0] = patient(number=OTHER_PATIENT_ID)

    response = submit(server.channel, key, document)

    assert response.entries[1].violations[0].reason == "IDENTIFIER_OF_OTHER_PATIENT"


def _single(**changes: Any) -> dict[str, Any]:
    document = observation("B-1")
    document["subject"] = {"identifier": {"system": RESIDENT_ID_SYSTEM, "value": PATIENT_ID}}
    return modified(document, **changes)


def _without(field: str) -> dict[str, Any]:
    document = _single()
    del document[field]
    return document


def _bad_documents() -> list[tuple[str, bytes, str, str]]:
    duplicate_urls = bundle([observation("D-1"), observation("D-2")])
    duplicate_urls["entry"][2]["fullUrl"] = duplicate_urls["entry"][1]["fullUrl"]
    dangling = bundle([observation("D-3", subject="urn:uuid:nobody")])
    return [
        ("invalid JSON", b'{"resourceType": "Observation",', "body", "BAD_JSON"),
        (
            "duplicate JSON key",
            b'{"status": "final", "status": "final"}',
            "body",
            "DUPLICATE_JSON_KEY",
        ),
        (
            "wrong resourceType",
            encode({"resourceType": "Patient"}),
            "resourceType",
            "UNSUPPORTED_RESOURCE_TYPE",
        ),
        (
            "collection bundle",
            encode(modified(bundle([observation("D-0")]), type="collection")),
            "type",
            "UNSUPPORTED_BUNDLE_TYPE",
        ),
        (
            "empty bundle",
            encode({"resourceType": "Bundle", "type": "batch", "entry": []}),
            "entry",
            "EMPTY_BUNDLE",
        ),
        ("no code", encode(_without("code")), "code", "MISSING_FIELD"),
        ("no status", encode(_without("status")), "status", "MISSING_FIELD"),
        ("bad status", encode(_single(status="done")), "status", "INVALID_CODE"),
        ("no subject", encode(_without("subject")), "subject", "MISSING_FIELD"),
        (
            "no effective time",
            encode(_without("effectiveDateTime")),
            "effective[x]",
            "MISSING_FIELD",
        ),
        (
            "value of wrong type",
            encode(_single(valueQuantity={"value": "4,1"})),
            "valueQuantity.value",
            "INVALID_VALUE",
        ),
        (
            "unknown element",
            encode(_single(valueQuanty={"value": 4})),
            "valueQuanty",
            "UNKNOWN_ELEMENT",
        ),
        (
            "non-UCUM display unit",
            encode(_single(valueQuantity={"value": 4, "unit": "mmol/litre"})),
            "valueQuantity.unit",
            "NOT_UCUM",
        ),
        (
            "non-UCUM system",
            encode(_single(valueQuantity={"value": 4, "system": "urn:local-units", "code": "mM"})),
            "valueQuantity.system",
            "NOT_UCUM",
        ),
        (
            "future report time",
            encode(_single(issued="2099-01-01T00:00:00+08:00")),
            "issued",
            "FUTURE_TIME",
        ),
        (
            "bad LOINC",
            encode(_single(code={"coding": [{"system": "http://loinc.org", "code": "K+"}]})),
            "code.coding[0].code",
            "INVALID_CODE",
        ),
        (
            "subject not an identity document",
            encode(_single(subject={"identifier": {"system": "urn:mrn", "value": "123"}})),
            "subject.identifier.system",
            "MISSING_IDENTITY",
        ),
        (
            "duplicate fullUrl",
            encode(modified(duplicate_urls, type="transaction")),
            "entry[2].fullUrl",
            "DUPLICATE_FULL_URL",
        ),
        (
            "dangling reference",
            encode(modified(dangling, type="transaction")),
            "entry[1].resource.subject.reference",
            "UNRESOLVED_REFERENCE",
        ),
        (
            # A FHIR resource of another kind is ignored; a type FHIR does not define is not.
            "unknown resource type in bundle",
            encode(
                {
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [entry({"resourceType": "LabThing"}, "urn:uuid:e")],
                }
            ),
            "entry[0].resource.resourceType",
            "UNSUPPORTED_RESOURCE_TYPE",
        ),
    ]


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [pytest.param(body, field, reason, id=name) for name, body, field, reason in _bad_documents()],
)
def test_bad_input_is_invalid_argument_with_a_path_into_the_document(
    server: RunningServer, body: bytes, field: str, reason: str
) -> None:
    key = server.add_hospital(HOSPITAL)

    with pytest.raises(grpc.RpcError) as failure:
        submit(server.channel, key, body)

    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(failure.value).get(field) == reason
    assert _count(server, LabResult) == 0
    assert _documents(server) == []
    # The server goes on serving.
    assert submit(server.channel, key, _single()).counts.created == 1


def test_wrong_key_is_unauthenticated(server: RunningServer) -> None:
    server.add_hospital(HOSPITAL)
    with pytest.raises(grpc.RpcError) as failure:
        submit(server.channel, "mrk_0000000000000000_" + "x" * 43, _single())
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as missing:
        submit(server.channel, None, _single())
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_oversized_documents_are_refused_and_the_server_goes_on(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, MUTUALREC_MAX_FHIR_MIB="1")
    running = start_server(settings)
    server = next(running)
    try:
        key = server.add_hospital(HOSPITAL)
        padded = _single()
        padded["note"] = [{"text": "x" * (1536 * 1024)}]
        with pytest.raises(grpc.RpcError) as over_limit:
            submit(server.channel, key, padded)
        assert over_limit.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert bad_request(over_limit.value) == {"body": "DOCUMENT_TOO_LARGE"}

        with pytest.raises(grpc.RpcError) as huge:
            submit(server.channel, key, b" " * (50 * 1024 * 1024))
        assert huge.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        assert submit(server.channel, key, _single()).counts.created == 1
    finally:
        running.close()


def test_eight_clients_sending_one_bundle_leave_one_result_and_one_version(
    server: RunningServer,
) -> None:
    key = server.add_hospital(HOSPITAL)
    document = bundle([observation(f"C-{i}", value=4 + i / 10) for i in range(20)])
    body = encode(document)
    barrier = threading.Barrier(8)
    responses: list[ingest_pb2.SubmitObservationsResponse] = []
    errors: list[BaseException] = []

    def client() -> None:
        channel = server.new_channel()
        try:
            barrier.wait()
            responses.append(submit(channel, key, body))
        except BaseException as exc:
            errors.append(exc)
        finally:
            channel.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert errors == []
    assert len(responses) == 8
    per_entry = Counter(
        (e.index, e.outcome)
        for r in responses
        for e in r.entries
        if e.resource_type == "Observation"
    )
    for index in range(1, 21):
        assert per_entry[(index, ingest_pb2.CREATED)] == 1
        assert per_entry[(index, ingest_pb2.UNCHANGED)] == 7
    assert _count(server, LabResult) == 20
    assert _count(server, LabResultVersion) == 20
    assert len(_documents(server)) == 1


def test_parse_workers_in_other_processes_give_the_same_outcomes(tmp_path: Path) -> None:
    before = set(multiprocessing.active_children())
    running = start_server(make_settings(tmp_path, MUTUALREC_PARSE_WORKERS="2"))
    server = next(running)
    try:
        key = server.add_hospital(HOSPITAL)
        # A server that has parsed nothing yet holds no parse worker (a DICOM-only deployment
        # never pays for them); the first document starts them.
        assert set(multiprocessing.active_children()) == before
        first = submit(server.channel, key, _three_results())
        assert set(multiprocessing.active_children()) - before
        again = submit(server.channel, key, _three_results())
        with pytest.raises(grpc.RpcError) as failure:
            submit(server.channel, key, b"[1, 2")
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request(failure.value) == {"body": "BAD_JSON"}
    finally:
        running.close()

    assert _outcomes(first) == [ingest_pb2.CONTEXT] + [ingest_pb2.CREATED] * 3
    assert _outcomes(again) == [ingest_pb2.CONTEXT] + [ingest_pb2.UNCHANGED] * 3


def test_the_kept_original_is_encrypted_at_rest_and_read_back_whole(
    server: RunningServer,
) -> None:
    key = server.add_hospital(HOSPITAL)
    body = encode(_three_results())
    assert PATIENT_ID.encode() in body

    response = submit(server.channel, key, body)

    object_key = document_key(response.document_sha256)
    # What the object directory holds: ciphertext, without the resident's ID number.
    raw = FileSystemObjectStore(Path(server.runtime.settings.object_store_url[len("file://") :]))
    at_rest = b"".join(raw.open(object_key))
    assert at_rest.startswith(b"MRS1")
    assert PATIENT_ID.encode() not in at_rest
    assert b"Observation" not in at_rest
    # What every reader of the original gets: the document as the hospital sent it.
    assert b"".join(server.runtime.store.open(object_key)) == body
