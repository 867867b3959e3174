"""The demo's copies of the samples: re-dated, new UIDs, the same bytes for the same day."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pydicom

from mutualrec.client.demo_data import demo_uid, lab_bundle, redate_instance

SAMPLE = Path(__file__).resolve().parents[2] / "dicom_samples" / "ct_chest_contrast_hosp_a"
DAY = dt.date(2031, 7, 9)


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def test_a_copy_is_dated_on_the_day_with_uids_of_its_own() -> None:
    original_bytes = (SAMPLE / "S02_I001.dcm").read_bytes()
    original = _read(original_bytes)

    copy = _read(redate_instance(original_bytes, DAY))

    for keyword in ("StudyDate", "SeriesDate", "ContentDate", "InstanceCreationDate"):
        assert copy.data_element(keyword).value == "20310709", keyword
    assert copy.StudyTime == original.StudyTime
    assert copy.PatientBirthDate == "19680315"
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        old, new = original.data_element(keyword).value, copy.data_element(keyword).value
        assert new != old, keyword
        assert new == demo_uid(old, DAY), keyword
    assert copy.file_meta.MediaStorageSOPInstanceUID == copy.SOPInstanceUID
    assert copy.FrameOfReferenceUID != original.FrameOfReferenceUID
    assert copy.SOPClassUID == original.SOPClassUID
    assert copy.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert copy.PixelData == original.PixelData


def test_the_same_day_gives_the_same_bytes_another_day_another_study() -> None:
    data = (SAMPLE / "S03_I002.dcm").read_bytes()

    first, again = redate_instance(data, DAY), redate_instance(data, DAY)
    tomorrow = _read(redate_instance(data, DAY + dt.timedelta(days=1)))

    assert first == again
    assert tomorrow.StudyInstanceUID != _read(first).StudyInstanceUID
    assert tomorrow.StudyDate == "20310710"


def test_the_lab_bundle_is_the_days_results() -> None:
    bundle = lab_bundle("50010319680315109X", "urn:mutualrec:lis:H500103001", DAY)

    patient, potassium, glucose = (e["resource"] for e in bundle["entry"])
    assert patient["identifier"][0]["value"] == "50010319680315109X"
    assert potassium["identifier"][0]["value"] == "DEMO-20310709-K"
    assert potassium["code"]["coding"][0]["code"] == "2823-3"
    assert potassium["issued"] == "2031-07-09T10:12:00+08:00"
    assert glucose["identifier"][0]["value"] == "DEMO-20310709-GLU"
