"""WADO-RS (PS3.18 10.4): studies, series and instances as stored (``multipart/related`` of
``application/dicom``, streamed), their metadata (DICOM JSON), frames, and rendered images.

The stored files are sent as they are: no transcoding. An Accept that allows only another
transfer syntax is answered 406, as PS3.18 8.7.2 says.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mutualrec.http.admission import peer_address
from mutualrec.http.dicomweb import multipart
from mutualrec.http.dicomweb.multipart import MediaRange, accepted, not_acceptable
from mutualrec.http.dicomweb.paths import only_parameters, path_uids
from mutualrec.http.dicomweb.pump import Buffer, Emit, produced
from mutualrec.http.dicomweb.qido import DICOM_JSON
from mutualrec.http.encoding import GzipStream, accepts_gzip
from mutualrec.imaging.frames import OCTET_STREAM, parse_frame_list
from mutualrec.imaging.records import InstanceFile
from mutualrec.imaging.thumbnails import RENDERED_TYPES
from mutualrec.runtime import Runtime
from mutualrec.security.api_keys import Principal
from mutualrec.services.study_reading import StudyReading
from mutualrec.violations import Rejected, Violation

# Bytes one hop to a worker thread gathers: a few CT slices, not a study.
_BATCH_BYTES = 4 * 1024 * 1024
# A retrieval's batch goes to the event loop once it holds this much, at the end of a file:
# a few CT slices, each already checked against its hash.
_BUFFER_BYTES = 4 * 1024 * 1024
# A file larger than this is handed over in pieces before its check ends; a mismatch then
# breaks the stream before that part's closing delimiter.
_BUFFER_LIMIT = 16 * 1024 * 1024
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
_NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", EXPLICIT_LITTLE})
_DEFAULT_QUALITY = 90


async def _files(
    runtime: Runtime, reading: StudyReading, request: Request, principal: Principal, resource: str
) -> list[InstanceFile]:
    study, series, instance = path_uids(request)
    return await runtime.run_blocking(
        reading.instances,
        principal,
        peer_address(request),
        resource,
        study,
        series,
        instance,
    )


async def _batched(
    runtime: Runtime, chunks: Iterator[bytes], gzipped: GzipStream | None = None
) -> AsyncIterator[bytes]:
    """``chunks`` (blocking to produce) pulled on worker threads a few megabytes at a time,
    the next batch read while the current one is sent; gzipped there too when ``gzipped``."""

    def gather() -> tuple[bytes, bool]:
        # One buffer per batch: the small pieces (part headers, delimiters) would otherwise
        # each cost the event loop a send.
        batch: list[bytes] = []
        size = 0
        ended = True
        for chunk in chunks:
            batch.append(chunk)
            size += len(chunk)
            if size >= _BATCH_BYTES:
                ended = False
                break
        data = b"".join(batch)
        if gzipped is not None:
            data = gzipped.piece(data) + (gzipped.end() if ended else b"")
        return data, ended

    pending = asyncio.ensure_future(runtime.run_blocking(gather))
    try:
        while True:
            batch, ended = await pending
            if not ended:
                pending = asyncio.ensure_future(runtime.run_blocking(gather))
            if batch:
                yield batch
            if ended:
                return
    finally:
        # The client went away (or a read failed): the batch being read is not wanted, and
        # the iterator it reads must not be used again.
        pending.cancel()


def _stored_parts(
    reading: StudyReading, files: Sequence[InstanceFile], head: bytes, closing: bytes
) -> Callable[[Emit], None]:
    """The multipart body of ``files`` as stored, in batches of a few megabytes: the chunks
    ``reading.read`` gives (from the store, or a checked copy in memory) go as they are, between
    small framing buffers. A batch is handed over only at the end of a file, so a file that
    fails its hash check (``reading.read`` raises at its end) is never sent; one larger than
    ``_BUFFER_LIMIT`` goes in pieces, and its mismatch breaks the stream before the delimiter
    that would close its part."""

    def produce(emit: Emit) -> None:
        batch: list[Buffer] = []
        held = 0
        framing = head
        for file in files:
            batch.append(framing)
            for chunk in reading.read(file):
                batch.append(chunk)
                held += len(chunk)
                if held >= _BUFFER_LIMIT:
                    emit(batch)
                    batch, held = [], 0
            # Its part's closing CRLF goes with the next part's head: sent after that part.
            framing = b"\r\n" + head
            if held >= _BUFFER_BYTES:
                emit(batch)
                batch, held = [], 0
        batch.append(b"\r\n" + closing)
        emit(batch)

    return produce


def _instance_syntax(ranges: Sequence[MediaRange], files: Sequence[InstanceFile]) -> bool:
    """Whether one of ``ranges`` takes every file as stored, as application/dicom parts."""
    for media in ranges:
        if media.covers(multipart.MULTIPART_RELATED) and media.part_type_covers(multipart.DICOM):
            wanted = media.parameters.get("transfer-syntax", "*")
            if wanted == "*" or all(f.transfer_syntax_uid == wanted for f in files):
                return True
    return False


async def retrieve(
    runtime: Runtime, reading: StudyReading, request: Request, principal: Principal
) -> Response:
    """A study, series or instance as its stored files."""
    only_parameters(request, ())
    files = await _files(runtime, reading, request, principal, "retrieval")
    header = request.headers.get("accept")
    if not _instance_syntax(accepted(header), files):
        raise not_acceptable(
            header, 'multipart/related; type="application/dicom" in the stored transfer syntax'
        )
    boundary = multipart.new_boundary()
    head = multipart.part_head(boundary, multipart.DICOM)
    # Known ahead from the index (a stored file that is not its recorded size fails its hash
    # check anyway): the client sees the whole size, and no chunked framing is needed.
    length = sum(len(head) + f.size_bytes + 2 for f in files) + len(multipart.closing(boundary))
    return StreamingResponse(
        produced(_stored_parts(reading, files, head, multipart.closing(boundary))),
        media_type=multipart.content_type(boundary, multipart.DICOM),
        headers={"Content-Length": str(length)},
    )


async def metadata(
    runtime: Runtime, reading: StudyReading, request: Request, principal: Principal
) -> Response:
    """The headers of a study's, series' or instance's files, as a DICOM JSON array."""
    only_parameters(request, ())
    header = request.headers.get("accept")
    if not any(r.covers(t) for r in accepted(header) for t in (DICOM_JSON, "application/json")):
        raise not_acceptable(header, DICOM_JSON)
    files = await _files(runtime, reading, request, principal, "metadata")

    def body() -> Iterator[bytes]:
        for position, file in enumerate(files):
            yield b"[" if position == 0 else b","
            yield reading.metadata(file)
        yield b"]"

    # A series' metadata is about 3 KB of JSON per instance, a tenth of that gzipped: on a
    # hospital's link, the wait between the viewer's start and its first frame. The body
    # echoes nothing the caller sent (no BREACH-style guessing through compressed lengths).
    headers = {"vary": "Accept-Encoding"}
    gzipped = None
    if accepts_gzip(request.headers.get("accept-encoding")):
        gzipped = GzipStream()
        headers["content-encoding"] = "gzip"
    return StreamingResponse(
        _batched(runtime, body(), gzipped), media_type=DICOM_JSON, headers=headers
    )


def _frame_answer(ranges: Sequence[MediaRange], media_type: str, syntax: str) -> str | None:
    """The transfer syntax a frames answer names, if one of ``ranges`` takes frames stored
    as ``media_type`` in ``syntax`` (native frames are the same bytes in implicit and explicit
    little endian); None if none does."""
    offered = EXPLICIT_LITTLE if syntax in _NATIVE_SYNTAXES else syntax
    for media in ranges:
        if not (media.covers(multipart.MULTIPART_RELATED) and media.part_type_covers(media_type)):
            continue
        wanted = media.parameters.get("transfer-syntax", "*")
        if wanted in ("*", offered, syntax):
            return offered
        if wanted == "" and media_type == OCTET_STREAM:
            return offered
    return None


async def frames(
    runtime: Runtime, reading: StudyReading, request: Request, principal: Principal
) -> Response:
    """Frames of one instance: raw bytes of native ones, codestreams of compressed ones."""
    only_parameters(request, ())
    numbers = parse_frame_list(str(request.path_params["frames"]))
    (file,) = await _files(runtime, reading, request, principal, "frames")
    found = await runtime.run_blocking(reading.frames, file, numbers)
    header = request.headers.get("accept")
    syntax = _frame_answer(accepted(header), found.media_type, found.transfer_syntax)
    if syntax is None:
        raise not_acceptable(
            header,
            f'multipart/related; type="{found.media_type}"; '
            f"transfer-syntax={found.transfer_syntax} (frames as stored)",
        )
    boundary = multipart.new_boundary()
    part_type = f"{found.media_type}; transfer-syntax={syntax}"
    return Response(
        b"".join(multipart.parts(boundary, ((part_type, f) for f in found.frames))),
        media_type=multipart.content_type(boundary, found.media_type, syntax),
    )


def _rendered_type(header: str | None) -> str:
    for media in accepted(header):
        for offered in RENDERED_TYPES:
            if media.covers(offered):
                return offered
    raise not_acceptable(header, " or ".join(RENDERED_TYPES))


def _rendering(request: Request) -> tuple[int, tuple[int, int] | None]:
    """The ``quality`` and ``viewport`` parameters (PS3.18 8.3.5.1)."""
    problems = []
    quality = _DEFAULT_QUALITY
    text = request.query_params.get("quality")
    if text is not None:
        if text.isdigit() and 1 <= int(text) <= 100:
            quality = int(text)
        else:
            problems.append(Violation("quality", "a whole number from 1 to 100", "OUT_OF_RANGE"))
    viewport = None
    text = request.query_params.get("viewport")
    if text is not None:
        sizes = text.split(",")
        if len(sizes) == 2 and all(s.isdigit() and 1 <= int(s) <= 4096 for s in sizes):
            viewport = (int(sizes[0]), int(sizes[1]))
        else:
            problems.append(
                Violation("viewport", "width,height in pixels, each 1 to 4096", "MALFORMED")
            )
    if problems:
        raise Rejected("the rendering parameters are invalid", problems)
    return quality, viewport


async def rendered(
    runtime: Runtime, reading: StudyReading, request: Request, principal: Principal
) -> Response:
    """One frame of an instance (the first, at instance level) as JPEG or PNG."""
    only_parameters(request, ("quality", "viewport", "accept"))
    quality, viewport = _rendering(request)
    header = request.query_params.get("accept") or request.headers.get("accept")
    media_type = _rendered_type(header)
    frame = 1
    if "frames" in request.path_params:
        numbers = parse_frame_list(str(request.path_params["frames"]))
        if len(numbers) != 1:
            raise Rejected.one(
                "the frame list is invalid", "frames", "render one frame at a time", "ONE_FRAME"
            )
        frame = numbers[0]
    (file,) = await _files(runtime, reading, request, principal, "rendering")
    image = await runtime.run_blocking(reading.rendered, file, frame, media_type, quality, viewport)
    return Response(image, media_type=media_type)
