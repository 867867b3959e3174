"""DICOMweb (QIDO-RS, WADO-RS) through the real HTTP door, on SQLite and PostgreSQL.

What comes back is checked against the sample manifest and the sample files themselves (bytes,
hashes, pixel data read by pydicom), never against what the service computed. Who may read
what is ImagingService's rule: each role is tried on studies it may and may not read.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import generate_frames

from mutualrec.client.upload import auth_metadata
from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc, recognition_pb2
from tests.dicomweb_region import (
    CHECKER,
    JPEG_LOSSLESS,
    LI,
    WANG,
    ZHANG,
    Region,
    check,
    qualify,
    region_on,
    upload_today,
)
from tests.helpers import study_files

CT = "ct_chest_contrast_hosp_a"
DX = "dx_chest_2v_hosp_c"
STUDY_UID = "0020000D"
SERIES_UID = "0020000E"
SOP_UID = "00080018"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def region(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Region]:
    # No file cache: a file damaged in the store must be read from the store to be caught
    # (the cache's own tests are in test_dicomweb_client.py).
    yield from region_on(
        request, tmp_path_factory.mktemp("dicomweb"), MUTUALREC_DICOMWEB_CACHE_MIB="0"
    )


def found(reply: httpx.Response) -> list[dict[str, Any]]:
    """A search's entries: its JSON array, or none on 204 (PS3.18 8.3.4.4.1)."""
    if reply.status_code == 204:
        assert reply.content == b""
        return []
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/dicom+json"
    entries: list[dict[str, Any]] = reply.json()
    assert entries
    return entries


def value(entry: dict[str, Any], tag: str) -> Any:
    """The first value of an attribute of a DICOM JSON object (None if absent or empty)."""
    values = entry.get(tag, {}).get("Value")
    return values[0] if values else None


def parts(reply: httpx.Response) -> list[tuple[str, bytes]]:
    """The parts of a multipart/related answer: (Content-Type, body), parsed by the standard
    library's MIME parser."""
    head = f"Content-Type: {reply.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + reply.content)
    assert message.is_multipart()
    found = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        syntax = part.get_param("transfer-syntax")
        shown = part.get_content_type() + (f"; transfer-syntax={syntax}" if syntax else "")
        found.append((shown, payload))
    return found


def _manifest_file(region: Region, sop_uid: str) -> dict[str, Any]:
    for study in region.manifest.values():
        for file in study["files"]:
            if file["sop_instance_uid"] == sop_uid:
                return dict(file)
    raise KeyError(sop_uid)


# --- QIDO-RS ---------------------------------------------------------------------------------


def test_a_patient_finds_their_own_studies_and_no_one_elses(region: Region) -> None:
    reply = region.get("/studies", region.token(ZHANG))
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/dicom+json"
    by_uid = {value(e, STUDY_UID): e for e in reply.json()}
    assert set(by_uid) == {*region.studies_of(ZHANG), region.jpeg_study}
    for uid, sample in region.studies_of(ZHANG).items():
        entry = by_uid[uid]
        assert value(entry, "00080020") == sample["study_date"]
        assert value(entry, "00080050") == sample["accession_number"]
        assert value(entry, "00100020") == sample["patient"]["hospital_patient_id"]
        assert value(entry, "00100010") == {"Alphabetic": sample["patient"]["name"]}
        assert value(entry, "00100030") == sample["patient"]["birth_date"]
        assert entry["00080061"]["Value"] == [sample["modality"]]
        assert value(entry, "00201206") == sample["series_count"]
        assert value(entry, "00201208") == sample["instance_count"]
        assert value(entry, "00081190") == f"{region.url}/studies/{uid}"
        # Bulk data never shows in a search.
        assert "7FE00010" not in entry


def test_study_filters_narrow_as_ps3_4_says(region: Region) -> None:
    token = region.token(ZHANG)
    ct, dx = region.manifest[CT], region.manifest[DX]

    def uids(**params: str) -> set[str]:
        return {value(e, STUDY_UID) for e in found(region.get("/studies", token, params=params))}

    assert uids(AccessionNumber=ct["accession_number"]) == {ct["study_instance_uid"]}
    assert uids(ModalitiesInStudy="DX") == {dx["study_instance_uid"]}
    # The films (March) are older than the CT (April).
    assert uids(StudyDate=f"-{dx['study_date']}") == {dx["study_instance_uid"]}
    assert uids(StudyDate=f"{ct['study_date']}-") == {ct["study_instance_uid"], region.jpeg_study}
    assert uids(StudyDate=f"{dx['study_date']}-{ct['study_date']}") == {
        ct["study_instance_uid"],
        dx["study_instance_uid"],
        region.jpeg_study,
    }
    assert uids(StudyDate=dx["study_date"]) == {dx["study_instance_uid"]}
    listed = f"{ct['study_instance_uid']},{dx['study_instance_uid']}"
    assert uids(StudyInstanceUID=listed) == {ct["study_instance_uid"], dx["study_instance_uid"]}
    assert uids(PatientName="zhang*") == uids()
    assert uids(PatientName="WANG*") == set()
    assert uids(PatientID=ct["patient"]["hospital_patient_id"]) == {
        ct["study_instance_uid"],
        region.jpeg_study,
    }
    assert uids(fuzzymatching="true", ModalitiesInStudy="CT") == {
        ct["study_instance_uid"],
        region.jpeg_study,
    }


def test_no_match_is_204_without_content(region: Region) -> None:
    reply = region.get("/studies", region.token(ZHANG), params={"AccessionNumber": "NONE"})
    assert reply.status_code == 204
    assert reply.content == b""


def test_limit_and_offset_page_through_the_answer(region: Region) -> None:
    token = region.token(ZHANG)
    whole = [value(e, STUDY_UID) for e in region.get("/studies", token).json()]
    assert len(whole) == 3
    pages = [
        [value(e, STUDY_UID) for e in found(region.get("/studies", token, params=p))]
        for p in ({"limit": "2"}, {"limit": "2", "offset": "2"}, {"offset": "3"})
    ]
    assert pages == [whole[:2], whole[2:], []]


def test_includefield_adds_attributes_and_all_adds_every_one(region: Region) -> None:
    token = region.token(WANG)
    plain = region.get("/studies", token).json()[0]
    assert "00080080" not in plain  # InstitutionName is no default
    named = region.get("/studies", token, params={"includefield": "InstitutionName"}).json()[0]
    assert value(named, "00080080")
    every = region.get("/studies", token, params={"includefield": "all"}).json()[0]
    assert set(plain) <= set(every)
    assert "00080080" in every


def test_series_and_instances_are_found_under_every_path(region: Region) -> None:
    token = region.token(ZHANG)
    sample = region.manifest[CT]
    study = sample["study_instance_uid"]
    series_uids = {f["series_instance_uid"] for f in sample["files"]}
    under_study = region.get(f"/studies/{study}/series", token).json()
    assert {value(e, SERIES_UID) for e in under_study} == series_uids
    for entry in under_study:
        assert value(entry, "00080060") == "CT"
        count = sum(f["series_instance_uid"] == value(entry, SERIES_UID) for f in sample["files"])
        assert value(entry, "00201209") == count
    everywhere = region.get("/series", token, params={"Modality": "CT"}).json()
    assert series_uids <= {value(e, SERIES_UID) for e in everywhere}
    assert all(value(e, STUDY_UID) for e in everywhere)

    sop_uids = {f["sop_instance_uid"] for f in sample["files"]}
    in_study = region.get(f"/studies/{study}/instances", token).json()
    assert {value(e, SOP_UID) for e in in_study} == sop_uids
    one_series = next(iter(series_uids))
    in_series = region.get(f"/studies/{study}/series/{one_series}/instances", token).json()
    assert {value(e, SOP_UID) for e in in_series} == {
        f["sop_instance_uid"] for f in sample["files"] if f["series_instance_uid"] == one_series
    }
    for entry in in_series:
        ds = pydicom.dcmread(
            region_sample_path(region, value(entry, SOP_UID)), stop_before_pixels=True
        )
        assert value(entry, "00280010") == ds.Rows
        assert value(entry, "00200013") == ds.InstanceNumber
    anywhere = region.get("/instances", token, params={"SOPInstanceUID": next(iter(sop_uids))})
    assert [value(e, SOP_UID) for e in anywhere.json()] == [next(iter(sop_uids))]


def region_sample_path(region: Region, sop_uid: str) -> Path:
    from tests.conftest import SAMPLES

    return SAMPLES / _manifest_file(region, sop_uid)["path"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/studies", {"limit": "ten"}, "limit"),
        ("/studies", {"offset": "-1"}, "offset"),
        ("/studies", {"limit": "0"}, "limit"),
        ("/studies", {"Colour": "blue"}, "Colour"),
        ("/studies", {"Modality": "CT"}, "Modality"),  # a series attribute, at study level
        ("/studies", {"StudyDate": "2024-04-02"}, "StudyDate"),
        ("/studies", {"StudyInstanceUID": "1.2.abc"}, "StudyInstanceUID"),
        ("/studies", {"includefield": "NoSuchThing"}, "includefield"),
        ("/studies", {"fuzzymatching": "maybe"}, "fuzzymatching"),
        ("/studies/1.2.x/series", {}, "study"),
        ("/studies/1.02/series", {}, "study"),
        ("/studies/1.2/series/x/instances", {}, "series"),
    ],
)
def test_bad_searches_are_refused_naming_the_parameter(
    region: Region, path: str, params: dict[str, str], field: str
) -> None:
    reply = region.get(path, region.token(ZHANG), params=params)
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/problem+json"
    assert field in [v["field"] for v in reply.json()["violations"]]


def test_a_search_asking_for_anything_but_json_is_not_acceptable(region: Region) -> None:
    reply = region.get("/studies", region.token(ZHANG), headers={"Accept": "application/xml"})
    assert reply.status_code == 406
    assert reply.headers["content-type"] == "application/problem+json"


# --- WADO-RS ---------------------------------------------------------------------------------


def test_a_study_comes_back_as_the_files_stored(region: Region) -> None:
    sample = region.manifest[CT]
    reply = region.get(
        f"/studies/{sample['study_instance_uid']}",
        region.token(ZHANG),
        headers={"Accept": 'multipart/related; type="application/dicom"'},
    )
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith('multipart/related; type="application/dicom"')
    received = parts(reply)
    assert {t for t, _ in received} == {"application/dicom"}
    assert sorted(hashlib.sha256(body).hexdigest() for _, body in received) == sorted(
        f["sha256"] for f in sample["files"]
    )


def test_a_series_and_an_instance_come_back_alone(region: Region) -> None:
    sample = region.manifest[CT]
    study = sample["study_instance_uid"]
    first = sample["files"][0]
    series = first["series_instance_uid"]
    token = region.token(ZHANG)
    got = parts(region.get(f"/studies/{study}/series/{series}", token))
    assert len(got) == sum(f["series_instance_uid"] == series for f in sample["files"])
    one = parts(
        region.get(f"/studies/{study}/series/{series}/instances/{first['sop_instance_uid']}", token)
    )
    assert [hashlib.sha256(body).hexdigest() for _, body in one] == [first["sha256"]]


def test_retrieval_in_a_transfer_syntax_not_stored_is_not_acceptable(region: Region) -> None:
    study = region.manifest[CT]["study_instance_uid"]
    reply = region.get(
        f"/studies/{study}",
        region.token(ZHANG),
        headers={
            "Accept": 'multipart/related; type="application/dicom"; '
            "transfer-syntax=1.2.840.10008.1.2.4.50"
        },
    )
    assert reply.status_code == 406
    stored = region.get(
        f"/studies/{study}",
        region.token(ZHANG),
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert stored.status_code == 200


def test_metadata_is_every_header_without_bulk_data(region: Region) -> None:
    sample = region.manifest[CT]
    study = sample["study_instance_uid"]
    reply = region.get(f"/studies/{study}/metadata", region.token(ZHANG))
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/dicom+json"
    entries = reply.json()
    assert {value(e, SOP_UID) for e in entries} == {f["sop_instance_uid"] for f in sample["files"]}
    for entry in entries:
        ds = pydicom.dcmread(region_sample_path(region, value(entry, SOP_UID)))
        assert "7FE00010" not in entry
        assert value(entry, "00280010") == ds.Rows
        centers = ds.WindowCenter if ds["WindowCenter"].VM > 1 else [ds.WindowCenter]
        assert entry["00281050"]["Value"] == [float(c) for c in centers]
        assert value(entry, "00100010") == {"Alphabetic": str(ds.PatientName)}
    first = sample["files"][0]
    one = region.get(
        f"/studies/{study}/series/{first['series_instance_uid']}/instances/"
        f"{first['sop_instance_uid']}/metadata",
        region.token(ZHANG),
    ).json()
    assert [value(e, SOP_UID) for e in one] == [first["sop_instance_uid"]]


def test_metadata_goes_gzipped_to_clients_that_take_gzip(region: Region) -> None:
    study = region.manifest[CT]["study_instance_uid"]
    token = region.token(ZHANG)
    plain = region.get(f"/studies/{study}/metadata", token, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert "content-encoding" not in plain.headers
    packed = region.get(f"/studies/{study}/metadata", token, headers={"Accept-Encoding": "gzip"})
    assert packed.status_code == 200
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["content-type"] == "application/dicom+json"
    assert plain.headers["vary"] == packed.headers["vary"] == "Accept-Encoding"
    # httpx inflated it: the same JSON, from a fraction of the bytes.
    assert packed.json() == plain.json()
    assert packed.num_bytes_downloaded < plain.num_bytes_downloaded / 4


def _instance_path(sample: dict[str, Any], position: int = 0) -> str:
    file = sample["files"][position]
    return (
        f"/studies/{sample['study_instance_uid']}/series/{file['series_instance_uid']}"
        f"/instances/{file['sop_instance_uid']}"
    )


def test_native_frames_are_the_raw_pixel_bytes(region: Region) -> None:
    sample = region.manifest[CT]
    ds = pydicom.dcmread(region_sample_path(region, sample["files"][0]["sop_instance_uid"]))
    reply = region.get(_instance_path(sample) + "/frames/1", region.token(ZHANG))
    assert reply.status_code == 200
    [(part_type, body)] = parts(reply)
    assert part_type.startswith("application/octet-stream")
    assert body == ds.PixelData


def test_compressed_frames_are_their_codestream_as_image_jpeg(region: Region) -> None:
    sop_uid, data = next(iter(region.jpeg_files.items()))
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.file_meta.TransferSyntaxUID == JPEG_LOSSLESS
    path = (
        f"/studies/{region.jpeg_study}/series/{ds.SeriesInstanceUID}/instances/{sop_uid}/frames/1"
    )
    token = region.token(ZHANG)
    reply = region.get(path, token, headers={"Accept": 'multipart/related; type="image/jpeg"'})
    assert reply.status_code == 200, reply.text
    [(part_type, body)] = parts(reply)
    assert part_type == f"image/jpeg; transfer-syntax={JPEG_LOSSLESS}"
    assert body == next(generate_frames(ds.PixelData, number_of_frames=1))
    # Raw bytes of a compressed frame would need decoding, which this server does not do.
    refused = region.get(
        path, token, headers={"Accept": 'multipart/related; type="application/octet-stream"'}
    )
    assert refused.status_code == 406


@pytest.mark.parametrize("frames", ["0", "a", "1,,2", "2", "1-2"])
def test_bad_frame_lists_are_refused(region: Region, frames: str) -> None:
    reply = region.get(
        _instance_path(region.manifest[CT]) + f"/frames/{frames}", region.token(ZHANG)
    )
    assert reply.status_code == 400
    assert "frames" in [v["field"] for v in reply.json()["violations"]]


def test_rendered_instances_and_frames_are_jpeg_or_png(region: Region) -> None:
    sample = region.manifest[CT]
    token = region.token(ZHANG)
    ds = pydicom.dcmread(region_sample_path(region, sample["files"][0]["sop_instance_uid"]))
    jpeg = region.get(_instance_path(sample) + "/rendered", token)
    assert jpeg.status_code == 200
    assert jpeg.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(jpeg.content))
    assert (image.format, image.size) == ("JPEG", (ds.Columns, ds.Rows))
    png = region.get(
        _instance_path(sample) + "/frames/1/rendered",
        token,
        headers={"Accept": "image/png"},
        params={"viewport": "64,64"},
    )
    assert png.headers["content-type"] == "image/png"
    assert max(Image.open(io.BytesIO(png.content)).size) == 64
    assert (
        region.get(
            _instance_path(sample) + "/rendered", token, headers={"Accept": "image/gif"}
        ).status_code
        == 406
    )
    assert (
        region.get(_instance_path(sample) + "/rendered", token, params={"quality": "0"}).status_code
        == 400
    )


# --- who may read what -----------------------------------------------------------------------


def test_another_patients_study_is_not_found_as_if_it_did_not_exist(region: Region) -> None:
    sample = region.manifest[CT]
    study = sample["study_instance_uid"]
    token = region.token(LI)
    for path in (
        f"/studies/{study}",
        f"/studies/{study}/metadata",
        f"/studies/{study}/series",
        f"/studies/{study}/instances",
        _instance_path(sample) + "/frames/1",
        _instance_path(sample) + "/rendered",
    ):
        reply = region.get(path, token)
        assert reply.status_code == 404, path
        missing = region.get(path.replace(study, "1.2.3.4.5"), token)
        assert missing.status_code == 404
        assert reply.json()["detail"] == missing.json()["detail"]
    assert found(region.get("/studies", token, params={"StudyInstanceUID": study})) == []


def test_a_share_token_reads_its_one_study(region: Region) -> None:
    patient = region.token(ZHANG)
    ct, dx = region.manifest[CT], region.manifest[DX]
    share = region.share_token(patient, ct["study_instance_uid"])
    listed = region.get("/studies", share).json()
    assert [value(e, STUDY_UID) for e in listed] == [ct["study_instance_uid"]]
    assert region.get(f"/studies/{ct['study_instance_uid']}/metadata", share).status_code == 200
    assert region.get(f"/studies/{dx['study_instance_uid']}/metadata", share).status_code == 404
    # The patient sees the link's openings.
    links = imaging_pb2_grpc.ImagingServiceStub(region.server.channel).ListShareLinks(
        imaging_pb2.ListShareLinksRequest(), metadata=auth_metadata(patient)
    )
    assert any(o.rpc.startswith("DICOMweb") for link in links.links for o in link.openings)


def test_a_hospital_reads_only_what_its_recent_check_recognized(region: Region) -> None:
    server = region.server
    checker = region.hospital_keys.get(CHECKER) or server.add_hospital(CHECKER)
    region.hospital_keys[CHECKER] = checker
    ct_issuer = region.manifest[CT]["institution_code"]
    dx_issuer = region.manifest[DX]["institution_code"]
    qualify(server, ct_issuer, dx_issuer)
    ct = upload_today(server, region.hospital_keys[ct_issuer], region.manifest[CT])
    dx = upload_today(server, region.hospital_keys[dx_issuer], region.manifest[DX])
    assert region.get(f"/studies/{ct}/metadata", checker).status_code == 404
    assert ct not in {value(e, STUDY_UID) for e in found(region.get("/studies", checker))}

    reply = check(server, checker, ZHANG, "IMG-CT-CHEST-C")
    assert [line.verdict for line in reply.lines] == [recognition_pb2.RECOGNIZABLE]
    assert reply.lines[0].result.imaging.study_instance_uid == ct
    listed = {value(e, STUDY_UID) for e in found(region.get("/studies", checker))}
    assert ct in listed
    assert dx not in listed
    assert len(parts(region.get(f"/studies/{ct}", checker))) == len(region.manifest[CT]["files"])
    assert region.get(f"/studies/{dx}", checker).status_code == 404
    # The issuer of the films made no check: the CT is not theirs to read.
    assert region.get(f"/studies/{ct}", region.hospital_keys[dx_issuer]).status_code == 404


def test_other_roles_and_no_credential_are_refused(region: Region) -> None:
    assert region.get("/studies", None).status_code == 401
    refused = region.get("/studies", region.regulator_key)
    assert refused.status_code == 403
    assert region.get("/studies", region.admin_key).status_code == 403


def test_every_read_is_in_the_patients_audit_trail(region: Region) -> None:
    token = region.token(WANG)
    study = next(iter(region.studies_of(WANG)))
    assert region.get(f"/studies/{study}/metadata", token).status_code == 200
    assert region.get("/studies", token).status_code == 200
    stub = imaging_pb2_grpc.ImagingServiceStub(region.server.channel)
    deadline = time.monotonic() + 10
    while True:
        accesses = stub.ListAccesses(
            imaging_pb2.ListAccessesRequest(page_size=50), metadata=auth_metadata(token)
        ).accesses
        rpcs = {a.rpc for a in accesses}
        if {"HTTP GET /dicomweb/studies/{study}/metadata", "HTTP GET /dicomweb/studies"} <= rpcs:
            break
        assert time.monotonic() < deadline, rpcs
        time.sleep(0.1)
    read = next(a for a in accesses if a.rpc == "HTTP GET /dicomweb/studies/{study}/metadata")
    assert study in read.what
    assert read.role == "patient"
    assert read.outcome == "OK"


def test_every_dicomweb_route_is_in_the_role_matrix() -> None:
    from mutualrec.http.dicomweb import ROUTES
    from mutualrec.security.access import RPC_ROLES, http_route

    assert all(http_route("GET", path) in RPC_ROLES for path in ROUTES)


def test_sample_files_are_what_the_manifest_says(region: Region) -> None:
    # Guards the comparisons above: they read the sample files directly.
    for path in study_files(region.manifest[CT]):
        assert path.is_file()


def test_a_file_damaged_in_the_store_breaks_the_stream_rather_than_arriving_altered(
    region: Region,
) -> None:
    sample = region.manifest["us_abdomen_hosp_a"]
    uid = sample["study_instance_uid"]
    first = sample["files"][0]
    store = region.server.runtime.store
    key = f"dicom/{uid}/{first['series_instance_uid']}/{first['sop_instance_uid']}"
    [stored] = [info.key for info in store.list(key)]
    original = b"".join(store.open(stored))
    damaged = bytearray(original)
    damaged[-1] ^= 0xFF
    store.put(stored, io.BytesIO(bytes(damaged)), len(damaged))
    try:
        with pytest.raises(httpx.HTTPError):
            region.get(f"/studies/{uid}", region.token(LI))
    finally:
        store.put(stored, io.BytesIO(original), len(original))
    whole = parts(region.get(f"/studies/{uid}", region.token(LI)))
    assert sorted(hashlib.sha256(body).hexdigest() for _, body in whole) == sorted(
        f["sha256"] for f in sample["files"]
    )
