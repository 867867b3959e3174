"""Imaging as PACS send it, over real gRPC on SQLite and PostgreSQL: vendor private sequences
re-encoded as UN, empty or ACR-NEMA attributes, undated studies, declared items that contradict
the images. Expected outcomes and verdicts are written by hand from the samples and the catalog.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from mutualrec.cli import main
from mutualrec.client.upload import auth_metadata
from mutualrec.identity import parse_identity, patient_key
from mutualrec.security.patient_tokens import mint_patient_token
from mutualrec.v1 import (
    common_pb2,
    imaging_pb2,
    imaging_pb2_grpc,
    ingest_pb2,
    recognition_pb2,
    recognition_pb2_grpc,
)
from tests.conftest import SAMPLES, RunningServer
from tests.dicom_vendor import rewritten, with_un_sequence
from tests.helpers import chunk_messages, header_message, qualify, upload

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
ASKER = "H500112003"  # a secondary hospital that checks orders
CT = "ct_chest_contrast_hosp_a"  # tertiary hospital A, declared IMG-CT-CHEST-C, 14:05:12
MR = "mr_brain_hosp_b"  # tertiary hospital B, declared IMG-MR-BRAIN, 10:15:03
NO_DATES = {"StudyDate": None, "SeriesDate": None, "AcquisitionDate": None, "ContentDate": None}
NO_DATE_REASON = (
    "no study date (StudyDate, SeriesDate, AcquisitionDate and ContentDate are all empty): no "
    "validity window can start, so the study is kept in the patient's history but never "
    "recognized"
)
MR_AS_CT_REASON = (
    "the declared item IMG-CT-CHEST-C contradicts the images: modality MR, not CT. Not "
    "recognized for it until an administrator resolves it (mutualrec admin "
    "review-declared-item)"
)


def _days_ago(days: int) -> dt.date:
    return (dt.datetime.now(SHANGHAI) - dt.timedelta(days=days)).date()


def _setup(server: RunningServer, manifest: dict[str, Any]) -> dict[str, str]:
    """Both sample hospitals tertiary and qualified city-wide for imaging; a secondary asker."""
    keys = {ASKER: server.add_hospital(ASKER, level="secondary")}
    for folder in (CT, MR):
        code = manifest[folder]["institution_code"]
        keys[folder] = server.add_hospital(code, level="tertiary")
        qualify(server, code, "imaging")
    return keys


def _send(
    server: RunningServer,
    key: str,
    study: dict[str, Any],
    instance: Callable[[Any], bytes],
    **header: str,
) -> ingest_pb2.UploadStudyResponse:
    """Upload every file of a manifest study as ``instance`` rewrites it."""
    messages = [header_message(study, **header)]
    for entry in study["files"]:
        path = SAMPLES / entry["path"]
        messages.extend(chunk_messages(instance(path), path.name))
    return upload(server.channel, key, messages)


def _check(
    server: RunningServer, key: str, document_number: str, *codes: str
) -> list[tuple[str, str]]:
    stub = recognition_pb2_grpc.RecognitionServiceStub(server.channel)
    response = stub.CheckOrder(
        recognition_pb2.CheckOrderRequest(
            patient=common_pb2.PatientIdentity(
                document_type=common_pb2.RESIDENT_ID_CARD, document_number=document_number
            ),
            ordered_codes=list(codes),
            accept_language="en",
        ),
        metadata=auth_metadata(key),
        timeout=30,
    )
    return [(recognition_pb2.Verdict.Name(line.verdict), line.reason) for line in response.lines]


def _history(server: RunningServer, document_number: str) -> list[imaging_pb2.StudyListing]:
    settings = server.runtime.settings
    key = patient_key(
        parse_identity("RESIDENT_ID_CARD", document_number), settings.patient_key_secret
    )
    token = mint_patient_token(settings.token_secret, key, dt.timedelta(minutes=5)).token
    stub = imaging_pb2_grpc.ImagingServiceStub(server.channel)
    return list(
        stub.ListStudies(imaging_pb2.ListStudiesRequest(), metadata=auth_metadata(token)).studies
    )


def test_a_private_sequence_re_encoded_as_un_is_stored(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    keys = _setup(server, manifest)
    study = manifest[MR]

    response = _send(server, keys[MR], study, with_un_sequence)

    assert [o.outcome for o in response.instances] == [ingest_pb2.STORED] * len(study["files"])
    assert response.study.instance_count == study["instance_count"]
    assert response.study.not_recognized_reason == ""


def test_empty_patient_id_and_a_dotted_series_date_stand_in_for_the_study_date(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    keys = _setup(server, manifest)
    study = manifest[CT]
    day = _days_ago(3)
    dotted = day.strftime("%Y.%m.%d")

    response = _send(
        server,
        keys[CT],
        study,
        lambda path: rewritten(path, PatientID="", StudyDate="", SeriesDate=dotted),
    )

    assert [o.outcome for o in response.instances] == [ingest_pb2.STORED] * len(study["files"])
    assert response.study.study_date == day.isoformat()
    assert response.study.not_recognized_reason == ""
    lines = _check(server, keys[ASKER], study["patient"]["document_number"], "IMG-CT-CHEST-C")
    assert [verdict for verdict, _ in lines] == ["RECOGNIZABLE"]
    # The study's own time of day, on the series' date.
    assert f"reported {day.isoformat()} 14:05" in lines[0][1]


def test_a_study_without_any_date_is_kept_for_the_history_and_never_recognized(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    keys = _setup(server, manifest)
    study = manifest[CT]
    patient = study["patient"]["document_number"]

    response = _send(server, keys[CT], study, lambda path: rewritten(path, **NO_DATES))

    assert [o.outcome for o in response.instances] == [ingest_pb2.STORED] * len(study["files"])
    assert response.study.study_date == ""
    assert response.study.not_recognized_reason == NO_DATE_REASON
    assert _check(server, keys[ASKER], patient, "IMG-CT-CHEST-C") == [
        (
            "NO_RESULT",
            "No result of 胸部CT增强 (CT chest with contrast) on record for this patient",
        )
    ]
    [entry] = _history(server, patient)
    assert entry.study_instance_uid == study["study_instance_uid"]
    assert entry.study_date == ""
    assert entry.not_recognized_reason == NO_DATE_REASON
    assert list(entry.recognition) == []


@dataclass
class _Admin:
    run: Callable[..., tuple[int, str, str]]


@pytest.fixture
def admin(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> _Admin:
    """Runs ``mutualrec admin ...`` in this process against the test server's database."""
    settings = server.runtime.settings
    monkeypatch.setenv("MUTUALREC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MUTUALREC_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MUTUALREC_PATIENT_KEY_SECRET", settings.patient_key_secret.decode())

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["admin", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return _Admin(run)


def _recent(path: Any) -> bytes:
    day = _days_ago(2).strftime("%Y%m%d")
    return rewritten(path, StudyDate=day, SeriesDate=day, ContentDate=day)


@pytest.mark.parametrize(
    ("decision", "after"),
    [
        ("--confirm", {"IMG-CT-CHEST-C": "RECOGNIZABLE", "IMG-MR-BRAIN": "NO_RESULT"}),
        ("--overrule", {"IMG-CT-CHEST-C": "NO_RESULT", "IMG-MR-BRAIN": "RECOGNIZABLE"}),
    ],
)
def test_a_declared_item_the_images_contradict_is_held_until_an_administrator_resolves_it(
    server: RunningServer,
    manifest: dict[str, Any],
    admin: _Admin,
    decision: str,
    after: dict[str, str],
) -> None:
    keys = _setup(server, manifest)
    study = manifest[MR]
    patient = study["patient"]["document_number"]

    # An MR of the brain, declared by the RIS as a contrast chest CT.
    response = _send(server, keys[MR], study, _recent, performed_item_code="IMG-CT-CHEST-C")

    assert [o.outcome for o in response.instances] == [ingest_pb2.STORED] * len(study["files"])
    assert response.study.performed_item_code == "IMG-CT-CHEST-C"
    assert response.study.not_recognized_reason == MR_AS_CT_REASON
    lines = _check(server, keys[ASKER], patient, "IMG-CT-CHEST-C", "IMG-CT-CHEST", "IMG-MR-BRAIN")
    assert [verdict for verdict, _ in lines] == ["NO_RESULT"] * 3
    held = (
        "the item declared for this study contradicts its images, so it is not recognized "
        "until an administrator resolves it"
    )
    assert lines[0][1].endswith(held)
    assert lines[1][1].endswith(held)
    assert (
        lines[2][1]
        == "No result of 颅脑MR平扫 (MRI brain without contrast) on record for this patient"
    )
    [entry] = _history(server, patient)
    assert entry.not_recognized_reason == MR_AS_CT_REASON
    assert list(entry.recognition) == []

    code, out, err = admin.run("review-declared-item", study["study_instance_uid"], decision)

    assert (code, err) == (0, "")
    assert "recognized" in out
    lines = _check(server, keys[ASKER], patient, *after)
    assert [verdict for verdict, _ in lines] == list(after.values())
    [entry] = _history(server, patient)
    assert entry.not_recognized_reason == ""
    assert [r.item_code for r in entry.recognition] == [
        code for code, verdict in after.items() if verdict == "RECOGNIZABLE"
    ]


def test_reviewing_a_study_the_region_does_not_hold_is_refused(
    server: RunningServer, admin: _Admin
) -> None:
    code, out, err = admin.run("review-declared-item", "1.2.3.4", "--confirm")

    assert (code, out) == (2, "")
    assert "no study 1.2.3.4 is held" in err
