"""STOW-RS through the real HTTP door: httpx with hand-made multipart bodies, and
dicomweb-client's ``store_instances``; what it stores is then read back over gRPC."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from requests import HTTPError

from mutualrec.client.upload import auth_metadata
from mutualrec.services.identity import TokenRequest
from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc, ingest_pb2, ingest_pb2_grpc
from tests.conftest import RunningServer, make_settings, start_server
from tests.helpers import study_files

CT = "ct_chest_contrast_hosp_a"
BOUNDARY = "mutualrec-test-boundary"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
REFERENCED, FAILED, RETRIEVE_URL = "00081199", "00081198", "00081190"
FAILURE_REASON, WARNING_REASON, SOP_INSTANCE = "00081197", "00081196", "00081155"


@pytest.fixture
def stow(tmp_path: Path, database_url: str) -> Iterator[RunningServer]:
    yield from start_server(make_settings(tmp_path, MUTUALREC_DATABASE_URL=database_url))


def _body(parts: list[bytes], content_type: str = "application/dicom") -> bytes:
    out = io.BytesIO()
    for part in parts:
        out.write(f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\n\r\n".encode())
        out.write(part)
        out.write(b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue()


def _identity(study: dict[str, Any]) -> str:
    patient = study["patient"]
    return f"{patient['document_type']} {patient['document_number']}"


def _post(
    server: RunningServer,
    key: str,
    body: bytes,
    *,
    path: str = "/dicomweb/studies",
    content_type: str = STOW_TYPE,
    **headers: str,
) -> httpx.Response:
    sent = {"authorization": f"Bearer {key}", "content-type": content_type}
    sent.update({name.replace("_", "-"): value for name, value in headers.items()})
    return httpx.post(f"{server.http_url}{path}", content=body, headers=sent, timeout=60)


def _held(server: RunningServer, key: str, study_uid: str) -> set[str]:
    status = ingest_pb2_grpc.IngestServiceStub(server.channel).GetStudyStatus(
        ingest_pb2.GetStudyStatusRequest(study_instance_uid=study_uid),
        metadata=auth_metadata(key),
    )
    return {i.sop_instance_uid for i in status.instances}


def _history(server: RunningServer, document_number: str) -> list[str]:
    """The patient's studies as their app lists them over gRPC."""
    token = server.runtime.patient_tokens.issue(TokenRequest("RESIDENT_ID_CARD", document_number))
    listed = imaging_pb2_grpc.ImagingServiceStub(server.channel).ListStudies(
        imaging_pb2.ListStudiesRequest(), metadata=auth_metadata(token.token)
    )
    return [s.study_instance_uid for s in listed.studies]


def _bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_a_study_is_stored_and_in_the_patients_history(
    stow: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = stow.add_hospital(study["institution_code"])
    files = study_files(study)
    reply = _post(
        stow,
        key,
        _body([p.read_bytes() for p in files]),
        path=f"/dicomweb/studies/{study['study_instance_uid']}",
        x_patient_identity=_identity(study),
        x_accession_number=study["accession_number"],
    )

    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/dicom+json"
    body = reply.json()
    assert FAILED not in body
    uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files}
    referenced = body[REFERENCED]["Value"]
    assert {r[SOP_INSTANCE]["Value"][0] for r in referenced} == uids
    assert body[RETRIEVE_URL]["Value"] == [
        f"{stow.http_url}/dicomweb/studies/{study['study_instance_uid']}"
    ]
    assert all(
        r[RETRIEVE_URL]["Value"][0].startswith(body[RETRIEVE_URL]["Value"][0]) for r in referenced
    )
    # Acknowledged means durable and indexed: the hospital's status and the patient's history.
    assert _held(stow, key, study["study_instance_uid"]) == uids
    assert study["study_instance_uid"] in _history(stow, study["patient"]["document_number"])


def test_a_duplicate_is_a_warning_and_a_broken_instance_fails_beside_good_ones(
    stow: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = stow.add_hospital(study["institution_code"])
    files = [p.read_bytes() for p in study_files(study)[:3]]
    identity = _identity(study)
    first = _post(stow, key, _body(files[:1]), x_patient_identity=identity)
    assert first.status_code == 200, first.text

    broken = pydicom.dcmread(io.BytesIO(files[1]))
    broken.StudyDate = "20241345"
    reply = _post(
        stow,
        key,
        _body([files[0], _bytes(broken), b"not DICOM at all", files[2]]),
        x_patient_identity=identity,
    )

    assert reply.status_code == 202, reply.text
    body = reply.json()
    referenced = body[REFERENCED]["Value"]
    assert [r[WARNING_REASON]["Value"] for r in referenced if WARNING_REASON in r] == [[0xB000]]
    failed = body[FAILED]["Value"]
    assert [f[FAILURE_REASON]["Value"] for f in failed] == [[0xC000], [0xC000]]
    assert "Value" not in failed[1][SOP_INSTANCE]  # unreadable: it names no instance
    held = _held(stow, key, study["study_instance_uid"])
    assert broken.SOPInstanceUID not in held
    assert len(held) == 2


def test_without_identity_the_patient_is_resolved_as_c_store_does(
    stow: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = stow.add_hospital(study["institution_code"])
    path = study_files(study)[0]
    with_document = pydicom.dcmread(path)
    item = Dataset()
    item.PatientID = study["patient"]["document_number"]
    item.IssuerOfPatientID = "RESIDENT_ID_CARD"
    with_document.OtherPatientIDsSequence = [item]
    stored = _post(stow, key, _body([_bytes(with_document)]))
    assert stored.status_code == 200, stored.text
    assert study["study_instance_uid"] in _history(stow, study["patient"]["document_number"])

    # Another study of an unknown PatientID: held unlinked, a warning (link it later).
    unknown = pydicom.dcmread(path)
    unknown.PatientID = "MRN-NEVER-SEEN"
    unknown.StudyInstanceUID = generate_uid()
    unknown.SeriesInstanceUID = generate_uid()
    unknown.SOPInstanceUID = generate_uid()
    held = _post(stow, key, _body([_bytes(unknown)]))
    assert held.status_code == 202, held.text
    assert held.json()[REFERENCED]["Value"][0][WARNING_REASON]["Value"] == [0xB000]

    # No PatientID and no document: nobody's, refused; nothing stored is a 409.
    nobody = pydicom.dcmread(path)
    nobody.PatientID = ""
    nobody.StudyInstanceUID = generate_uid()
    nobody.SeriesInstanceUID = generate_uid()
    nobody.SOPInstanceUID = generate_uid()
    refused = _post(stow, key, _body([_bytes(nobody)]))
    assert refused.status_code == 409, refused.text
    assert refused.json()[FAILED]["Value"][0][FAILURE_REASON]["Value"] == [0xC001]


def test_an_instance_of_another_study_than_the_url_names_fails(
    stow: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = stow.add_hospital(study["institution_code"])
    reply = _post(
        stow,
        key,
        _body([study_files(study)[0].read_bytes()]),
        path=f"/dicomweb/studies/{generate_uid()}",
        x_patient_identity=_identity(study),
    )
    assert reply.status_code == 409, reply.text
    assert reply.json()[FAILED]["Value"][0][FAILURE_REASON]["Value"] == [0xA900]
    assert study["study_instance_uid"] not in _history(stow, study["patient"]["document_number"])


def test_malformed_requests_are_problems(stow: RunningServer, manifest: dict[str, Any]) -> None:
    study = manifest[CT]
    key = stow.add_hospital(study["institution_code"])
    body = _body([study_files(study)[0].read_bytes()])

    invalid = _post(stow, key, body, x_patient_identity="RESIDENT_ID_CARD 500112199007211021")
    assert invalid.status_code == 400
    assert invalid.headers["content-type"] == "application/problem+json"
    assert [v["field"] for v in invalid.json()["violations"]] == [
        "X-Patient-Identity (document number)"
    ]
    malformed = _post(stow, key, body, x_patient_identity="RESIDENT_ID_CARD")
    assert malformed.status_code == 400
    assert malformed.json()["violations"][0]["reason"] == "MALFORMED_IDENTITY"

    for content_type in ("application/json", 'multipart/related; type="image/jpeg"; boundary=x'):
        wrong = _post(stow, key, body, content_type=content_type)
        assert wrong.status_code == 415, content_type
        assert wrong.headers["content-type"] == "application/problem+json"
    wrong_part = _post(stow, key, _body([b"x"], content_type="image/png"))
    assert wrong_part.status_code == 415

    truncated = _post(stow, key, body[:-20], x_patient_identity=_identity(study))
    assert truncated.status_code == 400
    assert truncated.json()["violations"][0]["reason"] == "TRUNCATED_MULTIPART"
    no_boundary = _post(stow, key, body, content_type='multipart/related; type="application/dicom"')
    assert no_boundary.status_code == 400
    assert _history(stow, study["patient"]["document_number"]) == []


def test_only_hospitals_store(stow: RunningServer, manifest: dict[str, Any]) -> None:
    study = manifest[CT]
    stow.add_hospital(study["institution_code"])
    token = stow.runtime.patient_tokens.issue(
        TokenRequest("RESIDENT_ID_CARD", study["patient"]["document_number"])
    )
    body = _body([study_files(study)[0].read_bytes()])
    assert _post(stow, token.token, body).status_code == 403
    anonymous = httpx.post(
        f"{stow.http_url}/dicomweb/studies", content=body, headers={"content-type": STOW_TYPE}
    )
    assert anonymous.status_code == 401


def test_oversize_parts_and_bodies_are_413(tmp_path: Path, manifest: dict[str, Any]) -> None:
    study = manifest[CT]
    settings = make_settings(
        tmp_path,
        MUTUALREC_DATABASE_URL=f"sqlite:///{tmp_path / 'index.sqlite3'}",
        MUTUALREC_MAX_INSTANCE_MIB="1",
        MUTUALREC_MAX_STOW_MIB="2",
    )
    servers = start_server(settings)
    server = next(servers)
    try:
        key = server.add_hospital(study["institution_code"])
        first = study_files(study)[0].read_bytes()
        big_part = _post(
            server,
            key,
            _body([first, b"\0" * (1024 * 1024 + 1)]),
            x_patient_identity=_identity(study),
        )
        assert big_part.status_code == 413
        assert "part[1]" in big_part.json()["detail"]
        # What was received whole before it is kept, as UploadStudy keeps it.
        assert len(_held(server, key, study["study_instance_uid"])) == 1

        # A body over the limit, streamed without a length (parts each within theirs), and one
        # declaring its length.
        def stream() -> Iterator[bytes]:
            yield from (_body([b"\0" * 900_000]).removesuffix(f"--{BOUNDARY}--\r\n".encode()),) * 3

        headers = {"authorization": f"Bearer {key}", "content-type": STOW_TYPE}
        streamed = httpx.post(
            f"{server.http_url}/dicomweb/studies", content=stream(), headers=headers, timeout=60
        )
        assert streamed.status_code == 413
        declared = _post(server, key, b"\0" * (3 * 1024 * 1024))
        assert declared.status_code == 413
    finally:
        servers.close()


def test_dicomweb_client_store_instances(stow: RunningServer, manifest: dict[str, Any]) -> None:
    study = manifest[CT]
    key = stow.add_hospital(study["institution_code"])
    datasets = [pydicom.dcmread(p) for p in study_files(study)]
    client = DICOMwebClient(
        f"{stow.http_url}/dicomweb",
        headers={"Authorization": f"Bearer {key}", "X-Patient-Identity": _identity(study)},
    )
    answer = client.store_instances(datasets, study["study_instance_uid"])
    assert {i.ReferencedSOPInstanceUID for i in answer.ReferencedSOPSequence} == {
        ds.SOPInstanceUID for ds in datasets
    }
    assert study["study_instance_uid"] in _history(stow, study["patient"]["document_number"])

    other = pydicom.dcmread(study_files(study)[0])
    other.StudyInstanceUID = generate_uid()
    with pytest.raises(HTTPError) as refused:
        client.store_instances([other], study["study_instance_uid"])
    assert refused.value.response.status_code == 409
