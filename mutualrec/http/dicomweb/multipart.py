"""Content negotiation and multipart bodies of DICOMweb answers: the Accept header read as
PS3.18 8.7 uses it (media ranges with ``type`` and ``transfer-syntax`` parameters), and
``multipart/related`` bodies (RFC 2387) streamed part by part with the delimiters of RFC 2046.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from mutualrec.http.negotiation import weighted_items
from mutualrec.http.problems import Refusal

MULTIPART_RELATED = "multipart/related"
DICOM = "application/dicom"


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One media range of an Accept header, lower-cased, its parameters unquoted."""

    media_type: str
    parameters: dict[str, str] = field(default_factory=dict)
    quality: float = 1.0

    def covers(self, media_type: str) -> bool:
        """Whether this range's type (``*/*``, ``image/*``, exact) takes ``media_type``."""
        return _covers(self.media_type, media_type)

    def part_type_covers(self, media_type: str) -> bool:
        """Whether the ``type`` parameter (absent: anything) takes ``media_type``."""
        part = self.parameters.get("type")
        return part is None or _covers(part, media_type)


def _covers(pattern: str, media_type: str) -> bool:
    if pattern in ("*/*", "*"):
        return True
    major, _, minor = pattern.partition("/")
    wanted_major, _, wanted_minor = media_type.partition("/")
    return major == wanted_major and minor in ("*", wanted_minor)


def accepted(header: str | None) -> list[MediaRange]:
    """The media ranges of an Accept header, most preferred first (none given: anything);
    ranges of quality 0 are dropped."""
    if header is None or not header.strip():
        return [MediaRange("*/*")]
    ranges = []
    for position, item in enumerate(weighted_items(header)):
        if item.quality > 0:
            parameters = {
                name: value if name == "transfer-syntax" else value.lower()
                for name, value in item.parameters.items()
            }
            media = MediaRange(item.name, parameters, item.quality)
            ranges.append((-item.quality, position, media))
    return [media for _q, _p, media in sorted(ranges, key=lambda r: (r[0], r[1]))]


def not_acceptable(header: str | None, offered: str) -> Refusal:
    """A 406 naming what was asked and what this resource offers."""
    asked = (header or "")[:200]
    return Refusal(406, f"cannot answer {asked!r}; this resource offers {offered}")


def new_boundary() -> str:
    """A boundary no part's bytes will contain by chance."""
    return "mutualrec-" + secrets.token_hex(16)


def content_type(boundary: str, part_type: str, transfer_syntax: str = "") -> str:
    """The Content-Type of a multipart/related answer."""
    syntax = f"; transfer-syntax={transfer_syntax}" if transfer_syntax else ""
    return f'{MULTIPART_RELATED}; type="{part_type}"{syntax}; boundary={boundary}'


def part_head(boundary: str, part_type: str, location: str = "") -> bytes:
    """The delimiter and headers opening one part."""
    head = f"--{boundary}\r\nContent-Type: {part_type}\r\n"
    if location:
        head += f"Content-Location: {location}\r\n"
    return (head + "\r\n").encode("ascii")


def closing(boundary: str) -> bytes:
    """The close delimiter."""
    return f"--{boundary}--\r\n".encode("ascii")


def parts(boundary: str, bodies: Iterable[tuple[str, bytes]]) -> Iterator[bytes]:
    """A whole multipart body of small parts (``(content type, bytes)``)."""
    for part_type, body in bodies:
        yield part_head(boundary, part_type)
        yield body
        yield b"\r\n"
    yield closing(boundary)
