"""Frames of a stored instance as WADO-RS hands them out (PS3.18 8.7.3, 10.4.1.1.4): native
frames as their raw bytes, encapsulated ones as their compressed codestream, each with the
media type its transfer syntax has (PS3.18 Table 8.7.3-2).

Pure: a seekable file in, bytes out. Only the frames asked for are read: a native frame is
one seek and one read, an encapsulated one walks the fragments' item headers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Final

import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError

from mutualrec.ingest.pydicom_quiet import quiet_pydicom
from mutualrec.violations import Rejected

quiet_pydicom()

OCTET_STREAM = "application/octet-stream"
_NATIVE: Final = frozenset(
    {
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.1.99",
    }
)
# PS3.18 Table 8.7.3-2: the single-frame media type of each compressed transfer syntax.
MEDIA_TYPES: Final = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.100": "video/mpeg",
    "1.2.840.10008.1.2.4.102": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",
}
MAX_FRAMES_ASKED = 1000
_PIXEL_TAG_LE: Final = b"\xe0\x7f\x10\x00"
_UNDEFINED: Final = b"\xff\xff\xff\xff"


class NoFrames(Exception):
    """The instance holds no frames this module can hand out; the message says why."""


@dataclass(frozen=True, slots=True)
class FrameLayout:
    """What a frame request needs to know of an instance."""

    transfer_syntax: str
    number_of_frames: int
    media_type: str  # application/octet-stream for native frames

    @property
    def native(self) -> bool:
        """Whether frames are stored uncompressed."""
        return self.transfer_syntax in _NATIVE


def parse_frame_list(text: str) -> list[int]:
    """``1,3,5`` as frame numbers; :class:`Rejected` for anything else."""
    if not re.fullmatch(r"[0-9]{1,9}(,[0-9]{1,9})*", text):
        raise Rejected.one(
            "the frame list is invalid",
            "frames",
            "must be frame numbers from 1, separated by commas",
            "MALFORMED_FRAME_LIST",
        )
    numbers = [int(n) for n in text.split(",")]
    if len(numbers) > MAX_FRAMES_ASKED or min(numbers) < 1:
        raise Rejected.one(
            "the frame list is invalid",
            "frames",
            f"frame numbers start at 1; at most {MAX_FRAMES_ASKED} at once",
            "OUT_OF_RANGE",
        )
    return numbers


def _header(fp: BinaryIO) -> Dataset:
    try:
        return pydicom.dcmread(fp, stop_before_pixels=True, defer_size=1 << 20)
    except (InvalidDicomError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise NoFrames("the DICOM header could not be read") from exc


def _layout(header: Dataset) -> FrameLayout:
    syntax = str(header.file_meta.get("TransferSyntaxUID") or "")
    if "Rows" not in header or "Columns" not in header:
        raise NoFrames("the instance holds no image")
    frames = max(int(header.get("NumberOfFrames") or 1), 1)
    media = OCTET_STREAM if syntax in _NATIVE else MEDIA_TYPES.get(syntax)
    if media is None:
        raise NoFrames(f"frames of transfer syntax {syntax or '(none)'} cannot be served")
    return FrameLayout(syntax, frames, media)


def _native_frame_size(header: Dataset) -> int:
    bits = int(header.get("BitsAllocated") or 0)
    if bits not in (8, 16, 32, 64):
        # 1-bit frames are packed across frame boundaries: no byte range is a frame.
        raise NoFrames(f"native frames of {bits} bits allocated cannot be served")
    rows, columns = int(header.Rows), int(header.Columns)
    samples = int(header.get("SamplesPerPixel") or 1)
    return rows * columns * samples * bits // 8


def read_frames(fp: BinaryIO, numbers: Sequence[int]) -> tuple[FrameLayout, list[bytes]]:
    """The frames ``numbers`` (from 1) of the instance in ``fp``, in the order asked;
    :class:`Rejected` naming ``frames`` for a number past the last frame."""
    header = _header(fp)
    layout = _layout(header)
    beyond = [n for n in numbers if n > layout.number_of_frames]
    if beyond:
        raise Rejected.one(
            "the frame list is invalid",
            "frames",
            f"the instance has {layout.number_of_frames} frame(s); asked for {beyond[0]}",
            "NO_SUCH_FRAME",
        )
    tag, vr_or_length = fp.read(4), fp.read(4)
    if tag != _PIXEL_TAG_LE:
        raise NoFrames("the instance holds no pixel data")
    explicit = header.file_meta.get("TransferSyntaxUID") != "1.2.840.10008.1.2"
    length = fp.read(4) if explicit and vr_or_length[:2] in (b"OB", b"OW") else vr_or_length
    value_at = fp.tell()
    if layout.native:
        size = _native_frame_size(header)
        declared = int.from_bytes(length, "little")
        if length == _UNDEFINED or declared < size * layout.number_of_frames:
            raise NoFrames("the pixel data is shorter than its frames")
        frames = []
        for number in numbers:
            fp.seek(value_at + (number - 1) * size)
            frames.append(fp.read(size))
        return layout, frames
    if length != _UNDEFINED:
        raise NoFrames("compressed pixel data is not encapsulated")
    frames = []
    for number in numbers:
        fp.seek(value_at)
        try:
            frames.append(get_frame(fp, number - 1, number_of_frames=layout.number_of_frames))
        except (ValueError, KeyError, EOFError) as exc:
            raise NoFrames("the encapsulated pixel data could not be split into frames") from exc
    return layout, frames
