"""Conformance: the HTTP door's QIDO-RS and WADO-RS answer a real third-party client, PyPI's
``dicomweb-client`` (what many Python tools and pipelines use), with its default requests."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import Any

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.encaps import generate_frames

from tests.conftest import SAMPLES
from tests.dicomweb_region import LI, ZHANG, Region, region_on

CT = "ct_chest_contrast_hosp_a"


@pytest.fixture(scope="module", params=["sqlite"])
def region(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Region]:
    yield from region_on(request, tmp_path_factory.mktemp("dicomweb-client"))


@pytest.fixture
def client(region: Region) -> DICOMwebClient:
    return DICOMwebClient(region.url, headers={"Authorization": f"Bearer {region.token(ZHANG)}"})


def _uid(entry: dict[str, Any], tag: str) -> str:
    return str(entry[tag]["Value"][0])


def test_searches(client: DICOMwebClient, region: Region) -> None:
    sample = region.manifest[CT]
    study = sample["study_instance_uid"]
    studies = client.search_for_studies(search_filters={"AccessionNumber": "CT*"})
    assert study in {_uid(s, "0020000D") for s in studies}
    series = client.search_for_series(study_instance_uid=study)
    assert {_uid(s, "0020000E") for s in series} == {
        f["series_instance_uid"] for f in sample["files"]
    }
    instances = client.search_for_instances(study_instance_uid=study, limit=5, offset=0)
    assert len(instances) == 5
    everything = client.search_for_instances(
        study_instance_uid=study, fields=["Rows"], get_remaining=True
    )
    assert {_uid(i, "00080018") for i in everything} == {
        f["sop_instance_uid"] for f in sample["files"]
    }


def test_retrievals_are_the_stored_files(client: DICOMwebClient, region: Region) -> None:
    sample = region.manifest[CT]
    study = sample["study_instance_uid"]
    first = sample["files"][0]
    expected = (SAMPLES / first["path"]).read_bytes()

    def digest(ds: pydicom.Dataset) -> str:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return hashlib.sha256(buffer.getvalue()).hexdigest()

    whole = client.retrieve_study(study)
    assert len(whole) == len(sample["files"])
    series = client.retrieve_series(study, first["series_instance_uid"])
    assert {str(ds.SOPInstanceUID) for ds in series} == {
        f["sop_instance_uid"]
        for f in sample["files"]
        if f["series_instance_uid"] == first["series_instance_uid"]
    }
    one = client.retrieve_instance(study, first["series_instance_uid"], first["sop_instance_uid"])
    assert one.PixelData == pydicom.dcmread(io.BytesIO(expected)).PixelData
    assert digest(one) == digest(pydicom.dcmread(io.BytesIO(expected)))


def test_metadata(client: DICOMwebClient, region: Region) -> None:
    sample = region.manifest[CT]
    study = sample["study_instance_uid"]
    first = sample["files"][0]
    series = first["series_instance_uid"]
    assert len(client.retrieve_study_metadata(study)) == len(sample["files"])
    assert len(client.retrieve_series_metadata(study, series)) == sum(
        f["series_instance_uid"] == series for f in sample["files"]
    )
    [meta] = [client.retrieve_instance_metadata(study, series, first["sop_instance_uid"])]
    ds = pydicom.Dataset.from_json(meta)
    header = pydicom.dcmread(SAMPLES / first["path"], stop_before_pixels=True)
    assert ds.SOPInstanceUID == header.SOPInstanceUID
    assert ds.PatientName == header.PatientName
    assert ds.Rows == header.Rows
    assert "PixelData" not in ds


def test_frames_native_and_compressed(client: DICOMwebClient, region: Region) -> None:
    sample = region.manifest[CT]
    first = sample["files"][0]
    [frame] = client.retrieve_instance_frames(
        sample["study_instance_uid"],
        first["series_instance_uid"],
        first["sop_instance_uid"],
        frame_numbers=[1],
    )
    assert frame == pydicom.dcmread(SAMPLES / first["path"]).PixelData

    sop_uid, data = next(iter(region.jpeg_files.items()))
    ds = pydicom.dcmread(io.BytesIO(data))
    [compressed] = client.retrieve_instance_frames(
        region.jpeg_study,
        str(ds.SeriesInstanceUID),
        sop_uid,
        frame_numbers=[1],
        media_types=(("image/jpeg", "1.2.840.10008.1.2.4.70"),),
    )
    assert compressed == next(generate_frames(ds.PixelData, number_of_frames=1))


def test_rendered(client: DICOMwebClient, region: Region) -> None:
    sample = region.manifest[CT]
    first = sample["files"][0]
    uids = (sample["study_instance_uid"], first["series_instance_uid"], first["sop_instance_uid"])
    jpeg = client.retrieve_instance_rendered(*uids)
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    png = client.retrieve_instance_rendered(*uids, media_types=("image/png",))
    assert Image.open(io.BytesIO(png)).format == "PNG"


def test_a_file_damaged_after_its_checked_copy_was_kept_is_sent_as_checked(
    region: Region,
) -> None:
    sample = region.manifest["us_abdomen_hosp_a"]
    uid = sample["study_instance_uid"]
    first = sample["files"][0]
    store = region.server.runtime.store
    key = f"dicom/{uid}/{first['series_instance_uid']}/{first['sop_instance_uid']}"
    [stored] = [info.key for info in store.list(key)]
    original = b"".join(store.open(stored))
    token = region.token(LI)
    # Read once: every file is checked against its recorded hash, and kept.
    assert original in region.get(f"/studies/{uid}", token).content
    damaged = bytearray(original)
    damaged[-1] ^= 0xFF
    store.put(stored, io.BytesIO(bytes(damaged)), len(damaged))
    try:
        again = region.get(f"/studies/{uid}", token)
    finally:
        store.put(stored, io.BytesIO(original), len(original))
    assert again.status_code == 200
    assert original in again.content
    assert bytes(damaged) not in again.content
