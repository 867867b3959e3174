"""Reading the file meta: the direct reading of the usual shape says what pydicom says, and
every other shape is read (or refused) by pydicom."""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import pytest
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from mutualrec.ingest.dicom_file_meta import FileMeta, read_file_meta
from mutualrec.ingest.dicom_header import read_header
from mutualrec.violations import Rejected
from tests.conftest import PYDICOM_FILES, SAMPLES

SAMPLE_FILES = sorted(SAMPLES.glob("*/*.dcm"))
CT = SAMPLE_FILES[0]


def _read(data: bytes) -> FileMeta:
    return read_file_meta(io.BytesIO(data), len(data))


def _pydicom_says(path: Path) -> tuple[str, str, int]:
    """Media storage SOP class, transfer syntax and dataset start, as pydicom reads them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with path.open("rb") as fp:
            read_preamble(fp, force=True)
            meta = _read_file_meta_info(fp)
            end = fp.tell()
    return (
        str(meta.get("MediaStorageSOPClassUID", "")),
        str(meta.get("TransferSyntaxUID", "")),
        end,
    )


def _part10(path: Path) -> bool:
    data = path.read_bytes()
    return data[128:132] == b"DICM" and b"\x02\x00\x00\x00UL" in data[132:140]


PART10_FILES = SAMPLE_FILES + [p for p in sorted(PYDICOM_FILES.glob("*.dcm")) if _part10(p)]


@pytest.mark.parametrize("path", PART10_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_part10_files_are_read_as_pydicom_reads_them(path: Path) -> None:
    sop_class, syntax, end = _pydicom_says(path)

    meta = _read(path.read_bytes())

    assert (meta.present, meta.preamble) == (True, True)
    assert meta.media_storage_sop_class_uid == sop_class
    assert meta.transfer_syntax_uid == syntax
    assert meta.dataset_start == end


def test_the_samples_cover_several_transfer_syntaxes() -> None:
    syntaxes = {_read(p.read_bytes()).transfer_syntax_uid for p in PART10_FILES}

    assert {ImplicitVRLittleEndian, ExplicitVRBigEndian} <= syntaxes


def test_no_preamble_is_read_without_one() -> None:
    data = CT.read_bytes()[128 + 4 :]  # the file meta group straight away, as old writers did

    meta = _read(data)

    assert (meta.present, meta.preamble) == (True, False)
    assert meta.media_storage_sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert meta.dataset_start == _read(CT.read_bytes()).dataset_start - 132


def test_a_dataset_without_any_file_meta() -> None:
    # A pre-Part 10 dataset: the first element is (0008,0005), no group 0002.
    data = b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100"

    meta = _read(data)

    assert meta == FileMeta(False, False, "", "", 0)


def test_an_implicit_vr_file_meta_is_still_read() -> None:
    # Some old writers encoded group 0002 in implicit VR: pydicom reads it, so do we.
    uid = b"1.2.840.10008.1.2\x00"
    element = struct.pack("<HHL", 2, 0x10, len(uid)) + uid
    data = b"\0" * 128 + b"DICM" + element + b"\x08\x00\x16\x00UI\x02\x001\x00"

    meta = _read(data)

    assert meta.transfer_syntax_uid == ImplicitVRLittleEndian
    assert meta.dataset_start == 132 + len(element)


@pytest.mark.parametrize(
    "cut",
    [140, 150, 200],
    ids=["inside the group length", "inside an element", "inside a value"],
)
def test_a_file_cut_inside_the_file_meta_is_refused(cut: int) -> None:
    data = CT.read_bytes()
    assert _read(data).dataset_start > cut  # the cut is inside group 0002

    with pytest.raises(Rejected) as refused:
        read_header(io.BytesIO(data[:cut]), cut)

    # As before the direct reading: pydicom reads what is there, and the dataset is missing.
    reasons = {v.reason for v in refused.value.violations}
    assert reasons
    assert reasons <= {"NOT_DICOM", "TRUNCATED", "MISSING_ATTRIBUTE"}


def test_a_file_meta_element_of_unknown_vr_is_not_dicom() -> None:
    data = CT.read_bytes().replace(b"\x02\x00\x10\x00UI", b"\x02\x00\x10\x00U\x00", 1)

    with pytest.raises(Rejected) as refused:
        _read(data)

    assert [v.reason for v in refused.value.violations] == ["NOT_DICOM"]
