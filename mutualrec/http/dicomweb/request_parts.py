"""A ``multipart/related`` request body read as it streams: each part becomes an instance's
chunks (the same :class:`Chunk` UploadStudy's messages become), never the whole body in memory.

Bounds: a part larger than ``max_part`` bytes or a body larger than ``max_body`` bytes ends the
request with :class:`TooLarge` (413); a body that is not multipart, or ends before its closing
boundary, with :class:`Rejected` (400). What was received whole before either is kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser
from starlette.requests import Request

from mutualrec.http.problems import Refusal
from mutualrec.services.study_upload import Chunk
from mutualrec.violations import Rejected, TooLarge

DICOM = "application/dicom"
# A part's data is handed on in pieces no larger than UploadStudy's chunks.
MAX_PIECE = 1024 * 1024


@dataclass
class _Parsed:
    """What the parser reported while it read one piece of the body."""

    chunks: list[Chunk] = field(default_factory=list)
    part: int = -1
    part_bytes: int = 0
    header_name: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    content_type: str = ""
    ended: bool = False


def part_name(position: int) -> str:
    """How outcomes and problems name a part: its position in the body, from 0."""
    return f"part[{position}]"


async def dicom_parts(
    request: Request, boundary: str, max_part: int, max_body: int
) -> AsyncIterator[Chunk]:
    """The chunks of the body's parts, each part ending with an ``end_of_instance`` chunk."""
    state = _Parsed()

    def begin() -> None:
        state.part += 1
        state.part_bytes = 0
        state.content_type = ""

    def header_field(data: bytes, start: int, end: int) -> None:
        state.header_name += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        state.header_value += data[start:end]

    def header_end() -> None:
        if bytes(state.header_name).strip().lower() == b"content-type":
            state.content_type = bytes(state.header_value).decode("latin-1").strip()
        state.header_name.clear()
        state.header_value.clear()

    def headers_finished() -> None:
        media_type = state.content_type.split(";", 1)[0].strip().lower()
        # PS3.18: every part of a request whose type is application/dicom is a Part 10 file.
        if media_type and media_type != DICOM:
            raise Refusal(
                415,
                f"{part_name(state.part)} is {media_type}: every part must be {DICOM}",
            )

    def data(data: bytes, start: int, end: int) -> None:
        state.part_bytes += end - start
        if state.part_bytes > max_part:
            raise TooLarge(f"{part_name(state.part)} is larger than {max_part} bytes")
        for piece in range(start, end, MAX_PIECE):
            state.chunks.append(
                Chunk(part_name(state.part), data[piece : min(end, piece + MAX_PIECE)], False)
            )

    def part_end() -> None:
        state.chunks.append(Chunk(part_name(state.part), b"", True))

    def ended() -> None:
        state.ended = True

    parser = MultipartParser(
        boundary.encode("latin-1"),
        {
            "on_part_begin": begin,
            "on_header_field": header_field,
            "on_header_value": header_value,
            "on_header_end": header_end,
            "on_headers_finished": headers_finished,
            "on_part_data": data,
            "on_part_end": part_end,
            "on_end": ended,
        },
    )
    received = 0
    async for piece in request.stream():
        received += len(piece)
        if received > max_body:
            raise TooLarge(f"the body is larger than {max_body} bytes")
        if state.ended:
            continue  # the epilogue after the closing boundary means nothing
        try:
            parser.write(piece)
        except MultipartParseError as error:
            raise Rejected.one(
                "the body is not a multipart/related body of the boundary its type names",
                "body",
                f"malformed near byte {received - len(piece) + max(error.offset, 0)}",
                "MALFORMED_MULTIPART",
            ) from None
        chunks, state.chunks = state.chunks, []
        for chunk in chunks:
            yield chunk
    if not state.ended:
        raise Rejected.one(
            "the body ends before its closing boundary",
            "body" if state.part < 0 else part_name(state.part),
            "the request was cut short, or its boundary is not the one its Content-Type names",
            "TRUNCATED_MULTIPART",
        )
