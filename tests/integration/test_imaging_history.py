"""ImagingService and IdentityService over real gRPC, on SQLite and on PostgreSQL.

The region holds the sample studies of dicom_samples/, uploaded by their hospitals the way a
PACS does. What a patient sees is checked against the manifest the samples were written with
and against the catalog file, never against what the service computed.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pydicom
import pytest
from google.protobuf import message_factory
from PIL import Image
from sqlalchemy import update

from mutualrec.client.imaging import download_study, list_all_studies
from mutualrec.client.upload import auth_metadata
from mutualrec.identity import parse_identity, patient_key
from mutualrec.security.access import ADMIN, REGULATOR
from mutualrec.security.patient_tokens import mint_patient_token
from mutualrec.security.study_links import StudyGrant, mint_study_link_token
from mutualrec.storage.models import ShareLink
from mutualrec.v1 import (
    common_pb2,
    imaging_pb2,
    imaging_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    recognition_pb2,
    recognition_pb2_grpc,
    statistics_pb2,
    statistics_pb2_grpc,
)
from tests.conftest import (
    REPO,
    SAMPLES,
    RunningServer,
    make_settings,
    module_database,
    new_key,
    s3_env,
    start_server,
)
from tests.helpers import (
    SERVICE_METHODS,
    bad_request,
    file_messages,
    header_message,
    status_of_call,
    study_files,
    upload,
)

CATALOG_CSV = REPO / "mutualrec" / "matching" / "data" / "recognition_items.csv"
ZHANG = "50010319680315109X"  # CT chest at hospital A, chest films at hospital C
WANG = "500106195511021028"  # CT head and MR brain at hospital B
LI = "500112199007211020"  # abdominal ultrasound at hospital A
NOBODY = "11010519491231002X"  # a valid number the region holds nothing for
ZHAO = "44030419851103123X"  # one unreadable chest film, uploaded by a test
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


@dataclass
class Region:
    """A running service holding the sample studies, and the credentials to call it."""

    server: RunningServer
    manifest: dict[str, Any]
    hospital_keys: dict[str, str]
    admin_key: str
    regulator_key: str

    @property
    def stub(self) -> imaging_pb2_grpc.ImagingServiceStub:
        return imaging_pb2_grpc.ImagingServiceStub(self.server.channel)

    def token(self, document_number: str, ttl_seconds: int = 600) -> str:
        """A patient token minted through IdentityService, as the identity provider would."""
        stub = imaging_pb2_grpc.IdentityServiceStub(self.server.channel)
        response = stub.IssuePatientToken(
            imaging_pb2.IssuePatientTokenRequest(
                patient=common_pb2.PatientIdentity(
                    document_type=common_pb2.RESIDENT_ID_CARD, document_number=document_number
                ),
                ttl_seconds=ttl_seconds,
            ),
            metadata=auth_metadata(self.admin_key),
        )
        return str(response.token)

    def studies_of(self, document_number: str) -> dict[str, dict[str, Any]]:
        """The manifest's studies of one patient, by Study Instance UID."""
        return {
            s["study_instance_uid"]: s
            for s in self.manifest.values()
            if s["patient"]["document_number"] == document_number
        }


def _catalog_validity() -> dict[str, dt.timedelta]:
    """Validity windows straight from the packaged catalog file."""
    windows = {}
    with CATALOG_CSV.open(encoding="utf-8") as handle:
        for row in csv.DictReader(line for line in handle if not line.startswith("#")):
            amount, unit = int(row["validity"][:-1]), row["validity"][-1]
            windows[row["code"]] = (
                dt.timedelta(hours=amount) if unit == "h" else dt.timedelta(days=amount)
            )
    return windows


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def region(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Region]:
    """The sample studies uploaded once per database; tests only add to what is held."""
    tmp = tmp_path_factory.mktemp("imaging")
    databases = module_database(request, tmp, "mutualrec_test")
    url = next(databases)

    manifest = json.loads((SAMPLES / "manifest.json").read_text())["studies"]
    servers = start_server(make_settings(tmp, MUTUALREC_DATABASE_URL=url))
    server = next(servers)
    try:
        keys: dict[str, str] = {}
        for study in manifest.values():
            code = study["institution_code"]
            if code not in keys:
                keys[code] = server.add_hospital(code)
            response = upload(
                server.channel,
                keys[code],
                [header_message(study), *file_messages(study_files(study))],
            )
            assert response.counts.stored == study["instance_count"]
        with server.runtime.sessions.begin() as session:
            admin_key = new_key(session, ADMIN)
            regulator_key = new_key(session, REGULATOR)
        yield Region(server, manifest, keys, admin_key, regulator_key)
    finally:
        servers.close()
        databases.close()


def _code(error: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return error.value.code()  # type: ignore[no-any-return]


# --- listing -------------------------------------------------------------------------------


def test_a_patient_sees_every_study_of_theirs_from_every_hospital_newest_first(
    region: Region,
) -> None:
    token = region.token(ZHANG)
    studies = list(list_all_studies(region.server.channel, token, imaging_pb2.ListStudiesRequest()))
    expected = region.studies_of(ZHANG)
    assert [s.study_instance_uid for s in studies] == sorted(
        expected, key=lambda uid: expected[uid]["study_date"], reverse=True
    )
    assert {s.institution_code for s in studies} == {"H500103001", "H500112003"}
    for listed in studies:
        sample = expected[listed.study_instance_uid]
        assert listed.institution_name == f"Hospital {sample['institution_code']}"
        assert listed.study_date.replace("-", "") == sample["study_date"]
        assert listed.study_time.replace(":", "") == sample["study_time"].split(".")[0]
        assert list(listed.modalities) == [sample["modality"]]
        assert list(listed.body_parts) == [sample["body_part"]]
        assert listed.contrast is sample["contrast"]
        assert listed.series_count == sample["series_count"]
        assert listed.instance_count == sample["instance_count"]
        assert listed.size_bytes == sample["size_bytes"]
        assert listed.accession_number == sample["accession_number"]


def test_each_study_says_which_item_it_is_and_until_when_it_counts(region: Region) -> None:
    windows = _catalog_validity()
    token = region.token(WANG)
    studies = region.stub.ListStudies(
        imaging_pb2.ListStudiesRequest(), metadata=auth_metadata(token)
    ).studies
    assert len(studies) == 2
    for listed in studies:
        sample = region.studies_of(WANG)[listed.study_instance_uid]
        item = sample["performed_item_code"]
        assert [r.item_code for r in listed.recognition] == [item]
        stamp = sample["study_date"] + sample["study_time"]
        taken = dt.datetime.strptime(
            stamp, "%Y%m%d%H%M%S.%f" if "." in stamp else "%Y%m%d%H%M%S"
        ).replace(tzinfo=SHANGHAI)
        until = dt.datetime.fromisoformat(listed.recognition[0].valid_until)
        assert until == taken + windows[item]
        # 2024 studies are long past every imaging window by now.
        assert not listed.recognition[0].within_validity
        assert listed.recognition[0].item_name


def test_a_fresh_study_is_still_within_its_validity_window(region: Region) -> None:
    sample = region.manifest["us_abdomen_hosp_a"]
    today = dt.datetime.now(SHANGHAI)
    files = []
    new_study = pydicom.uid.generate_uid()
    new_series: dict[str, str] = defaultdict(pydicom.uid.generate_uid)
    for path in study_files(sample):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = new_study
        ds.SeriesInstanceUID = new_series[ds.SeriesInstanceUID]
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyDate = today.strftime("%Y%m%d")
        ds.StudyTime = "000000"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append(buffer.getvalue())
    messages = [header_message(sample, accession_number="US-FRESH-1")]
    for number, data in enumerate(files):
        messages += _chunks(data, f"fresh-{number}.dcm")
    upload(region.server.channel, region.hospital_keys[sample["institution_code"]], messages)
    token = region.token(LI)
    studies = region.stub.ListStudies(
        imaging_pb2.ListStudiesRequest(), metadata=auth_metadata(token)
    ).studies
    assert studies[0].study_instance_uid == new_study
    assert [r.within_validity for r in studies[0].recognition] == [True]
    assert [r.within_validity for r in studies[1].recognition] == [False]


def _chunks(data: bytes, name: str) -> list[ingest_pb2.UploadStudyRequest]:
    return [
        ingest_pb2.UploadStudyRequest(
            chunk=ingest_pb2.InstanceChunk(source_name=name, data=data, end_of_instance=True)
        )
    ]


def test_paging_walks_the_history_one_study_at_a_time(region: Region) -> None:
    token = region.token(ZHANG)
    metadata = auth_metadata(token)
    first = region.stub.ListStudies(imaging_pb2.ListStudiesRequest(page_size=1), metadata=metadata)
    assert len(first.studies) == 1
    assert first.next_page_token
    second = region.stub.ListStudies(
        imaging_pb2.ListStudiesRequest(page_size=1, page_token=first.next_page_token),
        metadata=metadata,
    )
    assert len(second.studies) == 1
    assert not second.next_page_token
    assert {first.studies[0].study_instance_uid, second.studies[0].study_instance_uid} == set(
        region.studies_of(ZHANG)
    )
    assert first.studies[0].study_date > second.studies[0].study_date


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["k"][1] = int(claims["k"][1]) + 1
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_a_page_token_is_refused_when_altered_replayed_or_sent_with_other_filters(
    region: Region,
) -> None:
    zhang = auth_metadata(region.token(ZHANG))
    page_token = region.stub.ListStudies(
        imaging_pb2.ListStudiesRequest(page_size=1), metadata=zhang
    ).next_page_token
    cases = [
        (imaging_pb2.ListStudiesRequest(page_size=1, page_token=_tampered(page_token)), zhang),
        (imaging_pb2.ListStudiesRequest(page_size=1, page_token=page_token + "x"), zhang),
        (imaging_pb2.ListStudiesRequest(page_size=1, page_token="not-a-token"), zhang),
        (
            imaging_pb2.ListStudiesRequest(page_size=1, page_token=page_token, modality="CT"),
            zhang,
        ),
        (
            imaging_pb2.ListStudiesRequest(page_size=1, page_token=page_token),
            auth_metadata(region.token(WANG)),
        ),
    ]
    for request, metadata in cases:
        with pytest.raises(grpc.RpcError) as error:
            region.stub.ListStudies(request, metadata=metadata)
        assert _code(error) == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request(error.value) == {"page_token": "INVALID_PAGE_TOKEN"}


def test_filters_by_modality_date_range_and_institution(region: Region) -> None:
    metadata = auth_metadata(region.token(ZHANG))
    chest = region.manifest["ct_chest_contrast_hosp_a"]["study_instance_uid"]
    films = region.manifest["dx_chest_2v_hosp_c"]["study_instance_uid"]

    def uids(**filters: Any) -> list[str]:
        request = imaging_pb2.ListStudiesRequest(**filters)
        return [
            s.study_instance_uid
            for s in region.stub.ListStudies(request, metadata=metadata).studies
        ]

    assert uids(modality="DX") == [films]
    assert uids(modality="ct") == [chest]
    assert uids(modality="MR") == []
    assert uids(from_date="2024-04-01") == [chest]
    assert uids(to_date="2024-03-31") == [films]
    assert uids(from_date="2024-03-18", to_date="2024-03-18") == [films]
    assert uids(institution_code="H500112003") == [films]
    assert uids(institution_code="H500106002") == []


def test_bad_filters_are_refused_field_by_field(region: Region) -> None:
    metadata = auth_metadata(region.token(ZHANG))
    with pytest.raises(grpc.RpcError) as error:
        region.stub.ListStudies(
            imaging_pb2.ListStudiesRequest(
                page_size=101, from_date="2024/04/01", to_date="20240401", modality="C T"
            ),
            metadata=metadata,
        )
    assert _code(error) == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(error.value) == {
        "page_size": "OUT_OF_RANGE",
        "from_date": "MALFORMED_DATE",
        "to_date": "MALFORMED_DATE",
        "modality": "MALFORMED_CODE",
    }
    with pytest.raises(grpc.RpcError) as error:
        region.stub.ListStudies(
            imaging_pb2.ListStudiesRequest(from_date="2024-05-01", to_date="2024-04-01"),
            metadata=metadata,
        )
    assert bad_request(error.value) == {"to_date": "EMPTY_RANGE"}


def test_a_patient_the_region_holds_nothing_for_sees_an_empty_history(region: Region) -> None:
    response = region.stub.ListStudies(
        imaging_pb2.ListStudiesRequest(), metadata=auth_metadata(region.token(NOBODY))
    )
    assert list(response.studies) == []
    assert response.next_page_token == ""


# --- one study -----------------------------------------------------------------------------


def _series_of(sample: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in sample["files"]:
        series[item["series_instance_uid"]].append(item)
    return series


def test_get_study_lists_its_series_with_counts_and_thumbnail_references(region: Region) -> None:
    sample = region.manifest["ct_chest_contrast_hosp_a"]
    uid = sample["study_instance_uid"]
    response = region.stub.GetStudy(
        imaging_pb2.GetStudyRequest(study_instance_uid=uid),
        metadata=auth_metadata(region.token(ZHANG)),
    )
    assert response.study.study_instance_uid == uid
    expected = _series_of(sample)
    assert {s.series_instance_uid for s in response.series} == set(expected)
    for series in response.series:
        files = expected[series.series_instance_uid]
        assert series.instance_count == len(files)
        assert series.size_bytes == sum(f["size_bytes"] for f in files)
        assert series.modality == "CT"
        assert series.thumbnail_uri == (f"mutualrec://thumbnail/{uid}/{series.series_instance_uid}")
    numbers = [s.series_number for s in response.series]
    assert numbers == sorted(numbers)


def test_a_thumbnail_is_a_small_png_of_the_series_rendered_once_then_kept(region: Region) -> None:
    sample = region.manifest["mr_brain_hosp_b"]
    uid = sample["study_instance_uid"]
    series_uid = sample["files"][0]["series_instance_uid"]
    metadata = auth_metadata(region.token(WANG))
    request = imaging_pb2.GetThumbnailRequest(
        study_instance_uid=uid, series_instance_uid=series_uid
    )
    first = region.stub.GetThumbnail(request, metadata=metadata)
    assert first.content_type == "image/png"
    assert not first.placeholder
    image = Image.open(io.BytesIO(first.data))
    assert image.format == "PNG"
    assert max(image.size) <= 256
    assert image.size == (first.width, first.height)
    assert first.sop_instance_uid in {f["sop_instance_uid"] for f in sample["files"]}
    kept = [info.key for info in region.server.runtime.store.list(f"thumbnails/{series_uid}/")]
    assert len(kept) == 1
    assert kept[0].endswith(".png")
    again = region.stub.GetThumbnail(request, metadata=metadata)
    assert again.data == first.data


def test_a_series_without_renderable_pixels_gets_a_placeholder_not_an_error(
    region: Region,
) -> None:
    sample = region.manifest["dx_chest_2v_hosp_c"]
    path = study_files(sample)[0]
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = "C-ZHAO-0001"
    # Rows x Columns promise more pixels than the Pixel Data holds.
    ds.PixelData = ds.PixelData[:100]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    key = region.hospital_keys[sample["institution_code"]]
    response = upload(
        region.server.channel,
        key,
        [
            header_message(sample, accession_number="DX-BROKEN", document_number=ZHAO),
            *_chunks(buffer.getvalue(), "x"),
        ],
    )
    assert response.counts.stored == 1
    thumbnail = region.stub.GetThumbnail(
        imaging_pb2.GetThumbnailRequest(
            study_instance_uid=ds.StudyInstanceUID, series_instance_uid=ds.SeriesInstanceUID
        ),
        metadata=auth_metadata(region.token(ZHAO)),
    )
    assert thumbnail.placeholder
    assert thumbnail.reason
    assert Image.open(io.BytesIO(thumbnail.data)).format == "PNG"


def test_download_returns_the_original_files_byte_for_byte(region: Region, tmp_path: Path) -> None:
    sample = region.manifest["ct_chest_contrast_hosp_a"]
    saved = download_study(
        region.server.channel, region.token(ZHANG), sample["study_instance_uid"], tmp_path
    )
    originals = {f["sop_instance_uid"]: SAMPLES / f["path"] for f in sample["files"]}
    assert {f.sop_instance_uid for f in saved} == set(originals)
    for item in saved:
        assert item.path.read_bytes() == originals[item.sop_instance_uid].read_bytes()
        assert item.path.is_relative_to(tmp_path)
    assert not list(tmp_path.rglob(".part-*"))


def test_download_of_one_series(region: Region, tmp_path: Path) -> None:
    sample = region.manifest["ct_chest_contrast_hosp_a"]
    series_uid, files = next(iter(_series_of(sample).items()))
    saved = download_study(
        region.server.channel,
        region.token(ZHANG),
        sample["study_instance_uid"],
        tmp_path,
        series_uid,
    )
    assert sorted(f.sop_instance_uid for f in saved) == sorted(f["sop_instance_uid"] for f in files)


# --- nobody sees another patient's studies -------------------------------------------------


def _reads(uid: str, series_uid: str) -> list[tuple[str, Any]]:
    return [
        ("GetStudy", imaging_pb2.GetStudyRequest(study_instance_uid=uid)),
        (
            "GetThumbnail",
            imaging_pb2.GetThumbnailRequest(study_instance_uid=uid, series_instance_uid=series_uid),
        ),
        ("DownloadStudy", imaging_pb2.DownloadStudyRequest(study_instance_uid=uid)),
        (
            "CreateShareLink",
            imaging_pb2.CreateShareLinkRequest(
                study_instance_uid=uid,
                expire_time=(dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat(),
            ),
        ),
    ]


def _call(stub: imaging_pb2_grpc.ImagingServiceStub, rpc: str, request: Any, token: str) -> Any:
    """Call ``rpc`` with ``token`` (none when empty); a stream is read to its end."""
    method = getattr(stub, rpc)
    result = method(request, metadata=auth_metadata(token) if token else None)
    return list(result) if rpc == "DownloadStudy" else result


def test_another_patients_study_is_not_found_exactly_like_a_study_that_does_not_exist(
    region: Region,
) -> None:
    sample = region.manifest["ct_head_hosp_b"]
    uid, series_uid = sample["study_instance_uid"], sample["files"][0]["series_instance_uid"]
    token = region.token(ZHANG)
    for rpc, request in _reads(uid, series_uid):
        with pytest.raises(grpc.RpcError) as theirs:
            _call(region.stub, rpc, request, token)
        with pytest.raises(grpc.RpcError) as missing:
            _call(region.stub, rpc, type(request)(**_renamed(request)), token)
        assert _code(theirs) == _code(missing) == grpc.StatusCode.NOT_FOUND, rpc
        assert theirs.value.details() == missing.value.details(), rpc


def _renamed(request: Any) -> dict[str, Any]:
    fields = {f.name: getattr(request, f.name) for f, _ in request.ListFields()}
    fields["study_instance_uid"] = "1.2.3.4.5.6.7.8.9"
    return fields


def test_a_series_of_another_study_is_not_found(region: Region) -> None:
    mine = region.manifest["ct_chest_contrast_hosp_a"]["study_instance_uid"]
    theirs = region.manifest["ct_head_hosp_b"]["files"][0]["series_instance_uid"]
    with pytest.raises(grpc.RpcError) as error:
        region.stub.GetThumbnail(
            imaging_pb2.GetThumbnailRequest(study_instance_uid=mine, series_instance_uid=theirs),
            metadata=auth_metadata(region.token(ZHANG)),
        )
    assert _code(error) == grpc.StatusCode.NOT_FOUND


# --- share links ---------------------------------------------------------------------------


def _share(region: Region, token: str, uid: str, days: float = 1, note: str = "") -> Any:
    return region.stub.CreateShareLink(
        imaging_pb2.CreateShareLinkRequest(
            study_instance_uid=uid,
            expire_time=(dt.datetime.now(SHANGHAI) + dt.timedelta(days=days)).isoformat(),
            note=note,
        ),
        metadata=auth_metadata(token),
    )


def test_a_doctor_opens_a_shared_study_and_the_patient_sees_every_opening(
    region: Region, tmp_path: Path
) -> None:
    sample = region.manifest["ct_chest_contrast_hosp_a"]
    uid = sample["study_instance_uid"]
    patient = region.token(ZHANG)
    created = _share(region, patient, uid, note="Dr Li, orthopaedics")
    assert created.token.startswith("mrs_")
    assert created.uri == f"mutualrec://share/{created.token}"
    assert created.link.state == imaging_pb2.SHARE_LINK_ACTIVE
    doctor = created.token

    study = _call(region.stub, "GetStudy", imaging_pb2.GetStudyRequest(), doctor)
    assert study.study.study_instance_uid == uid
    series_uid = study.series[0].series_instance_uid
    thumbnail = _call(
        region.stub,
        "GetThumbnail",
        imaging_pb2.GetThumbnailRequest(study_instance_uid=uid, series_instance_uid=series_uid),
        doctor,
    )
    assert not thumbnail.placeholder
    saved = download_study(region.server.channel, doctor, "", tmp_path)
    assert len(saved) == sample["instance_count"]

    links = region.stub.ListShareLinks(
        imaging_pb2.ListShareLinksRequest(study_instance_uid=uid), metadata=auth_metadata(patient)
    ).links
    link = next(link for link in links if link.link_id == created.link.link_id)
    assert link.note == "Dr Li, orthopaedics"
    assert link.opening_count == 3
    assert [o.rpc for o in link.openings] == ["DownloadStudy", "GetThumbnail", "GetStudy"]
    assert all(o.peer and o.time for o in link.openings)


def test_a_share_link_opens_that_study_only_and_nothing_else(region: Region) -> None:
    chest = region.manifest["ct_chest_contrast_hosp_a"]
    films = region.manifest["dx_chest_2v_hosp_c"]
    doctor = _share(region, region.token(ZHANG), chest["study_instance_uid"]).token
    # Another study of the same patient is not reachable with it.
    for rpc, request in _reads(
        films["study_instance_uid"], films["files"][0]["series_instance_uid"]
    )[:3]:
        with pytest.raises(grpc.RpcError) as error:
            _call(region.stub, rpc, request, doctor)
        assert _code(error) == grpc.StatusCode.NOT_FOUND, rpc
    for rpc, request in [
        ("ListStudies", imaging_pb2.ListStudiesRequest()),
        ("ListShareLinks", imaging_pb2.ListShareLinksRequest()),
        ("RevokeShareLink", imaging_pb2.RevokeShareLinkRequest(link_id="shl_0")),
        ("ListAccesses", imaging_pb2.ListAccessesRequest()),
        ("CreateShareLink", _reads(chest["study_instance_uid"], "")[3][1]),
    ]:
        with pytest.raises(grpc.RpcError) as error:
            _call(region.stub, rpc, request, doctor)
        assert _code(error) == grpc.StatusCode.PERMISSION_DENIED, rpc


def test_a_revoked_link_stops_at_once_and_revoking_again_keeps_the_first_time(
    region: Region,
) -> None:
    patient = region.token(ZHANG)
    uid = region.manifest["dx_chest_2v_hosp_c"]["study_instance_uid"]
    created = _share(region, patient, uid)
    _call(region.stub, "GetStudy", imaging_pb2.GetStudyRequest(), created.token)
    first = region.stub.RevokeShareLink(
        imaging_pb2.RevokeShareLinkRequest(link_id=created.link.link_id),
        metadata=auth_metadata(patient),
    )
    assert first.state == imaging_pb2.SHARE_LINK_REVOKED
    assert first.revoke_time
    with pytest.raises(grpc.RpcError) as error:
        _call(region.stub, "GetStudy", imaging_pb2.GetStudyRequest(), created.token)
    assert _code(error) == grpc.StatusCode.UNAUTHENTICATED
    again = region.stub.RevokeShareLink(
        imaging_pb2.RevokeShareLinkRequest(link_id=created.link.link_id),
        metadata=auth_metadata(patient),
    )
    assert again.revoke_time == first.revoke_time


def test_an_expired_link_is_refused_and_listed_as_expired(region: Region) -> None:
    patient = region.token(ZHANG)
    uid = region.manifest["dx_chest_2v_hosp_c"]["study_instance_uid"]
    created = _share(region, patient, uid)
    with region.server.runtime.sessions.begin() as session:
        session.execute(
            update(ShareLink)
            .where(ShareLink.id == created.link.link_id)
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    with pytest.raises(grpc.RpcError) as error:
        _call(region.stub, "GetStudy", imaging_pb2.GetStudyRequest(), created.token)
    assert _code(error) == grpc.StatusCode.UNAUTHENTICATED
    links = region.stub.ListShareLinks(
        imaging_pb2.ListShareLinksRequest(), metadata=auth_metadata(patient)
    ).links
    state = {link.link_id: link.state for link in links}[created.link.link_id]
    assert state == imaging_pb2.SHARE_LINK_EXPIRED


def test_another_patient_can_neither_list_nor_revoke_my_links(region: Region) -> None:
    mine = region.token(ZHANG)
    created = _share(region, mine, region.manifest["dx_chest_2v_hosp_c"]["study_instance_uid"])
    other = auth_metadata(region.token(WANG))
    listed = region.stub.ListShareLinks(imaging_pb2.ListShareLinksRequest(), metadata=other).links
    assert created.link.link_id not in {link.link_id for link in listed}
    with pytest.raises(grpc.RpcError) as error:
        region.stub.RevokeShareLink(
            imaging_pb2.RevokeShareLinkRequest(link_id=created.link.link_id), metadata=other
        )
    assert _code(error) == grpc.StatusCode.NOT_FOUND
    study = _call(region.stub, "GetStudy", imaging_pb2.GetStudyRequest(), created.token)
    assert study.study.study_instance_uid


@pytest.mark.parametrize(
    ("expire_time", "reason"),
    [
        ("2020-01-01T00:00:00+08:00", "IN_THE_PAST"),
        ("2099-01-01T00:00:00+08:00", "TOO_FAR_AHEAD"),
        ("next tuesday", "MALFORMED_TIME"),
        ("", "MALFORMED_TIME"),
        ("2030-01-01T00:00:00", "MISSING_OFFSET"),
    ],
)
def test_a_share_expiry_out_of_bounds_is_refused(
    region: Region, expire_time: str, reason: str
) -> None:
    with pytest.raises(grpc.RpcError) as error:
        region.stub.CreateShareLink(
            imaging_pb2.CreateShareLinkRequest(
                study_instance_uid=region.manifest["dx_chest_2v_hosp_c"]["study_instance_uid"],
                expire_time=expire_time,
            ),
            metadata=auth_metadata(region.token(ZHANG)),
        )
    assert _code(error) == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(error.value) == {"expire_time": reason}


def test_a_note_too_long_is_refused(region: Region) -> None:
    with pytest.raises(grpc.RpcError) as error:
        _share(
            region,
            region.token(ZHANG),
            region.manifest["dx_chest_2v_hosp_c"]["study_instance_uid"],
            note="x" * 201,
        )
    assert bad_request(error.value) == {"note": "TOO_LONG"}


# --- credentials ---------------------------------------------------------------------------

_EVERY_RPC = [
    ("ListStudies", imaging_pb2.ListStudiesRequest()),
    ("GetStudy", imaging_pb2.GetStudyRequest(study_instance_uid="1.2.3")),
    (
        "GetThumbnail",
        imaging_pb2.GetThumbnailRequest(study_instance_uid="1.2.3", series_instance_uid="1.2.4"),
    ),
    ("DownloadStudy", imaging_pb2.DownloadStudyRequest(study_instance_uid="1.2.3")),
    ("CreateShareLink", imaging_pb2.CreateShareLinkRequest(study_instance_uid="1.2.3")),
    ("ListShareLinks", imaging_pb2.ListShareLinksRequest()),
    ("RevokeShareLink", imaging_pb2.RevokeShareLinkRequest(link_id="shl_0")),
    ("ListAccesses", imaging_pb2.ListAccessesRequest()),
]


def _forged_tokens(region: Region) -> dict[str, str]:
    secret = region.server.runtime.settings.token_secret
    key = patient_key(
        parse_identity("RESIDENT_ID_CARD", ZHANG), region.server.runtime.settings.patient_key_secret
    )
    now = dt.datetime.now(dt.UTC)
    valid = mint_patient_token(secret, key, dt.timedelta(minutes=5)).token
    header, payload, signature = valid.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = patient_key(
        parse_identity("RESIDENT_ID_CARD", WANG), region.server.runtime.settings.patient_key_secret
    )
    swapped = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    unsigned_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    return {
        "expired": mint_patient_token(
            secret, key, dt.timedelta(minutes=5), now=now - dt.timedelta(hours=1)
        ).token,
        "other secret": mint_patient_token(b"k" * 32, key, dt.timedelta(minutes=5)).token,
        "subject swapped": f"{header}.{swapped}.{signature}",
        "alg none": f"{unsigned_header}.{payload}.",
        "wrong audience": jwt.encode(
            {**claims, "sub": key, "aud": "mutualrec:page"}, secret, algorithm="HS256"
        ),
        "no expiry": jwt.encode(
            {k: v for k, v in claims.items() if k != "exp"} | {"sub": key},
            secret,
            algorithm="HS256",
        ),
        "malformed": "a.b.c",
        "unknown share link": "mrs_" + "A" * 43,
        "unknown api key": "mrk_0123456789abcdef_" + "A" * 43,
        "garbage": "hello",
    }


def test_forged_expired_and_malformed_credentials_are_unauthenticated_on_every_rpc(
    region: Region,
) -> None:
    for label, token in [*_forged_tokens(region).items(), ("none", "")]:
        for rpc, request in _EVERY_RPC:
            with pytest.raises(grpc.RpcError) as error:
                _call(region.stub, rpc, request, token)
            assert _code(error) == grpc.StatusCode.UNAUTHENTICATED, (label, rpc)


def test_hospital_regulator_and_admin_keys_may_not_read_a_patients_history(
    region: Region,
) -> None:
    keys = {
        "hospital": region.hospital_keys["H500103001"],
        "regulator": region.regulator_key,
        "admin": region.admin_key,
    }
    opened_after_a_check = {"GetStudy", "GetThumbnail", "DownloadStudy"}
    for label, key in keys.items():
        for rpc, request in _EVERY_RPC:
            with pytest.raises(grpc.RpcError) as error:
                _call(region.stub, rpc, request, key)
            # Without a recent check that recognized the study a hospital finds none: the
            # same as a study that does not exist (tests/integration/test_study_access.py).
            expected = (
                grpc.StatusCode.NOT_FOUND
                if label == "hospital" and rpc in opened_after_a_check
                else grpc.StatusCode.PERMISSION_DENIED
            )
            assert _code(error) == expected, (label, rpc)


def test_a_patient_token_opens_nothing_but_the_patients_own_history(region: Region) -> None:
    metadata = auth_metadata(region.token(ZHANG))
    sample = region.manifest["ct_chest_contrast_hosp_a"]
    calls = [
        lambda: ingest_pb2_grpc.IngestServiceStub(region.server.channel).UploadStudy(
            iter([header_message(sample), *file_messages(study_files(sample)[:1])]),
            metadata=metadata,
        ),
        lambda: recognition_pb2_grpc.RecognitionServiceStub(region.server.channel).CheckOrder(
            recognition_pb2.CheckOrderRequest(
                patient=common_pb2.PatientIdentity(
                    document_type=common_pb2.RESIDENT_ID_CARD, document_number=ZHANG
                ),
                ordered_codes=["IMG-CT-HEAD"],
            ),
            metadata=metadata,
        ),
        lambda: statistics_pb2_grpc.StatisticsServiceStub(region.server.channel).GetSavingsReport(
            statistics_pb2.ReportRequest(from_date="2024-01-01", to_date="2024-01-31"),
            metadata=metadata,
        ),
        lambda: imaging_pb2_grpc.IdentityServiceStub(region.server.channel).IssuePatientToken(
            imaging_pb2.IssuePatientTokenRequest(
                patient=common_pb2.PatientIdentity(
                    document_type=common_pb2.RESIDENT_ID_CARD, document_number=WANG
                )
            ),
            metadata=metadata,
        ),
    ]
    for number, call in enumerate(calls):
        with pytest.raises(grpc.RpcError) as error:
            call()
        assert _code(error) == grpc.StatusCode.PERMISSION_DENIED, number


def test_only_admin_keys_mint_patient_tokens_and_requests_are_checked(region: Region) -> None:
    stub = imaging_pb2_grpc.IdentityServiceStub(region.server.channel)
    good = common_pb2.PatientIdentity(
        document_type=common_pb2.RESIDENT_ID_CARD, document_number=ZHANG
    )
    with pytest.raises(grpc.RpcError) as error:
        stub.IssuePatientToken(
            imaging_pb2.IssuePatientTokenRequest(patient=good),
            metadata=auth_metadata(region.hospital_keys["H500103001"]),
        )
    assert _code(error) == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as error:
        stub.IssuePatientToken(
            imaging_pb2.IssuePatientTokenRequest(
                patient=common_pb2.PatientIdentity(
                    document_type=common_pb2.RESIDENT_ID_CARD,
                    document_number="500103196803151091",  # wrong check digit
                ),
                ttl_seconds=10,
            ),
            metadata=auth_metadata(region.admin_key),
        )
    assert _code(error) == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request(error.value)) == {"patient.document_number", "ttl_seconds"}
    before = dt.datetime.now(dt.UTC)
    response = stub.IssuePatientToken(
        imaging_pb2.IssuePatientTokenRequest(patient=good, ttl_seconds=120),
        metadata=auth_metadata(region.admin_key),
    )
    expires = dt.datetime.fromisoformat(response.expire_time)
    assert before + dt.timedelta(seconds=118) <= expires <= before + dt.timedelta(seconds=125)
    studies = region.stub.ListStudies(
        imaging_pb2.ListStudiesRequest(), metadata=auth_metadata(response.token)
    ).studies
    assert {s.study_instance_uid for s in studies} == set(region.studies_of(ZHANG))


def test_a_downloaded_file_damaged_in_the_store_is_reported_as_data_loss(
    region: Region, tmp_path: Path
) -> None:
    sample = region.manifest["us_abdomen_hosp_a"]
    uid = sample["study_instance_uid"]
    first = sample["files"][0]
    store = region.server.runtime.store
    key = f"dicom/{uid}/{first['series_instance_uid']}/{first['sop_instance_uid']}"
    stored = [info.key for info in store.list(key)]
    assert len(stored) == 1, stored
    original = b"".join(store.open(stored[0]))
    damaged = bytearray(original)
    damaged[-1] ^= 0xFF
    store.put(stored[0], io.BytesIO(bytes(damaged)), len(damaged))
    try:
        with pytest.raises(grpc.RpcError) as error:
            download_study(region.server.channel, region.token(LI), uid, tmp_path)
        assert _code(error) == grpc.StatusCode.DATA_LOSS
        # The damaged instance is not left on disk, not even in part.
        assert not list(tmp_path.rglob(f"{first['sop_instance_uid']}.dcm"))
        assert not list(tmp_path.rglob(".part-*"))
    finally:
        store.put(stored[0], io.BytesIO(original), len(original))
    assert hashlib.sha256(b"".join(store.open(stored[0]))).hexdigest() == first["sha256"]


@pytest.mark.s3
def test_thumbnails_and_downloads_work_on_the_s3_object_store(
    s3_server: Any, postgres_url: str, tmp_path: Path, manifest: dict[str, Any]
) -> None:
    bucket = f"h-{uuid.uuid4().hex[:12]}"
    settings = make_settings(
        tmp_path, MUTUALREC_DATABASE_URL=postgres_url, **s3_env(s3_server, bucket)
    )
    servers = start_server(settings)
    server = next(servers)
    try:
        sample = manifest["mr_brain_hosp_b"]
        key = server.add_hospital(sample["institution_code"])
        upload(server.channel, key, [header_message(sample), *file_messages(study_files(sample))])
        with server.runtime.sessions.begin() as session:
            admin_key = new_key(session, ADMIN)
        region = Region(server, manifest, {}, admin_key, "")
        token = region.token(WANG)
        uid = sample["study_instance_uid"]
        series_uid = sample["files"][0]["series_instance_uid"]
        thumbnail = region.stub.GetThumbnail(
            imaging_pb2.GetThumbnailRequest(study_instance_uid=uid, series_instance_uid=series_uid),
            metadata=auth_metadata(token),
        )
        assert not thumbnail.placeholder
        assert [i.key for i in server.runtime.store.list("thumbnails/")] == [
            f"thumbnails/{series_uid}/{_shown_sha256(sample, thumbnail.sop_instance_uid)}.png"
        ]
        saved = download_study(server.channel, token, uid, tmp_path / "dl")
        originals = {f["sop_instance_uid"]: SAMPLES / f["path"] for f in sample["files"]}
        assert {f.sop_instance_uid: f.path.read_bytes() for f in saved} == {
            sop: path.read_bytes() for sop, path in originals.items()
        }
    finally:
        servers.close()


def _shown_sha256(sample: dict[str, Any], sop_instance_uid: str) -> str:
    return next(f["sha256"] for f in sample["files"] if f["sop_instance_uid"] == sop_instance_uid)


# Who may call what, written out here on its own: a change to the service's matrix must be made
# in both places on purpose.
_ANY = {"hospital", "regulator", "admin", "patient", "share", "doctor"}
_MATRIX = {
    "mutualrec.v1.CatalogService/ListItems": _ANY,
    "mutualrec.v1.CatalogService/GetItem": _ANY,
    "mutualrec.v1.IngestService/UploadStudy": {"hospital"},
    "mutualrec.v1.IngestService/GetStudyStatus": {"hospital"},
    "mutualrec.v1.IngestService/SubmitObservations": {"hospital"},
    "mutualrec.v1.IngestService/LinkPatient": {"hospital"},
    "mutualrec.v1.IngestService/ListUnlinkedStudies": {"hospital"},
    "mutualrec.v1.RecognitionService/CheckOrder": {"hospital"},
    "mutualrec.v1.RecognitionService/RecordDecision": {"hospital"},
    "mutualrec.v1.StatisticsService/GetSavingsReport": {"regulator"},
    "mutualrec.v1.StatisticsService/ExportReport": {"regulator"},
    "mutualrec.v1.ImagingService/ListStudies": {"patient"},
    "mutualrec.v1.ImagingService/GetStudy": {"patient", "share", "hospital", "doctor"},
    "mutualrec.v1.ImagingService/GetThumbnail": {"patient", "share", "hospital", "doctor"},
    "mutualrec.v1.ImagingService/DownloadStudy": {"patient", "share", "hospital", "doctor"},
    "mutualrec.v1.ImagingService/CreateShareLink": {"patient"},
    "mutualrec.v1.ImagingService/ListShareLinks": {"patient"},
    "mutualrec.v1.ImagingService/RevokeShareLink": {"patient"},
    "mutualrec.v1.ImagingService/ListAccesses": {"patient"},
    "mutualrec.v1.IdentityService/IssuePatientToken": {"admin"},
}


def _status_of_an_empty_call(
    channel: grpc.Channel, method: Any, credential: str
) -> grpc.StatusCode:
    """The status of ``method`` called with an empty request (or stream) and ``credential``."""
    empty = message_factory.GetMessageClass(method.input_type)()
    return status_of_call(
        channel, method, iter([]) if method.client_streaming else empty, credential
    )


def test_every_rpc_admits_exactly_the_roles_of_the_matrix(region: Region) -> None:
    patient = region.token(ZHANG)
    shared = next(iter(region.studies_of(ZHANG)))
    credentials = {
        "hospital": region.hospital_keys["H500103001"],
        "regulator": region.regulator_key,
        "admin": region.admin_key,
        "patient": patient,
        "share": _share(region, patient, shared).token,
        # A study link (a check's open_url): admitted by its signature alone.
        "doctor": mint_study_link_token(
            region.server.runtime.settings.token_secret,
            StudyGrant("check-1", shared, 1, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)),
        ),
    }
    methods = SERVICE_METHODS
    assert {f"{m.containing_service.full_name}/{m.name}" for m in methods} == set(_MATRIX)
    refusals = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
    for method in methods:
        allowed = _MATRIX[f"{method.containing_service.full_name}/{method.name}"]
        for role, credential in credentials.items():
            status = _status_of_an_empty_call(region.server.channel, method, credential)
            if role in allowed:
                assert status not in refusals, (method.full_name, role, status)
            else:
                assert status == grpc.StatusCode.PERMISSION_DENIED, (method.full_name, role)
        for credential in ("", "mrk_0123456789abcdef_" + "A" * 43):
            status = _status_of_an_empty_call(region.server.channel, method, credential)
            assert status == grpc.StatusCode.UNAUTHENTICATED, (method.full_name, credential)
