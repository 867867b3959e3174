"""UploadStudy and GetStudyStatus over real gRPC, on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pydicom
import pytest
from sqlalchemy import func, select, text

from mutualrec.identity import parse_identity, patient_key
from mutualrec.server import max_message_bytes
from mutualrec.storage import audit_log
from mutualrec.storage.institutions import revoke_key
from mutualrec.storage.models import Instance, Patient, PatientIdentifier, Series, Study
from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc
from tests.conftest import PYDICOM_FILES, SAMPLES, RunningServer
from tests.helpers import (
    bad_request,
    chunk_messages,
    file_messages,
    header_message,
    study_files,
    upload,
)

CT = "ct_chest_contrast_hosp_a"


def _count(server: RunningServer, model: type) -> int:
    with server.runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _objects(server: RunningServer) -> list[str]:
    return sorted(o.key for o in server.runtime.store.list("dicom/"))


def _rewritten(path: Path, **changes: str) -> bytes:
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "folder",
    ["ct_chest_contrast_hosp_a", "mr_brain_hosp_b", "dx_chest_2v_hosp_c", "us_abdomen_hosp_a"],
)
def test_sample_study_is_stored_whole(
    server: RunningServer, manifest: dict[str, Any], folder: str
) -> None:
    study = manifest[folder]
    key = server.add_hospital(study["institution_code"])
    files = study_files(study)
    response = upload(server.channel, key, [header_message(study), *file_messages(files)])

    assert [o.outcome for o in response.instances] == [ingest_pb2.STORED] * len(files)
    assert [o.version for o in response.instances] == [1] * len(files)
    summary = response.study
    assert summary.study_instance_uid == study["study_instance_uid"]
    assert summary.institution_code == study["institution_code"]
    assert summary.instance_count == study["instance_count"]
    assert summary.series_count == study["series_count"]
    assert summary.size_bytes == sum(p.stat().st_size for p in files)
    assert list(summary.modalities) == [study["modality"]]
    assert summary.contrast == study["contrast"]
    assert summary.body_parts[0] == study["body_part"]
    assert summary.accession_number == study["accession_number"]
    assert summary.performed_item_code == study["performed_item_code"]

    # Every blob is byte-identical to the file sent, under its deterministic key.
    by_sop = {f["sop_instance_uid"]: f for f in study["files"]}
    with server.runtime.sessions() as session:
        rows = session.execute(
            select(Instance.sop_instance_uid, Instance.object_key, Instance.sha256)
        ).all()
    assert {r.sop_instance_uid for r in rows} == set(by_sop)
    for sop, object_key, sha in rows:
        assert sha == by_sop[sop]["sha256"]
        assert object_key.startswith(f"dicom/{study['study_instance_uid']}/")
        assert (
            b"".join(server.runtime.store.open(object_key))
            == (SAMPLES / by_sop[sop]["path"]).read_bytes()
        )


def test_identity_number_is_never_stored(server: RunningServer, manifest: dict[str, Any]) -> None:
    study = manifest[CT]
    key = server.add_hospital(study["institution_code"])
    upload(server.channel, key, [header_message(study), *file_messages(study_files(study))])
    number = study["patient"]["document_number"]
    with server.runtime.sessions() as session:
        keys = session.scalars(select(Patient.patient_key)).all()
        links = session.execute(
            select(PatientIdentifier.local_id, PatientIdentifier.patient_key)
        ).all()
    assert len(keys) == 1
    assert number not in keys[0]
    assert len(keys[0]) == 64
    assert links == [(study["patient"]["hospital_patient_id"], keys[0])]


def test_reupload_changes_nothing(server: RunningServer, manifest: dict[str, Any]) -> None:
    study = manifest[CT]
    key = server.add_hospital(study["institution_code"])
    messages = [header_message(study), *file_messages(study_files(study))]
    upload(server.channel, key, messages)
    rows, objects = _count(server, Instance), _objects(server)

    again = upload(server.channel, key, messages)
    assert {o.outcome for o in again.instances} == {ingest_pb2.DUPLICATE_IDENTICAL}
    assert again.counts.duplicate_identical == study["instance_count"]
    assert _count(server, Instance) == rows
    assert _objects(server) == objects


def test_changed_bytes_become_a_new_version(
    server: RunningServer, manifest: dict[str, Any], tmp_path: Path
) -> None:
    study = manifest[CT]
    key = server.add_hospital(study["institution_code"])
    files = study_files(study)
    upload(server.channel, key, [header_message(study), *file_messages(files)])
    original_objects = _objects(server)

    corrected = _rewritten(files[0], SeriesDescription="corrected after QA")
    response = upload(
        server.channel, key, [header_message(study), *chunk_messages(corrected, "fix.dcm")]
    )
    (outcome,) = response.instances
    assert outcome.outcome == ingest_pb2.NEW_VERSION
    assert outcome.version == 2
    # Nothing overwritten: the first version's blob is still there, plus the new one.
    assert set(original_objects) < set(_objects(server))
    assert len(_objects(server)) == len(original_objects) + 1
    assert response.study.instance_count == study["instance_count"]

    status = ingest_pb2_grpc.IngestServiceStub(server.channel).GetStudyStatus(
        ingest_pb2.GetStudyStatusRequest(study_instance_uid=study["study_instance_uid"]),
        metadata=(("authorization", f"Bearer {key}"),),
    )
    held = {i.sop_instance_uid: i for i in status.instances}
    assert len(held) == study["instance_count"]
    assert held[outcome.sop_instance_uid].version == 2
    assert held[outcome.sop_instance_uid].sha256 == outcome.sha256


def test_institution_comes_from_the_key(server: RunningServer, manifest: dict[str, Any]) -> None:
    study = manifest["dx_chest_2v_hosp_c"]
    key = server.add_hospital("H-OTHER-001")
    response = upload(
        server.channel, key, [header_message(study), *file_messages(study_files(study))]
    )
    assert response.study.institution_code == "H-OTHER-001"


def test_study_status_lets_a_gateway_resume(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = server.add_hospital(study["institution_code"])
    other_key = server.add_hospital("H-OTHER-002")
    files = study_files(study)
    upload(server.channel, key, [header_message(study), *file_messages(files[:5])])
    stub = ingest_pb2_grpc.IngestServiceStub(server.channel)
    request = ingest_pb2.GetStudyStatusRequest(study_instance_uid=study["study_instance_uid"])

    status = stub.GetStudyStatus(request, metadata=(("authorization", f"Bearer {key}"),))
    held = {i.sop_instance_uid for i in status.instances}
    sent = {f["sop_instance_uid"] for f in study["files"][:5]}
    assert held == sent
    missing = [
        p for p, f in zip(files, study["files"], strict=True) if f["sop_instance_uid"] not in held
    ]
    response = upload(server.channel, key, [header_message(study), *file_messages(missing)])
    assert response.counts.stored == len(files) - 5
    assert response.study.instance_count == len(files)

    for metadata, uid in [
        ((("authorization", f"Bearer {other_key}"),), study["study_instance_uid"]),
        ((("authorization", f"Bearer {key}"),), "1.2.3.4.5"),
    ]:
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetStudyStatus(
                ingest_pb2.GetStudyStatusRequest(study_instance_uid=uid), metadata=metadata
            )
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetStudyStatus(
            ingest_pb2.GetStudyStatusRequest(), metadata=(("authorization", f"Bearer {key}"),)
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(raised.value) == {"study_instance_uid": "MISSING_FIELD"}


@pytest.mark.parametrize(
    "credential",
    [None, "mrk_aaaaaaaaaaaaaaaa_" + "b" * 43, "not-a-key", "revoked"],
)
def test_credentials_are_required(
    server: RunningServer, manifest: dict[str, Any], credential: str | None
) -> None:
    study = manifest["us_abdomen_hosp_a"]
    key = server.add_hospital(study["institution_code"])
    if credential == "revoked":
        with server.runtime.sessions.begin() as session:
            assert revoke_key(session, key.split("_")[1])
        credential = key
    wrong_secret = key[:-3] + ("aaa" if not key.endswith("aaa") else "bbb")
    for presented in {credential, wrong_secret} - {key}:
        with pytest.raises(grpc.RpcError) as raised:
            upload(
                server.channel,
                presented,
                [header_message(study), *file_messages(study_files(study))],
            )
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _count(server, Instance) == 0


def test_bad_instances_are_rejected_and_good_ones_kept(
    server: RunningServer, manifest: dict[str, Any], tmp_path: Path
) -> None:
    study = manifest[CT]
    other = manifest["mr_brain_hosp_b"]
    key = server.add_hospital(study["institution_code"])
    files = study_files(study)
    good = files[0].read_bytes()
    cases: list[tuple[str, bytes, str, str]] = [
        ("not-dicom.txt", b"this is a lab report, not an image" * 10, "instance", "NOT_DICOM"),
        ("truncated.dcm", files[1].read_bytes()[:-1000], "instance", "TRUNCATED"),
        (
            "DICOMDIR",
            (PYDICOM_FILES / "dicomdirtests" / "DICOMDIR").read_bytes(),
            "(0002,0002) MediaStorageSOPClassUID",
            "DICOMDIR",
        ),
        (
            "no-study-uid.dcm",
            _rewritten(files[2], StudyInstanceUID=""),
            "(0020,000D) StudyInstanceUID",
            "MISSING_ATTRIBUTE",
        ),
        (
            "bad-uid.dcm",
            _rewritten(files[3], SOPInstanceUID="1.2.3.abc"),
            "(0008,0018) SOPInstanceUID",
            "MALFORMED_UID",
        ),
        (
            "other-study.dcm",
            study_files(other)[0].read_bytes(),
            "(0020,000D) StudyInstanceUID",
            "SECOND_STUDY",
        ),
        (
            "other-patient.dcm",
            _rewritten(files[4], PatientID="SOMEONE-ELSE"),
            "(0010,0020) PatientID",
            "SECOND_PATIENT",
        ),
    ]
    messages = [header_message(study), *chunk_messages(good, "good-first.dcm")]
    for name, data, _field, _reason in cases:
        messages += chunk_messages(data, name)
    messages += chunk_messages(files[5].read_bytes(), "good-last.dcm")
    response = upload(server.channel, key, messages)

    outcomes = {o.source_name: o for o in response.instances}
    assert outcomes["good-first.dcm"].outcome == ingest_pb2.STORED
    assert outcomes["good-last.dcm"].outcome == ingest_pb2.STORED
    for name, _data, field, reason in cases:
        outcome = outcomes[name]
        assert outcome.outcome == ingest_pb2.REJECTED, name
        assert outcome.reason
        assert (field, reason) in {(v.field, v.reason) for v in outcome.violations}, (
            name,
            outcome.violations,
        )
    assert response.counts.stored == 2
    assert response.counts.rejected == len(cases)
    # Nothing of a rejected instance was stored or indexed.
    assert _count(server, Instance) == 2
    assert len(_objects(server)) == 2
    assert _count(server, Study) == 1


def test_oversized_chunk_rejects_that_instance_only(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = server.add_hospital(study["institution_code"])
    files = study_files(study)
    big = files[0].read_bytes() + b"\0" * (1024 * 1024)
    messages = [
        header_message(study),
        *chunk_messages(big, "big.dcm", chunk=len(big)),
        *file_messages(files[1:2]),
    ]
    response = upload(server.channel, key, messages)
    assert [o.outcome for o in response.instances] == [ingest_pb2.REJECTED, ingest_pb2.STORED]
    assert response.instances[0].violations[0].field == "chunk.data"
    assert response.instances[0].violations[0].reason == "CHUNK_TOO_LARGE"


def test_message_beyond_grpc_limit(server: RunningServer, manifest: dict[str, Any]) -> None:
    study = manifest[CT]
    key = server.add_hospital(study["institution_code"])
    huge = b"\0" * (max_message_bytes(server.runtime.settings) + 1024)
    with pytest.raises(grpc.RpcError) as raised:
        upload(
            server.channel,
            key,
            [header_message(study), *chunk_messages(huge, "huge", chunk=len(huge))],
        )
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _count(server, Instance) == 0


def test_stream_ending_inside_an_instance(server: RunningServer, manifest: dict[str, Any]) -> None:
    study = manifest[CT]
    key = server.add_hospital(study["institution_code"])
    files = study_files(study)
    partial = chunk_messages(files[1].read_bytes(), "cut.dcm", last=False)[:2]
    response = upload(
        server.channel, key, [header_message(study), *file_messages(files[:1]), *partial]
    )
    assert [o.outcome for o in response.instances] == [ingest_pb2.STORED, ingest_pb2.REJECTED]
    assert response.instances[1].violations[0].reason == "INCOMPLETE_INSTANCE"
    assert _count(server, Instance) == 1
    assert len(_objects(server)) == 1


@pytest.mark.parametrize(
    ("messages_of", "field", "reason"),
    [
        (lambda s, f: [], "header", "EMPTY_UPLOAD"),
        (lambda s, f: list(file_messages(f[:1])), "header", "MISSING_HEADER"),
        (lambda s, f: [header_message(s)], "chunk", "EMPTY_UPLOAD"),
        (
            lambda s, f: [
                header_message(s, document_number="500103196803151091"),
                *file_messages(f[:1]),
            ],
            "header.patient.document_number",
            "INVALID_IDENTITY",
        ),
        (
            lambda s, f: [
                header_message(s, document_type="IDENTITY_DOCUMENT_TYPE_UNSPECIFIED"),
                *file_messages(f[:1]),
            ],
            "header.patient.document_type",
            "INVALID_IDENTITY",
        ),
        (
            lambda s, f: [
                header_message(s, performed_item_code="ct chest!"),
                *file_messages(f[:1]),
            ],
            "header.performed_item_code",
            "MALFORMED_CODE",
        ),
        (
            lambda s, f: [header_message(s), header_message(s), *file_messages(f[:1])],
            "header",
            "UNEXPECTED_HEADER",
        ),
    ],
    ids=[
        "empty",
        "no-header",
        "header-only",
        "bad-id-number",
        "no-id-type",
        "bad-item-code",
        "two-headers",
    ],
)
def test_invalid_uploads(
    server: RunningServer, manifest: dict[str, Any], messages_of: Any, field: str, reason: str
) -> None:
    study = manifest[CT]
    key = server.add_hospital(study["institution_code"])
    with pytest.raises(grpc.RpcError) as raised:
        upload(server.channel, key, messages_of(study, study_files(study)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(raised.value).get(field) == reason
    assert _count(server, Instance) == 0
    # The server keeps serving.
    assert (
        upload(
            server.channel, key, [header_message(study), *file_messages(study_files(study)[:1])]
        ).counts.stored
        == 1
    )


def test_conflicting_owners_are_refused(server: RunningServer, manifest: dict[str, Any]) -> None:
    study = manifest[CT]
    key = server.add_hospital(study["institution_code"])
    intruder = server.add_hospital("H-OTHER-003")
    files = study_files(study)
    upload(server.channel, key, [header_message(study), *file_messages(files[:1])])

    # Another institution cannot add to (or learn about) this study.
    response = upload(server.channel, intruder, [header_message(study), *file_messages(files[1:2])])
    assert response.instances[0].violations[0].reason == "CONFLICT"
    # The same study declared for another patient is refused.
    other_patient = manifest["us_abdomen_hosp_a"]["patient"]["document_number"]
    response = upload(
        server.channel,
        key,
        [header_message(study, document_number=other_patient), *file_messages(files[1:2])],
    )
    assert response.instances[0].outcome == ingest_pb2.REJECTED
    # A hospital PatientID already linked to one patient cannot name another.
    us = manifest["us_abdomen_hosp_a"]
    relabelled = _rewritten(study_files(us)[0], PatientID=study["patient"]["hospital_patient_id"])
    response = upload(
        server.channel, key, [header_message(us), *chunk_messages(relabelled, "x.dcm")]
    )
    assert {(v.field, v.reason) for v in response.instances[0].violations} == {
        ("(0010,0020) PatientID", "CONFLICT")
    }
    assert _count(server, Instance) == 1


def test_eight_concurrent_uploads_store_each_instance_once(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = server.add_hospital(study["institution_code"])
    messages = [header_message(study), *file_messages(study_files(study))]
    results: list[ingest_pb2.UploadStudyResponse] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def client() -> None:
        channel = server.new_channel()
        try:
            start.wait()
            results.append(upload(channel, key, messages))
        except BaseException as exc:
            errors.append(exc)
        finally:
            channel.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert len(results) == 8
    stored = Counter(
        o.sop_instance_uid for r in results for o in r.instances if o.outcome == ingest_pb2.STORED
    )
    assert set(stored.values()) == {1}
    assert len(stored) == study["instance_count"]
    outcomes = {o.outcome for r in results for o in r.instances}
    assert outcomes <= {ingest_pb2.STORED, ingest_pb2.DUPLICATE_IDENTICAL}
    assert _count(server, Instance) == study["instance_count"]
    assert _count(server, Series) == study["series_count"]
    assert _count(server, Study) == 1
    assert _count(server, Patient) == 1
    assert len(_objects(server)) == study["instance_count"]


def test_cancelled_upload_keeps_completed_instances_only(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = server.add_hospital(study["institution_code"])
    files = study_files(study)
    release = threading.Event()

    def messages() -> Any:
        yield header_message(study)
        yield from file_messages(files[:2])
        yield from chunk_messages(files[2].read_bytes(), "cut.dcm", last=False)[:1]
        release.wait(30)  # keep the stream open mid-instance until the test cancels it

    stub = ingest_pb2_grpc.IngestServiceStub(server.channel)
    future = stub.UploadStudy.future(messages(), metadata=(("authorization", f"Bearer {key}"),))
    deadline = time.monotonic() + 30
    while _count(server, Instance) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    future.cancel()
    release.set()
    assert future.cancelled() or future.exception() is not None
    # The server keeps serving, and only the two complete instances exist.
    upload(server.channel, key, [header_message(study), *file_messages(files[3:4])])
    assert _count(server, Instance) == 3
    assert len(_objects(server)) == 3
    with server.runtime.sessions() as session:
        assert session.execute(text("select 1")).scalar() == 1


def test_sop_instance_held_in_another_study_is_refused(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = server.add_hospital(study["institution_code"])
    files = study_files(study)
    upload(server.channel, key, [header_message(study), *file_messages(files[:1])])
    objects = _objects(server)

    # A new study (so the per-instance pre-check is skipped) reusing a held SOP Instance UID.
    reused = _rewritten(
        files[0],
        StudyInstanceUID="1.2.826.0.1.3680043.8.498.1",
        SeriesInstanceUID="1.2.826.0.1.3680043.8.498.2",
    )
    fresh = _rewritten(
        files[1],
        StudyInstanceUID="1.2.826.0.1.3680043.8.498.1",
        SeriesInstanceUID="1.2.826.0.1.3680043.8.498.2",
    )
    response = upload(
        server.channel,
        key,
        [
            header_message(study),
            *chunk_messages(fresh, "fresh.dcm"),
            *chunk_messages(reused, "reused.dcm"),
        ],
    )
    outcomes = {o.source_name: o for o in response.instances}
    assert outcomes["fresh.dcm"].outcome == ingest_pb2.STORED
    assert outcomes["reused.dcm"].outcome == ingest_pb2.REJECTED
    assert {(v.field, v.reason) for v in outcomes["reused.dcm"].violations} == {
        ("(0008,0018) SOPInstanceUID", "CONFLICT")
    }
    # The refused instance left no blob behind; the good one of the same batch was kept.
    assert len(_objects(server)) == len(objects) + 1
    assert _count(server, Instance) == 2


def test_a_held_study_resent_under_another_patient_is_rejected_not_a_duplicate(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = server.add_hospital(study["institution_code"])
    messages = list(file_messages(study_files(study)))
    upload(server.channel, key, [header_message(study), *messages])

    other_patient = manifest["us_abdomen_hosp_a"]["patient"]["document_number"]
    response = upload(
        server.channel, key, [header_message(study, document_number=other_patient), *messages]
    )
    assert response.counts.rejected == study["instance_count"]
    assert response.counts.duplicate_identical == 0
    for outcome in response.instances:
        assert {(v.field, v.reason) for v in outcome.violations} == {
            ("header.patient", "OTHER_PATIENT")
        }
    # Nothing of the held study is described to the upload naming another patient.
    assert not response.HasField("study")
    # The patient the upload named sees that nothing was kept under their name.
    named = patient_key(
        parse_identity("RESIDENT_ID_CARD", other_patient),
        server.runtime.settings.patient_key_secret,
    )
    deadline = time.monotonic() + 10
    while True:
        with server.runtime.sessions() as session:
            whats = [access.what for _, access in audit_log.accesses(session, named, 10)]
        if whats or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert whats == [
        f"upload of imaging study; 0 instances stored, {study['instance_count']} rejected"
    ]


def test_an_upload_into_another_institutions_study_learns_nothing_of_it(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    owner = server.add_hospital(study["institution_code"])
    intruder = server.add_hospital("H-OTHER-003")
    files = study_files(study)
    upload(server.channel, owner, [header_message(study), *file_messages(files[:2])])
    held_series = str(pydicom.dcmread(files[0]).SeriesInstanceUID)

    response = upload(
        server.channel,
        intruder,
        [header_message(study, accession_number="MINE-1"), *file_messages(files[2:3])],
    )
    assert response.instances[0].outcome == ingest_pb2.REJECTED
    assert not response.HasField("study")

    # A study of the intruder's own, then an instance of it reusing a SOP Instance UID that the
    # owner holds: refused without naming the owner's series.
    own_study, own_series = "1.2.826.0.1.3680043.8.498.11", "1.2.826.0.1.3680043.8.498.12"
    first = _rewritten(
        files[3],
        StudyInstanceUID=own_study,
        SeriesInstanceUID=own_series,
        SOPInstanceUID="1.2.826.0.1.3680043.8.498.13",
    )
    mine = header_message(study, accession_number="MINE-2")
    upload(server.channel, intruder, [mine, *chunk_messages(first, "own.dcm")])
    reused = _rewritten(files[0], StudyInstanceUID=own_study, SeriesInstanceUID=own_series)
    response = upload(server.channel, intruder, [mine, *chunk_messages(reused, "reused.dcm")])
    refused = response.instances[0]
    assert refused.outcome == ingest_pb2.REJECTED
    assert {(v.field, v.reason) for v in refused.violations} == {
        ("(0008,0018) SOPInstanceUID", "CONFLICT")
    }
    told = str(response)
    for secret in (held_series, study["accession_number"], study["institution_code"]):
        assert secret not in told
