"""The raw DICOM JSON walker against pydicom's to_json_dict (an independent implementation of the
same model), and a few values written out by hand."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from mutualrec.imaging.dicom_json import INLINE_BINARY_MAX, metadata_json
from mutualrec.imaging.raw_dicom_json import instance_metadata, raw_metadata_json
from tests.conftest import SAMPLES
from tests.dicom_vendor import with_un_sequence

PYDICOM_DATA = Path(pydicom.__file__).parent / "data"
OURS = sorted(SAMPLES.glob("*/*.dcm"))
PYDICOMS = sorted((PYDICOM_DATA / "test_files").rglob("*.dcm")) + sorted(
    (PYDICOM_DATA / "charset_files").glob("*.dcm")
)
PREFIX = 64 * 1024


def _oracle(data: bytes) -> dict[str, Any]:
    header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, defer_size=None)
    built: dict[str, Any] = json.loads(json.dumps(metadata_json(header)))
    return built


def _fast(data: bytes) -> dict[str, Any] | None:
    return raw_metadata_json(data[:PREFIX], complete=len(data) <= PREFIX)


@pytest.mark.parametrize("path", OURS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_sample_takes_the_fast_path_and_matches_pydicom(path: Path) -> None:
    data = path.read_bytes()
    assert _fast(data) == _oracle(data)


@pytest.mark.parametrize("path", PYDICOMS, ids=lambda p: p.name)
def test_pydicom_test_files_match_or_fall_back(path: Path) -> None:
    """Whatever the walker answers for pydicom's own odd files (implicit VR, private tags,
    character sets, truncated, big endian...) is pydicom's answer; else it answers None."""
    data = path.read_bytes()
    fast = _fast(data)
    if fast is not None:
        assert fast == _oracle(data)


def test_the_walker_answers_for_most_of_pydicoms_little_endian_files() -> None:
    answered = [p.name for p in PYDICOMS if _fast(p.read_bytes()) is not None]
    assert "MR_small_implicit.dcm" in answered  # "US or SS" settled by Pixel Representation
    assert "chrFren.dcm" in answered
    assert len(answered) > len(PYDICOMS) // 2


def test_bench_ct_instances_match(tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    subprocess.run(
        [
            sys.executable,
            str(SAMPLES / "make_samples.py"),
            *("--bench-ct", str(folder), "--count", "3", "--series", "1"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    files = sorted(folder.glob("*.dcm"))
    assert files
    for path in files:
        data = path.read_bytes()
        assert _fast(data) == _oracle(data)


def test_a_router_s_un_sequence_falls_back_to_pydicom() -> None:
    data = with_un_sequence()
    assert _fast(data) is None
    built = instance_metadata(
        data[:PREFIX], complete=len(data) <= PREFIX, header=lambda: _header(data)
    )
    assert json.loads(built) == _oracle(data)


def _header(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)


def _file(dataset: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    meta.TransferSyntaxUID = syntax
    dataset.file_meta = meta
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _tricky() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "GB18030"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.StudyDescription = ""
    ds.PatientName = "Wang^XiaoDong=王^小东"
    ds.PatientID = "A00012345"
    ds.InstitutionName = "重庆市渝中区人民医院"
    ds.SliceThickness = "1.25"
    ds.ImagePositionPatient = ["-125.5", "0", "3e2"]
    ds.InstanceNumber = " 42"
    ds.Rows = 512
    ds.RescaleSlope = "1"
    ds.FrameIncrementPointer = 0x00181063
    ds.ReferencedImageSequence = Sequence([Dataset()])
    ds.ProcedureCodeSequence = Sequence([])
    ds.add_new(0x00090010, "LO", "MUTUALREC TEST")
    # The longest inline value an even-length file holds, and the shortest bulk one.
    ds.add_new(0x00091001, "OB", b"\x01" * (INLINE_BINARY_MAX - 2))
    ds.add_new(0x00091002, "OB", b"\x02" * INLINE_BINARY_MAX)
    return ds


def test_tricky_values_as_written_out_by_hand() -> None:
    data = _file(_tricky())
    fast = _fast(data)
    assert fast == _oracle(data)
    assert fast is not None
    assert fast["00100010"] == {
        "vr": "PN",
        "Value": [{"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小东"}],
    }
    assert fast["00080080"] == {"vr": "LO", "Value": ["重庆市渝中区人民医院"]}
    assert fast["00081030"] == {"vr": "LO"}  # empty: no Value (PS3.18 F.2.5)
    assert fast["00180050"] == {"vr": "DS", "Value": [1.25]}
    assert fast["00200032"] == {"vr": "DS", "Value": [-125.5, 0.0, 300.0]}
    assert fast["00200013"] == {"vr": "IS", "Value": [42]}
    assert fast["00280010"] == {"vr": "US", "Value": [512]}
    assert fast["00280009"] == {"vr": "AT", "Value": ["00181063"]}
    assert fast["00081140"] == {"vr": "SQ", "Value": [{}]}
    assert fast["00081032"] == {"vr": "SQ"}
    inline = base64.b64encode(b"\x01" * (INLINE_BINARY_MAX - 2)).decode()
    assert fast["00091001"] == {"vr": "OB", "InlineBinary": inline}
    assert "00091002" not in fast  # bulk data, left out


def test_implicit_vr_gives_the_same_answer() -> None:
    tricky = _tricky()
    del tricky[0x00091001]
    del tricky[0x00091002]
    del tricky[0x00090010]
    explicit = _fast(_file(tricky))
    implicit = _fast(_file(_tricky_copy(tricky), ImplicitVRLittleEndian))
    assert implicit is not None
    assert implicit == explicit


def _tricky_copy(dataset: Dataset) -> Dataset:
    copy = Dataset()
    copy.update(dataset)
    return copy


def test_big_endian_falls_back() -> None:
    ds = Dataset()
    ds.PatientID = "A1"
    assert _fast(_file(ds, ExplicitVRBigEndian)) is None


def test_a_value_pydicom_rejects_falls_back_and_the_answer_is_pydicoms() -> None:
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.StudyDescription = "x" * 80  # LO holds 64 characters: strict reading drops it
    data = _file(ds)
    assert _fast(data) is None
    built = json.loads(instance_metadata(data, complete=True, header=lambda: _header(data)))
    assert built == _oracle(data)
    assert "00081030" not in built


def test_a_header_longer_than_the_bytes_read_falls_back() -> None:
    ds = _tricky()
    ds.StudyComments = "y" * 9000
    data = _file(ds)
    assert raw_metadata_json(data[:4096], complete=False) is None
    assert raw_metadata_json(data, complete=True) == _oracle(data)


def test_iso_2022_escapes_fall_back() -> None:
    path = PYDICOM_DATA / "charset_files" / "chrJapMulti.dcm"
    assert _fast(path.read_bytes()) is None
