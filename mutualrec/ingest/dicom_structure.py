"""A structural walk over a dataset's elements: proves the file is whole, collects a few values.

pydicom reads a header by seeking past large values, so a file cut inside its pixel data parses
"fine". Before storing an instance we walk every element's tag and length (reading headers only,
seeking past values) and require the walk to end exactly at the end of the file. The same walk
hands back the raw values of the few top-level attributes the index needs, so a header is read
once, with no per-element objects built.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import BinaryIO

UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
# Explicit VRs whose length field is 4 bytes after 2 reserved bytes (PS3.5 7.1.2).
_LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}
# Deep nesting is legal but rare; the cap stops a crafted file from exhausting the stack.
_MAX_DEPTH = 32
# Captured values are short strings (UIDs, codes, dates, descriptions).
_MAX_CAPTURED = 4096


class Truncated(ValueError):
    """The file ends before the structure its headers announce."""


def _describe(what: str | int) -> str:
    """``what`` as said in a refusal; an element's tag is formatted only then, not per element."""
    if isinstance(what, str):
        return what
    return f"element ({what >> 16:04X},{what & 0xFFFF:04X})"


def _read_exact(fp: BinaryIO, count: int, what: str | int) -> bytes:
    data = fp.read(count)
    if len(data) != count:
        raise Truncated(f"the file ends inside {_describe(what)} at byte {fp.tell()}")
    return data


# An element's first 8 bytes and a long VR's 4-byte length, by byte order (True: little endian):
# tag and 4-byte length (implicit VR, items and delimiters), or tag, VR and 2-byte length.
_LAYOUTS = {
    little: (
        struct.Struct(order + "HHL"),
        struct.Struct(order + "HH2sH"),
        struct.Struct(order + "L"),
    )
    for little, order in ((True, "<"), (False, ">"))
}


class _Walker:
    def __init__(
        self,
        fp: BinaryIO,
        size: int,
        *,
        implicit: bool,
        little: bool,
        capture: frozenset[int],
        on_element: Callable[[], None],
    ) -> None:
        self.fp = fp
        self.on_element = on_element
        self.size = size
        self.implicit = implicit
        self.little = little
        self.capture = capture
        self.captured: dict[int, bytes] = {}

    @property
    def little(self) -> bool:
        return self._little

    @little.setter
    def little(self, value: bool) -> None:
        # Precompiled layouts: an element's 8 first bytes in one read and one unpack (a walk
        # passes a hundred elements per instance, on every instance received).
        self._little = value
        self._tag_length, self._tag_vr_length, self._long_length = _LAYOUTS[value]

    def _skip(self, length: int, what: str | int) -> None:
        end = self.fp.tell() + length
        if end > self.size:
            raise Truncated(
                f"{_describe(what)} needs {length} bytes but the file ends at byte {self.size}"
            )
        self.fp.seek(end)

    def walk(self, *, until: int | None, depth: int) -> None:
        """Walk elements until EOF (top level) or the delimiter ``until`` (inside an item)."""
        if depth > _MAX_DEPTH:
            raise Truncated("sequences nested deeper than any real instance")
        fp = self.fp
        while True:
            # Every element starts with 8 bytes: tag and 4-byte length (implicit VR, or an item
            # delimiter), or tag, VR and 2-byte length (explicit VR; the 2 reserved bytes of a
            # long VR, whose 4-byte length follows).
            raw = fp.read(8)
            if len(raw) != 8:
                if not raw and until is None:
                    return
                where = "an element tag" if len(raw) < 4 else "an element's length"
                raise Truncated(f"the file ends inside {where} at byte {fp.tell()}")
            group, element, length = self._tag_length.unpack(raw)
            tag = group << 16 | element
            self.on_element()
            if tag in (_ITEM_DELIMITER, _SEQUENCE_DELIMITER):
                if tag == until:
                    return
                raise Truncated(f"unexpected delimiter {tag:08X} at byte {fp.tell() - 8}")
            vr = b""
            if not self.implicit:
                vr = raw[4:6]
                if vr in _LONG_VRS:
                    (length,) = self._long_length.unpack(_read_exact(fp, 4, "a length"))
                else:
                    length = self._tag_vr_length.unpack(raw)[3]
            if length == UNDEFINED_LENGTH and vr == b"UN":
                self._un_sequence_items(depth)
            elif length == UNDEFINED_LENGTH:
                # Only SQ, UN and encapsulated pixel data may have an undefined length, and all
                # three hold items up to a sequence delimiter.
                self._sequence_items(depth)
            elif depth == 0 and tag in self.capture and length <= _MAX_CAPTURED:
                self.captured[tag] = _read_exact(fp, length, tag)
            else:
                self._skip(length, tag)

    def _un_sequence_items(self, depth: int) -> None:
        """Items of an undefined-length UN element: a sequence whose VR the writer did not know.

        Routers without a vendor's private dictionary re-encode its sequences as UN; PS3.5 6.2.2
        says the value (items, their elements and the delimiters) is then Implicit VR Little
        Endian, whatever the dataset's transfer syntax.
        """
        implicit, little = self.implicit, self.little
        self.implicit, self.little = True, True
        try:
            self._sequence_items(depth)
        finally:
            self.implicit, self.little = implicit, little

    def _sequence_items(self, depth: int) -> None:
        """Items of an undefined-length sequence or encapsulated pixel data, to its delimiter."""
        while True:
            group, element, length = self._tag_length.unpack(
                _read_exact(self.fp, 8, "an item tag and length")
            )
            tag = group << 16 | element
            self.on_element()
            if tag == _SEQUENCE_DELIMITER:
                return
            if tag != _ITEM:
                raise Truncated(f"expected an item tag at byte {self.fp.tell() - 8}, got {tag:08X}")
            if length == UNDEFINED_LENGTH:
                self.walk(until=_ITEM_DELIMITER, depth=depth + 1)
            else:
                self._skip(int(length), "an item")


def walk_dataset(
    fp: BinaryIO,
    size: int,
    dataset_start: int,
    *,
    implicit: bool,
    little: bool,
    capture: frozenset[int] = frozenset(),
    on_element: Callable[[], None] = lambda: None,
) -> dict[int, bytes]:
    """Walk the dataset from ``dataset_start`` to ``size``; return the captured raw values.

    Raises :class:`Truncated` unless the dataset ends exactly at ``size``. ``capture`` names the
    top-level tags (as ``group << 16 | element``) whose values to return. ``on_element`` is
    called for every element, item and delimiter passed (and may stop the walk by raising).
    """
    fp.seek(dataset_start)
    walker = _Walker(
        fp, size, implicit=implicit, little=little, capture=capture, on_element=on_element
    )
    walker.walk(until=None, depth=0)
    return walker.captured


def inflate_dataset(
    fp: BinaryIO,
    dataset_start: int,
    out: BinaryIO,
    check: Callable[[int, int], None] = lambda _consumed, _inflated: None,
) -> int:
    """Inflate a deflated dataset into ``out``; return its size.

    Inflates in bounded blocks, so memory stays flat; raises :class:`Truncated` unless the
    compressed stream is whole. ``check(consumed, inflated)`` is called after every block with
    the compressed and inflated byte counts so far (and may stop the inflation by raising).
    """
    fp.seek(dataset_start)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    written = 0
    fed = 0
    try:
        while block := fp.read(1024 * 1024):
            fed += len(block)
            piece = inflater.decompress(block, 1024 * 1024)
            while True:
                out.write(piece)
                written += len(piece)
                check(fed - len(inflater.unconsumed_tail), written)
                if not inflater.unconsumed_tail:
                    break
                piece = inflater.decompress(inflater.unconsumed_tail, 1024 * 1024)
    except zlib.error as exc:
        raise Truncated(f"the deflated dataset is corrupt: {exc}") from None
    if not inflater.eof:
        raise Truncated("the deflated dataset ends before its compressed stream does")
    return written
