"""The DICOM JSON model (PS3.18 F.2) written straight from a Part 10 file's header bytes.

A viewer opening a study asks for the metadata of every instance at once; building each one
through pydicom (a ``Dataset``, a ``DataElement`` per attribute, its validation, then
``to_json_dict``) costs milliseconds per instance. This walker reads the same bytes once and
writes the same answer, with the same rules as :func:`~mutualrec.imaging.dicom_json.metadata_json`
(pydicom's under strict reading): values decoded, split and stripped as pydicom does, numbers as
JSON numbers, bulk data and pixel data left out, and every value pydicom would check checked
by pydicom's own validators.

It handles what PACS send nearly always: Explicit and Implicit VR Little Endian datasets (the
dataset of every compressed transfer syntax is Explicit VR Little Endian) in a character set
decoded without ISO 2022 escapes (GB18030, UTF-8, Latin-1...). For anything else (big endian,
deflated, an explicit UN, an ambiguous or unknown implicit VR, a value pydicom would reject, an
escape sequence, a header longer than the bytes given) :func:`raw_metadata_json` answers None
and the caller builds the answer through pydicom: the answer is never a different one.
"""

from __future__ import annotations

import base64
import functools
import json
import struct
from collections.abc import Callable
from typing import Any

from pydicom import config
from pydicom.charset import convert_encodings, python_encoding
from pydicom.datadict import dictionary_VR, private_dictionary_VR
from pydicom.dataset import Dataset

# The "US or SS" attributes pydicom settles by Pixel Representation (its list, so the two
# answers agree on which).
from pydicom.filewriter import _AMBIGUOUS_US_SS_TAGS
from pydicom.valuerep import is_valid_ds, validate_value

from mutualrec.imaging.dicom_json import INLINE_BINARY_MAX, PIXEL_TAGS, metadata_json

_EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
_IMPLICIT_LITTLE = "1.2.840.10008.1.2"
# Encapsulated (compressed) syntaxes: the dataset is Explicit VR Little Endian (PS3.5 A.4).
# Deflated (1.2.840.10008.1.2.1.99) and big endian (1.2.840.10008.1.2.2) are not among them.
_EXPLICIT_FAMILIES = ("1.2.840.10008.1.2.4.", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.8.")
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_CHARSET_TAG = 0x00080005
_PIXEL_REPRESENTATION = 0x00280103
# pydicom adds 65536 to a negative first value of these (SS) descriptors.
_LUT_DESCRIPTORS = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})
# VRs whose text is decoded in the instance's character set.
_CHARSET_VRS = frozenset({"SH", "LO", "UC", "ST", "LT", "UT", "PN"})
# Explicit VRs whose length field is 4 bytes after 2 reserved bytes (PS3.5 7.1.2).
_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
# Binary values: base64 inline below the threshold pydicom is given (4/3 of INLINE_BINARY_MAX
# in base64 characters, i.e. at most this many bytes), bulk data (left out) above it.
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
_INLINE_MAX = (INLINE_BINARY_MAX * 4 // 3 // 4) * 3
# Strings of the default repertoire, decoded as Latin-1 and never validated on reading.
_PLAIN_VRS = frozenset({"AS", "CS", "DA", "DT", "TM"})
# Text in the instance's character set, one value per backslash, each validated.
_MULTI_TEXT_VRS = frozenset({"SH", "LO", "UC"})
# Text in the instance's character set, backslashes included, validated whole.
_SINGLE_TEXT_VRS = frozenset({"ST", "LT", "UT"})
_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
# Sequences nest a few levels in real instances; the cap bounds a crafted file's recursion.
_MAX_DEPTH = 16
_LATIN1 = "latin-1"


class _Unhandled(Exception):
    """The fast path does not answer for this header: pydicom's path does."""


class _Reader:
    """A walk over one dataset's bytes, every element turned into its DICOM JSON attribute."""

    def __init__(self, data: bytes, *, implicit: bool, complete: bool) -> None:
        self.data = data
        self.implicit = implicit
        # True when ``data`` is the whole file: its end then ends the dataset.
        self.complete = complete

    def _need(self, position: int, count: int) -> None:
        if position + count > len(self.data):
            # A header longer than the prefix read (or a file cut short): pydicom decides.
            raise _Unhandled("the bytes end inside an element")

    def dataset(
        self, position: int, end: int | None, encodings: list[str], depth: int
    ) -> tuple[dict[str, Any], int]:
        """Elements from ``position`` to ``end`` (None: to an item delimiter, or for the top
        level to the pixel data or the end of the file), as DICOM JSON, and where they end."""
        if depth > _MAX_DEPTH:
            raise _Unhandled("sequences nested too deep")
        data = self.data
        out: dict[str, Any] = {}
        creators: dict[int, str] = {}
        # Pixel Representation, which settles an implicit "US or SS" after it.
        signed: bool | None = None
        previous = -1
        while True:
            if end is not None and position >= end:
                if position != end:
                    raise _Unhandled("an element runs past its item")
                return out, position
            if depth == 0 and position == len(data) and self.complete:
                return out, position
            self._need(position, 8)
            group, element = struct.unpack_from("<HH", data, position)
            tag = group << 16 | element
            if tag == _ITEM_END:
                if end is not None or depth == 0:
                    raise _Unhandled("an item delimiter where none belongs")
                return out, position + 8
            if depth == 0 and tag in PIXEL_TAGS:
                # pydicom's header read stops here (stop_before_pixels).
                return out, position
            if tag <= previous or group == 0x0002 or group == 0xFFFE:
                raise _Unhandled("elements out of order, or misplaced")
            previous = tag
            if self.implicit:
                vr = self._implicit_vr(tag, creators)
                if vr == "US or SS" and signed is not None and tag in _AMBIGUOUS_US_SS_TAGS:
                    vr = "SS" if signed else "US"
                (length,) = struct.unpack_from("<L", data, position + 4)
                position += 8
            else:
                vr = data[position + 4 : position + 6].decode(_LATIN1)
                if vr in _LONG_VRS:
                    self._need(position, 12)
                    (length,) = struct.unpack_from("<L", data, position + 8)
                    position += 12
                else:
                    (length,) = struct.unpack_from("<H", data, position + 6)
                    position += 8
            if depth == 0 and tag < _CHARSET_TAG and (vr in _CHARSET_VRS or vr == "SQ"):
                # pydicom decodes it with the character set named after it.
                raise _Unhandled("text before the character set")
            key = f"{tag:08X}"
            if vr == "SQ":
                items, position = self._sequence(position, length, encodings, depth)
                out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
                continue
            if length == _UNDEFINED:
                raise _Unhandled("an undefined length outside a sequence")
            self._need(position, length)
            raw = data[position : position + length]
            position += length
            if tag == _CHARSET_TAG and depth > 0:
                raise _Unhandled("a character set inside an item")
            if tag in PIXEL_TAGS:
                continue
            if tag in _LUT_DESCRIPTORS and vr == "SS":
                raise _Unhandled("an SS lookup table descriptor")
            attribute = _attribute(vr, raw, encodings)
            if attribute is not None:
                out[key] = attribute
            if group & 1 and 0x10 <= element <= 0xFF:
                creators[tag] = raw.decode(_LATIN1, "replace")
            if tag == _CHARSET_TAG:
                encodings = _encodings(raw)
            elif tag == _PIXEL_REPRESENTATION and depth == 0 and attribute is not None:
                # Items (depth > 0) leave signed None: pydicom looks up through the ancestors.
                # An empty one too: pydicom then guesses from what else the dataset holds.
                value = attribute.get("Value")
                signed = None if not value else value[0] != 0

    def _implicit_vr(self, tag: int, creators: dict[int, str]) -> str:
        group, element = tag >> 16, tag & 0xFFFF
        if group & 1:
            if 0x10 <= element <= 0xFF:
                return "LO"
            creator = creators.get(group << 16 | element >> 8)
            if not creator or not element & 0xFF00:
                raise _Unhandled("a private element without its creator")
            try:
                vr = private_dictionary_VR(tag, creator.rstrip("\x00 "))
            except KeyError:
                # pydicom reads it as UN; whether an undefined length holds items is its call.
                raise _Unhandled("an unknown private element in implicit VR") from None
        else:
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                raise _Unhandled("an element the dictionary does not know") from None
        if (" " in vr and vr != "US or SS") or vr == "UN":
            # "OB or OW" and the like: pydicom settles these from other attributes.
            raise _Unhandled(f"an ambiguous implicit VR {vr}")
        return str(vr)

    def _sequence(
        self, position: int, length: int, encodings: list[str], depth: int
    ) -> tuple[list[dict[str, Any]], int]:
        data = self.data
        end = None if length == _UNDEFINED else position + length
        items: list[dict[str, Any]] = []
        while True:
            if end is not None and position >= end:
                if position != end:
                    raise _Unhandled("an item runs past its sequence")
                return items, position
            self._need(position, 8)
            tag, item_length = struct.unpack_from("<LL", data, position)
            tag = (tag & 0xFFFF) << 16 | tag >> 16
            position += 8
            if tag == _SEQUENCE_END:
                if end is not None:
                    raise _Unhandled("a sequence delimiter in a defined-length sequence")
                return items, position
            if tag != _ITEM:
                raise _Unhandled("something other than an item in a sequence")
            item_end = None if item_length == _UNDEFINED else position + item_length
            if item_end is not None:
                self._need(position, item_length)
            item, position = self.dataset(position, item_end, encodings, depth + 1)
            items.append(item)


def _encodings(raw: bytes) -> list[str]:
    terms = raw.decode(_LATIN1).rstrip(" \x00").split("\\")
    if not any(terms):
        # An empty Specific Character Set: the default repertoire, as pydicom reads it.
        return ["iso8859"]
    if any(term.strip() not in python_encoding for term in terms if term.strip()):
        raise _Unhandled("a character set pydicom would have to guess")
    return list(convert_encodings([term.strip() for term in terms]))


def _text(raw: bytes, encodings: list[str]) -> str:
    if b"\x1b" in raw:
        raise _Unhandled("ISO 2022 escape sequences")
    try:
        return raw.decode(encodings[0])
    except (UnicodeError, LookupError):
        raise _Unhandled("text the character set does not decode") from None


# A study repeats most values from instance to instance (names, UIDs, codes, spacing).
@functools.lru_cache(maxsize=8192)
def _checked(vr: str, value: str) -> str:
    try:
        validate_value(vr, value, config.RAISE)
    except ValueError:
        # pydicom's strict reading drops such an element: its path says which.
        raise _Unhandled(f"a value pydicom rejects for VR {vr}") from None
    return value


def _values(vr: str, raw: bytes, encodings: list[str]) -> list[Any]:
    """The element's values as pydicom's JSON writes them ([] when empty)."""
    if vr in _PLAIN_VRS:
        values = raw.decode(_LATIN1).rstrip(" \x00").split("\\")
        return [] if values == [""] else values
    if vr in _MULTI_TEXT_VRS:
        values = [_checked(vr, v).rstrip("\x00 ") for v in _text(raw, encodings).split("\\")]
        return [] if values == [""] else values
    if vr in _SINGLE_TEXT_VRS:
        text = _checked(vr, _text(raw, encodings)).rstrip("\x00 ")
        return [text] if text else []
    if vr == "PN":
        return _person_names(raw, encodings)
    if vr == "UI":
        values = raw.decode(_LATIN1).rstrip("\x00 ").split("\\")
        if values == [""]:
            return []
        return [_checked("UI", v) for v in values]
    if vr == "IS":
        return _integers(raw)
    if vr == "DS":
        return _decimals(raw)
    if vr == "AE":
        values = [v.strip() for v in raw.decode(_LATIN1).split("\\")]
        return [] if values == [""] else values
    if vr == "UR":
        text = raw.decode(_LATIN1).rstrip()
        return [text] if text else []
    if vr == "AT":
        if len(raw) % 4:
            raise _Unhandled("an AT value of a length not a multiple of 4")
        pairs = struct.unpack(f"<{len(raw) // 2}H", raw)
        return [f"{pairs[i]:04X}{pairs[i + 1]:04X}" for i in range(0, len(pairs), 2)]
    code = _NUMBERS.get(vr)
    if code is None:
        raise _Unhandled(f"VR {vr!r}")
    size = struct.calcsize("<" + code)
    if len(raw) % size:
        raise _Unhandled(f"a {vr} value of a length not a multiple of {size}")
    numbers = struct.unpack(f"<{len(raw) // size}{code}", raw)
    return [float(n) for n in numbers] if code in "fd" else list(numbers)


def _person_names(raw: bytes, encodings: list[str]) -> list[dict[str, str]]:
    text = _text(raw.rstrip(b"\x00 "), encodings)
    if not text:
        return []
    names = []
    for value in text.split("\\"):
        _checked("PN", value)
        try:
            # pydicom checks the name again as encoded (component lengths in bytes).
            validate_value("PN", value.encode(encodings[0]), config.RAISE)
        except (ValueError, UnicodeError, LookupError):
            raise _Unhandled("a name pydicom rejects") from None
        groups = value.split("=")
        while groups and not groups[-1]:
            groups.pop()
        if not groups:
            raise _Unhandled("an empty name among several")
        name = {"Alphabetic": groups[0]}
        if len(groups) > 1:
            name["Ideographic"] = groups[1]
        if len(groups) > 2:
            name["Phonetic"] = groups[2]
        names.append(name)
    return names


def _integers(raw: bytes) -> list[int]:
    values = raw.decode(_LATIN1).rstrip(" \x00").split("\\")
    if values == [""]:
        return []
    numbers = []
    for value in values:
        if not value.strip():
            raise _Unhandled("an empty IS value among several")
        _checked("IS", value)
        try:
            number = int(value)
        except ValueError:
            # "1.0" and the like: pydicom's IS keeps them as it sees fit.
            raise _Unhandled("an IS value written as a decimal") from None
        if not -(2**31) <= number < 2**31:
            raise _Unhandled("an IS value beyond 32 bits")
        numbers.append(number)
    return numbers


def _decimals(raw: bytes) -> list[float]:
    values = raw.decode(_LATIN1).strip().rstrip(" \x00").split("\\")
    if values == [""]:
        return []
    numbers = []
    for value in values:
        numbers.append(_decimal(value.strip()))
    return numbers


@functools.lru_cache(maxsize=8192)
def _decimal(text: str) -> float:
    if not text or len(text) > 16 or not is_valid_ds(text):
        raise _Unhandled("a DS value pydicom rejects or keeps as text")
    return float(text)


def _attribute(vr: str, raw: bytes, encodings: list[str]) -> dict[str, Any] | None:
    """One attribute in DICOM JSON; None when it is bulk data (left out)."""
    if vr in _BINARY_VRS:
        if len(raw) > _INLINE_MAX:
            return None
        if not raw:
            return {"vr": vr}
        return {"vr": vr, "InlineBinary": base64.b64encode(raw).decode("ascii")}
    values = _values(vr, raw, encodings)
    return {"vr": vr, "Value": values} if values else {"vr": vr}


def _meta(data: bytes) -> tuple[str, int]:
    """The file's transfer syntax and where its dataset starts (after the preamble, "DICM"
    and the group 2 file meta information, always Explicit VR Little Endian)."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise _Unhandled("no Part 10 preamble")
    position = 132
    syntax = ""
    while position + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, position)
        if group != 0x0002:
            break
        vr = data[position + 4 : position + 6].decode(_LATIN1)
        if vr in _LONG_VRS:
            if position + 12 > len(data):
                break
            (length,) = struct.unpack_from("<L", data, position + 8)
            start = position + 12
        else:
            (length,) = struct.unpack_from("<H", data, position + 6)
            start = position + 8
        if length == _UNDEFINED:
            raise _Unhandled("an undefined length in the file meta information")
        if element == 0x0010:
            syntax = data[start : start + length].decode(_LATIN1).rstrip("\x00 ")
        position = start + length
    if position > len(data):
        raise _Unhandled("the bytes end inside the file meta information")
    return syntax, position


def raw_metadata_json(data: bytes, *, complete: bool) -> dict[str, Any] | None:
    """One instance's metadata in the DICOM JSON model, from the first bytes of its Part 10 file
    (``complete``: they are the whole file), equal to what
    :func:`~mutualrec.imaging.dicom_json.metadata_json` makes of its pydicom header; None when
    this walker does not handle the file (the caller then uses pydicom's path)."""
    if config.datetime_conversion or config.use_DS_numpy or config.use_IS_numpy:
        # pydicom set to read values as other types than the ones this walk reproduces.
        return None
    try:
        syntax, start = _meta(data)
        if syntax == _IMPLICIT_LITTLE:
            implicit = True
        elif syntax == _EXPLICIT_LITTLE or syntax.startswith(_EXPLICIT_FAMILIES):
            implicit = False
        else:
            return None
        if implicit and data[start + 4 : start + 6].isalpha():
            # A VR where a length belongs: the file is explicit whatever its meta says, and
            # pydicom reads it as such.
            return None
        reader = _Reader(data, implicit=implicit, complete=complete)
        found, _ = reader.dataset(start, None, ["iso8859"], 0)
        return found
    except (_Unhandled, struct.error, UnicodeError):
        return None


def instance_metadata(data: bytes, *, complete: bool, header: Callable[[], Dataset]) -> bytes:
    """One instance's metadata as the UTF-8 DICOM JSON a WADO-RS answer holds, from the first
    bytes of its file (``complete``: the whole file); ``header`` gives its pydicom header for
    what the fast walk does not handle."""
    built = raw_metadata_json(data, complete=complete)
    if built is None:
        built = metadata_json(header())
    return json.dumps(built, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
