"""DICOM as PACS and routers send it: instances built from the samples for tests."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.sequence import Sequence

from tests.conftest import SAMPLES

MR_SAMPLE = sorted((SAMPLES / "mr_brain_hosp_b").glob("*.dcm"))[0]
# Philips MR writes its per-frame scan parameters in this private sequence; a router without
# Philips' private dictionary does not know (2005,140F) is SQ, so it writes it as UN.
PHILIPS_CREATOR = "Philips MR Imaging DD 005"
PHILIPS_SEQUENCE = 0x2005140F


def philips_sequence() -> DataElement:
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


def as_un(element: DataElement) -> bytes:
    """The element as a router re-encodes it in Explicit VR Little Endian: VR UN, undefined
    length, the value (items, delimiters) kept in Implicit VR Little Endian."""
    implicit = DicomBytesIO()
    implicit.is_little_endian = True
    implicit.is_implicit_VR = True
    write_data_element(implicit, element)
    raw = implicit.getvalue()
    assert raw[4:8] == b"\xff\xff\xff\xff"  # undefined length
    return raw[:4] + b"UN\x00\x00" + raw[4:]


def explicit(element: DataElement, *, little: bool = True) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian = little
    buffer.is_implicit_VR = False
    write_data_element(buffer, element)
    return buffer.getvalue()


def with_un_sequence(path: Path = MR_SAMPLE) -> bytes:
    """An instance with the Philips private block added, its sequence as a router writes it."""
    ds = pydicom.dcmread(path)
    pixels = ds["PixelData"]
    del ds.PixelData
    ds.add_new(0x20050014, "LO", PHILIPS_CREATOR)
    head = io.BytesIO()
    ds.save_as(head, enforce_file_format=True)
    # (2005,140F) sorts after every element of the sample but before the pixel data.
    assert max(int(element.tag) for element in ds) < PHILIPS_SEQUENCE
    return head.getvalue() + as_un(philips_sequence()) + explicit(pixels)


def rewritten(path: Path, **changes: str | None) -> bytes:
    """A sample instance with attributes set (None: removed), in its own transfer syntax."""
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about ACR-NEMA dates; they are the point
        for keyword, value in changes.items():
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
