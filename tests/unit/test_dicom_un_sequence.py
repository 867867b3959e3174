"""Private sequences re-encoded as UN with undefined length (PS3.5 6.2.2) are read, not refused."""

from __future__ import annotations

import io
import struct

import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite, write_data_element
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian

from mutualrec.ingest.dicom_header import read_header
from mutualrec.violations import Rejected
from tests.conftest import SAMPLES

MR_SAMPLE = sorted((SAMPLES / "mr_brain_hosp_b").glob("*.dcm"))[0]
# Philips MR writes its per-frame scan parameters in this private sequence; a router without
# Philips' private dictionary does not know (2005,140F) is SQ, so it writes it as UN.
PHILIPS_CREATOR = "Philips MR Imaging DD 005"
PHILIPS_SEQUENCE = 0x2005140F


def _philips_sequence() -> DataElement:
    """A (2005,140F) sequence shaped like a Philips one: two items, one with a nested sequence."""
    items = []
    for number in (1, 2):
        item = Dataset()
        item.SOPInstanceUID = f"1.3.46.670589.11.0.0.{number}"
        item.ImageType = ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"]
        item.add_new(0x20050010, "LO", PHILIPS_CREATOR)
        item.add_new(0x20051071, "FL", 90.0)
        codes = Dataset()
        codes.CodeValue = "T-A0100"
        codes.CodingSchemeDesignator = "SRT"
        codes.CodeMeaning = "Brain"
        item.AnatomicRegionSequence = Sequence([codes])
        item["AnatomicRegionSequence"].is_undefined_length = True
        items.append(item)
    element = DataElement(PHILIPS_SEQUENCE, "SQ", Sequence(items))
    element.is_undefined_length = True
    for item in element.value:
        item.is_undefined_length_sequence_item = True
    return element


def _as_un(element: DataElement) -> bytes:
    """The element as a router re-encodes it in Explicit VR Little Endian: VR UN, undefined
    length, the value (items, delimiters) kept in Implicit VR Little Endian."""
    implicit = DicomBytesIO()
    implicit.is_little_endian = True
    implicit.is_implicit_VR = True
    write_data_element(implicit, element)
    raw = implicit.getvalue()
    assert raw[4:8] == b"\xff\xff\xff\xff"  # undefined length
    return raw[:4] + b"UN\x00\x00" + raw[4:]


def _explicit(element: DataElement, *, little: bool = True) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian = little
    buffer.is_implicit_VR = False
    write_data_element(buffer, element)
    return buffer.getvalue()


def _with_un_sequence() -> bytes:
    """The MR sample with the Philips private block added, its sequence as a router writes it."""
    ds = pydicom.dcmread(MR_SAMPLE)
    pixels = ds["PixelData"]
    del ds.PixelData
    ds.add_new(0x20050014, "LO", PHILIPS_CREATOR)
    head = io.BytesIO()
    ds.save_as(head, enforce_file_format=True)
    # (2005,140F) sorts after every element of the sample but before the pixel data.
    assert max(int(element.tag) for element in ds) < PHILIPS_SEQUENCE
    return head.getvalue() + _as_un(_philips_sequence()) + _explicit(pixels)


def test_pydicom_reads_the_un_sequence_as_a_sequence() -> None:
    # The instance is what a real reader accepts: pydicom (like dcmtk) reads the UN value as an
    # implicit-VR sequence.
    ds = pydicom.dcmread(io.BytesIO(_with_un_sequence()))

    sequence = ds[PHILIPS_SEQUENCE]
    assert sequence.VR == "SQ"
    assert [item.SOPInstanceUID for item in sequence.value] == [
        "1.3.46.670589.11.0.0.1",
        "1.3.46.670589.11.0.0.2",
    ]
    assert sequence.value[1].AnatomicRegionSequence[0].CodeMeaning == "Brain"
    assert ds.PixelData == pydicom.dcmread(MR_SAMPLE).PixelData


def test_an_undefined_length_un_sequence_is_walked_as_implicit_vr() -> None:
    data = _with_un_sequence()

    header = read_header(io.BytesIO(data), len(data))

    assert header.modality == "MR"
    assert header.sop_instance_uid == pydicom.dcmread(MR_SAMPLE).SOPInstanceUID


def test_a_cut_inside_the_un_sequence_is_still_truncated() -> None:
    data = _with_un_sequence()
    start = data.index(struct.pack("<HH", 0x2005, 0x140F) + b"UN")
    cut = data[: start + 60]

    with pytest.raises(Rejected) as refused:
        read_header(io.BytesIO(cut), len(cut))

    assert [v.reason for v in refused.value.violations] == ["TRUNCATED"]


def test_a_big_endian_dataset_keeps_its_un_items_little_endian() -> None:
    ds = pydicom.dcmread(MR_SAMPLE)
    pixels = ds["PixelData"]
    del ds.PixelData
    ds.add_new(0x20050014, "LO", PHILIPS_CREATOR)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    head = io.BytesIO()
    dcmwrite(head, ds, implicit_vr=False, little_endian=False, enforce_file_format=True)
    big_tag = struct.pack(">HH", 0x2005, 0x140F)
    un = _as_un(_philips_sequence())
    # The element's own tag and length follow the dataset's byte order; its value does not.
    un = big_tag + b"UN\x00\x00" + un[8:]
    data = head.getvalue() + un + _explicit(pixels, little=False)

    header = read_header(io.BytesIO(data), len(data))

    assert header.modality == "MR"
