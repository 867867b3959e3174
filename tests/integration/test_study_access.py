"""A hospital opens another hospital's study only through a check of its own that recognized it.

Over real gRPC, on SQLite and PostgreSQL. The patient's studies are sample studies re-dated to
today, so the imaging checks recognize them whatever the date.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import grpc
import pydicom
import pytest
from sqlalchemy import update

from mutualrec.cli import main
from mutualrec.client.imaging import download_study
from mutualrec.client.upload import auth_metadata
from mutualrec.localtime import LOCAL_ZONE
from mutualrec.recognition.cds_hooks import CATALOG_SYSTEM
from mutualrec.security.access import ADMIN
from mutualrec.storage import catalog_store
from mutualrec.storage.models import RecognitionCheck
from mutualrec.v1 import (
    common_pb2,
    imaging_pb2,
    imaging_pb2_grpc,
    recognition_pb2,
    recognition_pb2_grpc,
)
from tests.cds_client import Ehr, hook_request, service_request
from tests.conftest import RunningServer, new_key
from tests.helpers import chunk_messages, header_message, study_files, upload

ZHANG = "50010319680315109X"
CT_ISSUER = "H500103001"  # holds Zhang's chest CT
DX_ISSUER = "H500112003"  # holds Zhang's chest films
CHECKER = "H500106002"  # holds nothing of Zhang's; checks orders for him


def _upload_today(server: RunningServer, key: str, sample: dict[str, Any]) -> str:
    """A copy of a sample study dated today under new UIDs; its Study Instance UID."""
    today = dt.datetime.now(LOCAL_ZONE)
    study_uid = pydicom.uid.generate_uid()
    series: dict[str, str] = defaultdict(pydicom.uid.generate_uid)
    messages = [header_message(sample, accession_number=f"ACC-{study_uid[-8:]}")]
    for number, path in enumerate(study_files(sample)):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series[ds.SeriesInstanceUID]
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyDate = today.strftime("%Y%m%d")
        ds.StudyTime = "000000"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        messages += chunk_messages(buffer.getvalue(), f"today-{number}.dcm")
    response = upload(server.channel, key, messages)
    assert response.counts.stored == sample["instance_count"]
    return study_uid


def _qualify(server: RunningServer, *codes: str) -> None:
    with server.runtime.sessions.begin() as session:
        catalog = catalog_store.current_catalog(session)
        for code in codes:
            catalog_store.add_qualification(
                session,
                code,
                item_code=None,
                category="imaging",
                scope="city",
                valid_from=dt.datetime.now(dt.UTC) - dt.timedelta(days=400),
                valid_until=None,
                catalog=catalog,
            )
    server.runtime.reference.invalidate()


def _check(server: RunningServer, key: str, code: str) -> recognition_pb2.CheckOrderResponse:
    stub = recognition_pb2_grpc.RecognitionServiceStub(server.channel)
    reply: recognition_pb2.CheckOrderResponse = stub.CheckOrder(
        recognition_pb2.CheckOrderRequest(
            patient=common_pb2.PatientIdentity(
                document_type=common_pb2.RESIDENT_ID_CARD, document_number=ZHANG
            ),
            ordered_codes=[code],
        ),
        metadata=auth_metadata(key),
    )
    return reply


def _get_study(server: RunningServer, key: str, uid: str) -> imaging_pb2.GetStudyResponse:
    stub = imaging_pb2_grpc.ImagingServiceStub(server.channel)
    reply: imaging_pb2.GetStudyResponse = stub.GetStudy(
        imaging_pb2.GetStudyRequest(study_instance_uid=uid), metadata=auth_metadata(key)
    )
    return reply


def _refused(server: RunningServer, key: str, uid: str, tmp_path: Path) -> set[grpc.StatusCode]:
    """The statuses of GetStudy, GetThumbnail and DownloadStudy of ``uid`` (all must fail)."""
    stub = imaging_pb2_grpc.ImagingServiceStub(server.channel)
    codes = set()
    calls = [
        lambda: _get_study(server, key, uid),
        lambda: stub.GetThumbnail(
            imaging_pb2.GetThumbnailRequest(study_instance_uid=uid, series_instance_uid="1.2.3"),
            metadata=auth_metadata(key),
        ),
        lambda: download_study(server.channel, key, uid, tmp_path / "refused"),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as error:
            call()
        codes.add(error.value.code())
    return codes


@pytest.fixture
def held(server: RunningServer, manifest: dict[str, Any]) -> dict[str, Any]:
    """Zhang's chest CT at one hospital and chest films at another, both from today."""
    keys = {code: server.add_hospital(code) for code in (CT_ISSUER, DX_ISSUER, CHECKER)}
    _qualify(server, CT_ISSUER, DX_ISSUER)
    return {
        "keys": keys,
        "ct": _upload_today(server, keys[CT_ISSUER], manifest["ct_chest_contrast_hosp_a"]),
        "dx": _upload_today(server, keys[DX_ISSUER], manifest["dx_chest_2v_hosp_c"]),
        "ct_count": manifest["ct_chest_contrast_hosp_a"]["instance_count"],
    }


def test_a_check_that_recognized_nothing_opens_no_study(
    server: RunningServer, held: dict[str, Any], tmp_path: Path
) -> None:
    checker = held["keys"][CHECKER]
    reply = _check(server, checker, "NO-SUCH-ITEM")
    assert [line.verdict for line in reply.lines] == [recognition_pb2.UNKNOWN_CODE]
    for uid in (held["ct"], held["dx"]):
        assert _refused(server, checker, uid, tmp_path) == {grpc.StatusCode.NOT_FOUND}


def test_a_check_opens_the_study_it_recognized_and_no_other_study_of_the_patient(
    server: RunningServer, held: dict[str, Any], tmp_path: Path
) -> None:
    checker = held["keys"][CHECKER]
    reply = _check(server, checker, "IMG-CT-CHEST-C")
    assert [line.verdict for line in reply.lines] == [recognition_pb2.RECOGNIZABLE]
    assert reply.lines[0].result.imaging.study_instance_uid == held["ct"]

    study = _get_study(server, checker, held["ct"])
    assert study.study.study_instance_uid == held["ct"]
    stub = imaging_pb2_grpc.ImagingServiceStub(server.channel)
    thumbnail = stub.GetThumbnail(
        imaging_pb2.GetThumbnailRequest(
            study_instance_uid=held["ct"], series_instance_uid=study.series[0].series_instance_uid
        ),
        metadata=auth_metadata(checker),
    )
    assert thumbnail.data.startswith(b"\x89PNG")
    saved = download_study(server.channel, checker, held["ct"], tmp_path / "files")
    assert len(saved) == held["ct_count"]

    # The chest films of the same patient were not recognized by this check.
    assert _refused(server, checker, held["dx"], tmp_path) == {grpc.StatusCode.NOT_FOUND}
    # Nor does the check open the CT to a hospital that did not make it.
    assert _refused(server, held["keys"][DX_ISSUER], held["ct"], tmp_path) == {
        grpc.StatusCode.NOT_FOUND
    }

    # The patient sees which hospital opened the study.
    with server.runtime.sessions.begin() as session:
        admin_key = new_key(session, ADMIN)
    token = (
        imaging_pb2_grpc.IdentityServiceStub(server.channel)
        .IssuePatientToken(
            imaging_pb2.IssuePatientTokenRequest(
                patient=common_pb2.PatientIdentity(
                    document_type=common_pb2.RESIDENT_ID_CARD, document_number=ZHANG
                ),
                ttl_seconds=600,
            ),
            metadata=auth_metadata(admin_key),
        )
        .token
    )
    accesses = stub.ListAccesses(imaging_pb2.ListAccessesRequest(), metadata=auth_metadata(token))
    opened = {
        a.institution_code
        for a in accesses.accesses
        if a.rpc == "ImagingService/GetStudy" and a.role == "hospital" and a.outcome == "OK"
    }
    assert opened == {CHECKER}

    # Once the check is too old to decide on, it opens the study no more.
    with server.runtime.sessions.begin() as session:
        session.execute(
            update(RecognitionCheck)
            .where(RecognitionCheck.id == reply.check_id)
            .values(received_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=25))
        )
    assert _refused(server, checker, held["ct"], tmp_path) == {grpc.StatusCode.NOT_FOUND}


def _link_token(open_url: str) -> str:
    """The token an https open_url carries after its '#'."""
    base, _, token = open_url.partition("#")
    assert base.endswith("/open")
    assert base.startswith("http")
    assert token.startswith("mro_")
    return token


def test_the_open_url_opens_the_recognized_study_for_the_check_alone(
    server: RunningServer, held: dict[str, Any], tmp_path: Path
) -> None:
    checker = held["keys"][CHECKER]
    reply = _check(server, checker, "IMG-CT-CHEST-C")
    open_url = reply.lines[0].result.imaging.open_url
    token = _link_token(open_url)

    # The link is its own credential: the study it names, with no UID asked or the same one.
    assert _get_study(server, token, "").study.study_instance_uid == held["ct"]
    assert _get_study(server, token, held["ct"]).study.study_instance_uid == held["ct"]
    saved = download_study(server.channel, token, "", tmp_path / "files")
    assert len(saved) == held["ct_count"]
    # No other study of the patient, and nothing but reading.
    assert _refused(server, token, held["dx"], tmp_path) == {grpc.StatusCode.NOT_FOUND}
    with pytest.raises(grpc.RpcError) as denied:
        _check(server, token, "IMG-CT-CHEST-C")
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # A forged or altered token is refused before any read.
    header, payload, signature = token.removeprefix("mro_").split(".")
    for forged in (f"mro_{header}.{payload}.{signature[::-1]}", "mro_x.y.z"):
        with pytest.raises(grpc.RpcError) as refused:
            _get_study(server, forged, "")
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # Bound to its check: once that check is too old, the link opens nothing, even though a
    # newer check of the same hospital recognized the study again (that check has its own link).
    with server.runtime.sessions.begin() as session:
        session.execute(
            update(RecognitionCheck)
            .where(RecognitionCheck.id == reply.check_id)
            .values(received_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=25))
        )
    newer = _check(server, checker, "IMG-CT-CHEST-C")
    assert _refused(server, token, held["ct"], tmp_path) == {grpc.StatusCode.NOT_FOUND}
    fresh = _link_token(newer.lines[0].result.imaging.open_url)
    assert _get_study(server, fresh, "").study.study_instance_uid == held["ct"]


def test_a_cds_card_links_the_study_for_the_ehrs_institution(
    server: RunningServer, held: dict[str, Any]
) -> None:
    ehr = Ehr(server, "https://ehr.example.org")
    ehr.register(CHECKER)
    order = service_request("sr-ct", (CATALOG_SYSTEM, "IMG-CT-CHEST-C"))
    reply = ehr.post("/cds-services/order-select", hook_request("order-select", [order], ZHANG))
    assert reply.status_code == 200, reply.text
    (card,) = reply.json()["cards"]
    (link,) = card["links"]
    assert link["type"] == "absolute"
    assert link["url"].startswith(f"{server.http_url}/open#")
    token = _link_token(link["url"])
    assert _get_study(server, token, "").study.study_instance_uid == held["ct"]


def test_mutualrec_download_takes_the_open_url_as_it_is(
    server: RunningServer,
    held: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reply = _check(server, held["keys"][CHECKER], "IMG-CT-CHEST-C")
    open_url = reply.lines[0].result.imaging.open_url
    # No key nor token anywhere: the link is the credential.
    for name in ("MUTUALREC_API_KEY", "MUTUALREC_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    code = main(["download", open_url, "--server", server.address, "--out", str(tmp_path / "f")])
    assert code == 0
    assert f"{held['ct_count']} files" in capsys.readouterr().out
    assert len(list((tmp_path / "f").rglob("*.dcm"))) == held["ct_count"]
