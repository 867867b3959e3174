"""The Part 10 preamble and file meta of an instance: which transfer syntax its dataset is in.

Nearly every instance has the 128-byte preamble, ``DICM`` and a group 0002 of a handful of
short elements in Explicit VR Little Endian. Those are read here directly, in one pass over a
few hundred bytes; pydicom's reader builds a dataset and converts every element, which cost a
third of reading a whole header. Anything unusual (no preamble, an implicit-VR file meta some
old writers produce, an unexpected VR or length) goes to pydicom's reader, so unusual files are
read, or refused, exactly as before.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from typing import BinaryIO

from pydicom.filereader import _read_file_meta_info, read_preamble

from mutualrec.violations import Rejected

_INSTANCE = "instance"
_PREAMBLE = 128
_MAGIC = b"DICM"
_SOP_CLASS = 0x00020002
_TRANSFER_SYNTAX = 0x00020010
# tag group, tag element, VR, 2-byte length (or the 2 reserved bytes of a long VR).
_ELEMENT = struct.Struct("<HH2sH")
_LONG_LENGTH = struct.Struct("<L")
# The VRs group 0002 holds (PS3.10 7.1), by how their length is written; any other VR is left
# to pydicom. UL only with one value: a longer one would need converting.
_SHORT_VRS = frozenset({b"UL", b"UI", b"SH", b"AE", b"CS", b"LO", b"ST"})
_LONG_VRS = frozenset({b"OB", b"UR"})
# Group 0002 is a few hundred bytes: the bytes read at once. A longer one is read by pydicom.
_HEAD = 4096


@dataclass(frozen=True, slots=True)
class FileMeta:
    """What the file meta says, and where the dataset starts."""

    # Whether there was a file meta group at all (pre-Part 10 files have none).
    present: bool
    # Whether the 128-byte preamble and ``DICM`` were there.
    preamble: bool
    media_storage_sop_class_uid: str
    transfer_syntax_uid: str
    dataset_start: int


def not_dicom(description: str) -> Rejected:
    """The refusal of bytes that are not an instance at all."""
    return Rejected.one("not a readable DICOM instance", _INSTANCE, description, "NOT_DICOM")


def _text(value: bytes) -> str:
    return value.decode("latin-1").strip("\0 ")


def _read_directly(fp: BinaryIO, size: int) -> FileMeta | None:
    """The file meta of a file in the usual shape; None when it is not, to read it the long
    way."""
    fp.seek(0)
    head = fp.read(min(size, _HEAD))
    if head[_PREAMBLE : _PREAMBLE + 4] != _MAGIC:
        return None
    at = _PREAMBLE + 4
    values: dict[int, bytes] = {}
    while at + 8 <= len(head):
        group, element, vr, length = _ELEMENT.unpack_from(head, at)
        if group != 2:
            break
        if vr in _LONG_VRS:
            if at + 12 > len(head):
                return None
            (length,) = _LONG_LENGTH.unpack_from(head, at + 8)
            at += 12
        elif vr in _SHORT_VRS and (vr != b"UL" or length == 4):
            at += 8
        else:
            return None
        if at + length > len(head):
            return None
        values[group << 16 | element] = head[at : at + length]
        at += length
    else:
        # The head ended inside group 0002 (a truncated file, or a huge group).
        return None
    syntax = values.get(_TRANSFER_SYNTAX, b"")
    sop_class = values.get(_SOP_CLASS, b"")
    if b"\\" in syntax or b"\\" in sop_class:
        return None  # multi-valued: pydicom's reading decides what that means
    return FileMeta(bool(values), True, _text(sop_class), _text(syntax), at)


def _read_with_pydicom(fp: BinaryIO) -> FileMeta:
    fp.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            preamble = read_preamble(fp, force=True)
            meta = _read_file_meta_info(fp)
            # pydicom converts elements when first read: convert them here, where a corrupt
            # one (an unknown VR, say) is a refusal, not an error later on.
            for tag in list(meta.keys()):
                meta[tag]
        # Untrusted bytes make pydicom raise almost any exception type; whatever it is, the
        # bytes are not an instance we can read.
        except Exception as exc:
            raise not_dicom(f"cannot be parsed as DICOM: {exc}") from None
    return FileMeta(
        present=bool(meta),
        preamble=preamble is not None,
        media_storage_sop_class_uid=str(meta.get("MediaStorageSOPClassUID", "") or "").strip("\0 "),
        transfer_syntax_uid=str(meta.get("TransferSyntaxUID", "") or "").strip("\0 "),
        dataset_start=fp.tell(),
    )


def read_file_meta(fp: BinaryIO, size: int) -> FileMeta:
    """The preamble and file meta of the instance held in the seekable ``fp`` of ``size``
    bytes. Raises :class:`Rejected` (``NOT_DICOM``) when they cannot be read."""
    return _read_directly(fp, size) or _read_with_pydicom(fp)
