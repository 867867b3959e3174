"""DICOM instances that cost far more to read than their size: made here, never shipped."""

from __future__ import annotations

import zlib
from pathlib import Path

import pydicom
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

# One empty private element, explicit VR little endian: (0011,0010) LO, length 0.
EMPTY_ELEMENT = b"\x11\x00\x10\x00LO\x00\x00"


def _encoded(dataset: pydicom.Dataset) -> bytes:
    body = DicomBytesIO()
    body.is_little_endian = True
    body.is_implicit_VR = False
    write_dataset(body, dataset)
    return body.getvalue()


def padded_instance(sample: Path, empty_elements: int, *, deflated: bool) -> bytes:
    """``sample``'s header (a valid instance: its UIDs, patient and study) followed by
    ``empty_elements`` empty elements, as Deflated Explicit VR Little Endian or, undeflated, as
    Explicit VR Little Endian. Deflated, a few million elements take some tens of KB."""
    dataset = pydicom.dcmread(sample, stop_before_pixels=True)
    dataset.file_meta.TransferSyntaxUID = (
        DeflatedExplicitVRLittleEndian if deflated else ExplicitVRLittleEndian
    )
    raw = _encoded(dataset) + EMPTY_ELEMENT * empty_elements
    if deflated:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        raw = compressor.compress(raw) + compressor.flush()
    meta = DicomBytesIO()
    meta.is_little_endian = True
    meta.is_implicit_VR = False
    write_file_meta_info(meta, dataset.file_meta)
    return b"\0" * 128 + b"DICM" + meta.getvalue() + raw
