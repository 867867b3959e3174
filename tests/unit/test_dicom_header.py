"""Reading DICOM headers: every valid instance in every transfer syntax, and bad input."""

from __future__ import annotations

import datetime as dt
import io
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian

from mutualrec.ingest.dicom_header import DicomHeader, read_header
from mutualrec.violations import Rejected
from tests.conftest import PYDICOM_FILES, SAMPLES

SAMPLE_FILES = sorted(SAMPLES.glob("*/*.dcm"))
REQUIRED_FILLERS = {"PatientID": "T0001", "StudyDate": "20240102", "Modality": "OT"}


def _read(data: bytes) -> DicomHeader:
    return read_header(io.BytesIO(data), len(data))


def _completed(path: Path) -> bytes | None:
    """A pydicom test file with any missing required attribute filled in, in its own syntax.

    Returns None for files that are not instances at all (no SOP Instance UID) or that pydicom
    itself cannot write back.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path)
        except Exception:
            return None
        if "SOPInstanceUID" not in ds or "StudyInstanceUID" not in ds or "file_meta" not in dir(ds):
            return None
        if "SeriesInstanceUID" not in ds or "SOPClassUID" not in ds:
            return None
        for keyword, value in REQUIRED_FILLERS.items():
            if not ds.get(keyword):
                setattr(ds, keyword, value)
        if not re.fullmatch(r"\d{8}", str(ds.StudyDate)):
            ds.StudyDate = REQUIRED_FILLERS["StudyDate"]
        if "TransferSyntaxUID" not in ds.file_meta:
            return None
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buffer = io.BytesIO()
        try:
            ds.save_as(buffer, enforce_file_format=True)
        except Exception:
            return None
    return buffer.getvalue()


def _pydicom_instances() -> Iterator[tuple[str, bytes]]:
    for path in sorted(PYDICOM_FILES.glob("*.dcm")):
        data = _completed(path)
        if data is not None:
            yield path.name, data


PYDICOM_INSTANCES = dict(_pydicom_instances())


def _deflated_sample() -> bytes:
    ds = pydicom.dcmread(SAMPLE_FILES[0])
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_samples_are_read_with_their_attributes(path: Path) -> None:
    ds = pydicom.dcmread(path)
    header = _read(path.read_bytes())
    assert header.sop_instance_uid == ds.SOPInstanceUID
    assert header.study_instance_uid == ds.StudyInstanceUID
    assert header.series_instance_uid == ds.SeriesInstanceUID
    assert header.modality == ds.Modality
    assert header.patient_id == ds.PatientID
    assert header.study_date.strftime("%Y%m%d") == ds.StudyDate
    assert header.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
    assert header.contrast == bool(ds.get("ContrastBolusAgent"))
    # Text in the instance's character set (hospital B writes UTF-8) decodes as pydicom does.
    assert header.study_description == ds.get("StudyDescription", "")
    assert header.series_description == ds.get("SeriesDescription", "")
    assert header.accession_number == ds.get("AccessionNumber", "")


@pytest.mark.parametrize("charset", ["GB18030", "ISO_IR 192"])
def test_chinese_text_in_declared_character_set(charset: str) -> None:
    ds = pydicom.dcmread(SAMPLE_FILES[0])
    ds.SpecificCharacterSet = charset
    ds.StudyDescription = "胸部增强CT"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    assert _read(buffer.getvalue()).study_description == "胸部增强CT"


def test_field_body_part_is_normalized() -> None:
    dx = next(p for p in SAMPLE_FILES if p.parent.name.startswith("dx_"))
    header = _read(dx.read_bytes())
    assert header.body_part_examined == pydicom.dcmread(dx).BodyPartExamined
    assert header.body_part == "CHEST"


@pytest.mark.parametrize("name", sorted(PYDICOM_INSTANCES))
def test_every_valid_pydicom_instance_is_accepted(name: str) -> None:
    data = PYDICOM_INSTANCES[name]
    header = _read(data)
    assert header.sop_instance_uid == pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID


def test_transfer_syntaxes_covered() -> None:
    syntaxes = {_read(data).transfer_syntax_uid for data in PYDICOM_INSTANCES.values()}
    syntaxes.add(_read(_deflated_sample()).transfer_syntax_uid)
    expected = {
        "1.2.840.10008.1.2",  # implicit VR little endian
        "1.2.840.10008.1.2.1",  # explicit VR little endian
        "1.2.840.10008.1.2.2",  # explicit VR big endian
        "1.2.840.10008.1.2.1.99",  # deflated
        "1.2.840.10008.1.2.4.50",  # JPEG baseline
        "1.2.840.10008.1.2.4.70",  # JPEG lossless
        "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.5",  # RLE
    }
    assert expected <= syntaxes


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "rtplan.dcm"])
def test_truncated_instances_are_rejected(name: str, fraction: float) -> None:
    data = PYDICOM_INSTANCES[name]
    cut = data[: int(len(data) * fraction)]
    with pytest.raises(Rejected) as raised:
        _read(cut)
    assert raised.value.violations[0].reason in {"TRUNCATED", "NOT_DICOM", "MISSING_ATTRIBUTE"}


def test_truncated_deflated_instance_is_rejected() -> None:
    data = _deflated_sample()
    with pytest.raises(Rejected) as raised:
        _read(data[: len(data) - 50])
    assert raised.value.violations[0].reason in {"TRUNCATED", "NOT_DICOM"}


def test_pydicom_truncated_file_is_rejected() -> None:
    with pytest.raises(Rejected) as raised:
        _read((PYDICOM_FILES / "MR_truncated.dcm").read_bytes())
    assert raised.value.violations[0].reason == "TRUNCATED"


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"\x00" * 200, b"%PDF-1.7\n" + b"x" * 500, bytes(range(256)) * 8],
)
def test_bytes_that_are_not_dicom(data: bytes) -> None:
    with pytest.raises(Rejected) as raised:
        _read(data)
    assert raised.value.violations[0].field == "instance"


def test_dicomdir_is_rejected() -> None:
    with pytest.raises(Rejected) as raised:
        _read((PYDICOM_FILES / "dicomdirtests" / "DICOMDIR").read_bytes())
    assert raised.value.violations[0].reason == "DICOMDIR"


def _modified(**changes: object) -> bytes:
    ds = pydicom.dcmread(SAMPLE_FILES[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values we set
        for keyword, value in changes.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"StudyInstanceUID": None}, "(0020,000D) StudyInstanceUID", "MISSING_ATTRIBUTE"),
        ({"SeriesInstanceUID": "1.2.03.4"}, "(0020,000E) SeriesInstanceUID", "MALFORMED_UID"),
        ({"SOPInstanceUID": "1.2.abc"}, "(0008,0018) SOPInstanceUID", "MALFORMED_UID"),
        ({"SOPClassUID": None}, "(0008,0016) SOPClassUID", "MISSING_ATTRIBUTE"),
        ({"Modality": None}, "(0008,0060) Modality", "MISSING_ATTRIBUTE"),
        ({"StudyDate": "20241399"}, "(0008,0020) StudyDate", "MALFORMED_DATE"),
        ({"StudyDate": "29991231"}, "(0008,0020) StudyDate", "FUTURE_DATE"),
    ],
)
def test_required_attributes(changes: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(Rejected) as raised:
        _read(_modified(**changes))
    assert (field, reason) in {(v.field, v.reason) for v in raised.value.violations}


def test_all_violations_are_reported_at_once() -> None:
    with pytest.raises(Rejected) as raised:
        _read(_modified(StudyInstanceUID=None, Modality=None, SOPClassUID=None))
    assert len(raised.value.violations) == 3


def test_study_time_with_fraction() -> None:
    header = _read(_modified(StudyTime="083015.25"))
    assert header.study_time == dt.time(8, 30, 15, 250000)


def _sample_with(old: bytes, new: bytes) -> bytes:
    """The first CT sample with ``old`` (found once) replaced by ``new`` of the same length."""
    data = next(p for p in SAMPLE_FILES if "ct_chest" in str(p)).read_bytes()
    assert len(old) == len(new)
    assert data.count(old) >= 1
    return data.replace(old, new, 1)


def test_a_character_set_with_a_nul_inside_is_refused() -> None:
    # Found by the fuzzer: pydicom's codec lookup raised ValueError.
    data = _sample_with(b"ISO_IR 100", b"ISO_IR\x00100")

    with pytest.raises(Rejected) as refused:
        _read(data)

    assert [v.reason for v in refused.value.violations] == ["UNKNOWN_CHARACTER_SET"]


def test_a_file_meta_element_of_unknown_vr_is_not_dicom() -> None:
    # Found by the fuzzer: pydicom raised NotImplementedError when the element was first read.
    data = _sample_with(b"\x02\x00\x02\x00UI", b"\x02\x00\x02\x00U\x00")

    with pytest.raises(Rejected) as refused:
        _read(data)

    assert [v.reason for v in refused.value.violations] == ["NOT_DICOM"]
