"""Private sequences re-encoded as UN with undefined length (PS3.5 6.2.2) are read, not refused."""

from __future__ import annotations

import io
import struct

import pydicom
import pytest
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRBigEndian

from mutualrec.ingest.dicom_header import read_header
from mutualrec.violations import Rejected
from tests.dicom_vendor import (
    MR_SAMPLE,
    PHILIPS_CREATOR,
    PHILIPS_SEQUENCE,
    as_un,
    explicit,
    philips_sequence,
    with_un_sequence,
)


def test_pydicom_reads_the_un_sequence_as_a_sequence() -> None:
    # The instance is what a real reader accepts: pydicom (like dcmtk) reads the UN value as an
    # implicit-VR sequence.
    ds = pydicom.dcmread(io.BytesIO(with_un_sequence()))

    sequence = ds[PHILIPS_SEQUENCE]
    assert sequence.VR == "SQ"
    assert [item.SOPInstanceUID for item in sequence.value] == [
        "1.3.46.670589.11.0.0.1",
        "1.3.46.670589.11.0.0.2",
    ]
    assert sequence.value[1].AnatomicRegionSequence[0].CodeMeaning == "Brain"
    assert ds.PixelData == pydicom.dcmread(MR_SAMPLE).PixelData


def test_an_undefined_length_un_sequence_is_walked_as_implicit_vr() -> None:
    data = with_un_sequence()

    header = read_header(io.BytesIO(data), len(data))

    assert header.modality == "MR"
    assert header.sop_instance_uid == pydicom.dcmread(MR_SAMPLE).SOPInstanceUID


def test_a_cut_inside_the_un_sequence_is_still_truncated() -> None:
    data = with_un_sequence()
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
    un = as_un(philips_sequence())
    # The element's own tag and length follow the dataset's byte order; its value does not.
    un = big_tag + b"UN\x00\x00" + un[8:]
    data = head.getvalue() + un + explicit(pixels, little=False)

    header = read_header(io.BytesIO(data), len(data))

    assert header.modality == "MR"
