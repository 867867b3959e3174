"""What PostgreSQL refuses to store, Python cannot convert, or gRPC cannot carry, sent over real
gRPC on SQLite and PostgreSQL: each ends INVALID_ARGUMENT naming the field, or rejects just its
FHIR entry or DICOM instance while the rest of the call is kept."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pydicom
import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement

from mutualrec.client.upload import auth_metadata
from mutualrec.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    recognition_pb2,
    recognition_pb2_grpc,
)
from tests.conftest import SAMPLES, RunningServer
from tests.fhir_docs import LIS, PATIENT_ID, bundle, observation, submit
from tests.helpers import bad_request, chunk_messages, header_message, upload

CT = "ct_chest_contrast_hosp_a"


def _refusal(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _patient() -> common_pb2.PatientIdentity:
    return common_pb2.PatientIdentity(
        document_type=common_pb2.RESIDENT_ID_CARD, document_number=PATIENT_ID
    )


def test_nul_in_any_string_field_names_the_field(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    key = server.add_hospital(manifest[CT]["institution_code"])
    meta = auth_metadata(key)
    recognition = recognition_pb2_grpc.RecognitionServiceStub(server.channel)
    ingest = ingest_pb2_grpc.IngestServiceStub(server.channel)
    catalog = catalog_pb2_grpc.CatalogServiceStub(server.channel)
    calls: dict[str, Callable[[], Any]] = {
        "ordered_codes[1]": lambda: recognition.CheckOrder(
            recognition_pb2.CheckOrderRequest(
                patient=_patient(), ordered_codes=["LAB-K", "LAB-K\x00"]
            ),
            metadata=meta,
        ),
        "study_instance_uid": lambda: ingest.GetStudyStatus(
            ingest_pb2.GetStudyStatusRequest(study_instance_uid="\x00"), metadata=meta
        ),
        "patient_id": lambda: ingest.LinkPatient(
            ingest_pb2.LinkPatientRequest(patient=_patient(), patient_id="A0\x00"), metadata=meta
        ),
        "catalog_version": lambda: catalog.GetItem(
            catalog_pb2.GetItemRequest(code="LAB-K", catalog_version="2026\x00"), metadata=meta
        ),
        "header.accession_number": lambda: upload(
            server.channel,
            key,
            [header_message(manifest[CT], accession_number="CT\x0024")],
        ),
        "context.department": lambda: recognition.CheckOrder(
            recognition_pb2.CheckOrderRequest(
                patient=_patient(),
                ordered_codes=["LAB-K"],
                context=recognition_pb2.ClinicalContext(department="\x00"),
            ),
            metadata=meta,
        ),
    }
    for field, call in calls.items():
        error = _refusal(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert bad_request(error) == {field: "NUL_CHARACTER"}


def test_bytes_that_are_not_protobuf_name_the_bad_field(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    key = server.add_hospital(manifest[CT]["institution_code"])
    status = server.channel.unary_unary("/mutualrec.v1.IngestService/GetStudyStatus")
    check = server.channel.unary_unary("/mutualrec.v1.RecognitionService/CheckOrder")
    # Field 1 (study_instance_uid): an encoded lone surrogate; then a tag that never ends.
    surrogate = b"\x0a\x03\xed\xa0\x80"
    error = _refusal(lambda: status(surrogate, metadata=auth_metadata(key)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(error) == {"study_instance_uid": "NOT_UTF8"}
    error = _refusal(lambda: status(b"\xff", metadata=auth_metadata(key)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(error) == {"request": "MALFORMED_REQUEST"}
    # CheckOrder.patient (1) holding document_number (2) with a truncated UTF-8 sequence.
    nested = b"\x0a\x04\x12\x02\xc3("
    error = _refusal(lambda: check(nested, metadata=auth_metadata(key)))
    assert bad_request(error) == {"patient.document_number": "NOT_UTF8"}


def _observation(number: str, now: dt.datetime, **changes: Any) -> dict[str, Any]:
    resource = observation(number, issued=(now - dt.timedelta(hours=1)).isoformat())
    resource["effectiveDateTime"] = (now - dt.timedelta(hours=3)).isoformat()
    resource.update(changes)
    return resource


def test_unstorable_fhir_values_reject_their_entry_only(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    key = server.add_hospital(manifest[CT]["institution_code"])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    document = bundle(
        [
            _observation("K-GOOD", now),
            _observation("K-NUL", now, identifier=[{"system": LIS, "value": "K-\x00"}]),
            _observation("K-SURROGATE", now, identifier=[{"system": LIS, "value": "K-\ud800"}]),
            _observation("K-YEAR-1", now, effectiveDateTime="0001-01-01T00:00:00+14:00"),
            _observation("K-KEY", now, **{"note\x00": [{"text": "x"}]}),
        ]
    )
    # ASCII escapes, as an LIS writes \u0000 and lone surrogates (UTF-8 cannot hold them raw).
    body = json.dumps(document, ensure_ascii=True).encode("ascii")
    reply = submit(server.channel, key, body)
    outcomes = [(e.outcome, {v.field: v.reason for v in e.violations}) for e in reply.entries]
    assert outcomes == [
        (ingest_pb2.CONTEXT, {}),
        (ingest_pb2.CREATED, {}),
        (ingest_pb2.ENTRY_REJECTED, {"entry[2].resource.identifier[0].value": "UNSTORABLE_TEXT"}),
        (ingest_pb2.ENTRY_REJECTED, {"entry[3].resource.identifier[0].value": "UNSTORABLE_TEXT"}),
        (ingest_pb2.ENTRY_REJECTED, {"entry[4].resource.effectiveDateTime": "INVALID_VALUE"}),
        (ingest_pb2.ENTRY_REJECTED, {"entry[5].resource.note\x00": "UNSTORABLE_TEXT"}),
    ]


def test_fhir_nested_100000_deep_is_invalid_argument(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    key = server.add_hospital(manifest[CT]["institution_code"])
    depth = 100_000
    body = b'{"resourceType":"Bundle","type":"batch","entry":' + b"[" * depth + b"]" * depth + b"}"
    error = _refusal(lambda: submit(server.channel, key, body))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(error) == {"body": "TOO_DEEP"}


def _instance(path: Path, keyword: str, value: str) -> bytes:
    """The instance with ``keyword`` written as ``value``, valid or not (integer strings as LO,
    so pydicom writes them unconverted)."""
    ds = pydicom.dcmread(path)
    vr = dictionary_VR(keyword)
    ds[keyword] = DataElement(tag_for_keyword(keyword), "LO" if vr == "IS" else vr, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_dicom_values_out_of_range_reject_that_instance_only(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = server.add_hospital(study["institution_code"])
    files = [SAMPLES / f["path"] for f in study["files"]]
    bad = [
        ("InstanceNumber", "1e30"),
        ("InstanceNumber", "99999999999"),
        ("SeriesNumber", "1e999"),
        ("StudyDescription", "CT\x00chest"),
    ]
    messages = [header_message(study), *chunk_messages(files[0].read_bytes(), "good-1")]
    for (keyword, value), path in zip(bad, files[1:], strict=False):
        messages += chunk_messages(_instance(path, keyword, value), keyword)
    messages += chunk_messages(files[5].read_bytes(), "good-2")
    reply = upload(server.channel, key, messages)
    outcomes = [
        (o.source_name, o.outcome, [(v.field, v.reason) for v in o.violations])
        for o in reply.instances
    ]
    assert outcomes == [
        ("good-1", ingest_pb2.STORED, []),
        ("InstanceNumber", ingest_pb2.REJECTED, [("(0020,0013) InstanceNumber", "OUT_OF_RANGE")]),
        ("InstanceNumber", ingest_pb2.REJECTED, [("(0020,0013) InstanceNumber", "OUT_OF_RANGE")]),
        ("SeriesNumber", ingest_pb2.REJECTED, [("(0020,0011) SeriesNumber", "OUT_OF_RANGE")]),
        (
            "StudyDescription",
            ingest_pb2.REJECTED,
            [("(0008,1030) StudyDescription", "MALFORMED_ATTRIBUTE")],
        ),
        ("good-2", ingest_pb2.STORED, []),
    ]
    assert reply.study.instance_count == 2


def test_a_100_kb_uid_is_echoed_capped(server: RunningServer, manifest: dict[str, Any]) -> None:
    key = server.add_hospital(manifest[CT]["institution_code"])
    ingest = ingest_pb2_grpc.IngestServiceStub(server.channel)
    uid = "1." + "2" * 100_000
    error = _refusal(
        lambda: ingest.GetStudyStatus(
            ingest_pb2.GetStudyStatusRequest(study_instance_uid=uid), metadata=auth_metadata(key)
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert len(error.details()) <= 200
    assert error.details().endswith("…")


def test_many_long_violations_fit_the_reply_metadata(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    """A transaction refused for 300 entries, each quoting a 10,000-character Chinese value:
    the status names the first violations, says how many more, and still reaches the caller."""
    key = server.add_hospital(manifest[CT]["institution_code"])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    document = bundle(
        [_observation(f"K-{i}", now, status="终" * 10_000) for i in range(300)], kind="transaction"
    )
    error = _refusal(lambda: submit(server.channel, key, document))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = bad_request(error)
    assert 2 <= len(violations) <= 10
    assert violations[""] == "MORE_VIOLATIONS"
    assert violations["entry[1].resource.status"] == "INVALID_CODE"


def test_entry_violations_echo_a_100_kb_value_capped(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    key = server.add_hospital(manifest[CT]["institution_code"])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    reply = submit(server.channel, key, bundle([_observation("K-1", now, status="f" * 100_000)]))
    rejected = reply.entries[1]
    assert rejected.outcome == ingest_pb2.ENTRY_REJECTED
    assert [v.field for v in rejected.violations] == ["entry[1].resource.status"]
    assert 0 < len(rejected.violations[0].description) <= 400


def test_a_value_longer_than_the_index_holds_rejects_its_entry_only(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    """PostgreSQL enforces column sizes, SQLite does not: on both, the entry is rejected."""
    key = server.add_hospital(manifest[CT]["institution_code"])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    long_identifier = [{"system": LIS, "value": "K" * 400}]
    document = bundle(
        [_observation("K-1", now), _observation("K-2", now, identifier=long_identifier)]
    )
    reply = submit(server.channel, key, document)
    outcomes = [(e.outcome, {v.field: v.reason for v in e.violations}) for e in reply.entries]
    assert outcomes == [
        (ingest_pb2.CONTEXT, {}),
        (ingest_pb2.CREATED, {}),
        (ingest_pb2.ENTRY_REJECTED, {"entry[2].resource.identifier": "TOO_LONG"}),
    ]
