"""A retrieval's body made on its own thread: buffers in order, a failure after what came
before it, a bound on what waits, a producer stopped when the client goes; and the multipart
body of stored files, where a file failing its check is never handed over whole."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import threading
from collections.abc import Iterator
from typing import cast

import pytest

from mutualrec.http.dicomweb import wado
from mutualrec.http.dicomweb.pump import Emit, produced
from mutualrec.imaging.records import InstanceFile
from mutualrec.services.study_reading import StudyReading
from mutualrec.violations import DataLost

_CALLER = contextvars.ContextVar("caller", default="nobody")


async def _collect(produce: object, depth: int = 3) -> list[bytes]:
    return [bytes(b) async for b in produced(produce, depth)]  # type: ignore[arg-type]


def test_buffers_arrive_in_order_in_the_callers_context() -> None:
    def produce(emit: Emit) -> None:
        for number in range(10):
            emit([f"{number}:".encode(), _CALLER.get().encode()])

    async def main() -> list[bytes]:
        _CALLER.set("li")
        return await _collect(produce)

    assert asyncio.run(main()) == [p for n in range(10) for p in (f"{n}:".encode(), b"li")]


def test_a_failure_comes_after_the_buffers_made_before_it() -> None:
    got: list[bytes] = []

    def produce(emit: Emit) -> None:
        emit([b"first"])
        raise DataLost("damaged")

    async def main() -> None:
        async for buffer in produced(produce):
            got.append(bytes(buffer))

    with pytest.raises(DataLost):
        asyncio.run(main())
    assert got == [b"first"]


def test_no_more_than_depth_buffers_wait() -> None:
    lock = threading.Lock()
    waiting = 0
    most = 0

    def produce(emit: Emit) -> None:
        nonlocal waiting, most
        for _ in range(200):
            with lock:
                waiting += 1
                most = max(most, waiting)
            emit([b"x"])

    async def main() -> int:
        nonlocal waiting
        taken = 0
        async for _buffer in produced(produce, depth=2):
            with lock:
                waiting -= 1
            taken += 1
            await asyncio.sleep(0)
        return taken

    assert asyncio.run(main()) == 200
    # One counted before its emit() blocks, at most two waiting in the queue.
    assert most <= 3


def test_leaving_early_stops_the_producer() -> None:
    finished = threading.Event()

    def produce(emit: Emit) -> None:
        try:
            while True:
                emit([b"more"])
        finally:
            finished.set()

    async def main() -> None:
        async for _buffer in produced(produce, depth=1):
            break
        # The producer is blocked in emit() or about to be: leaving woke it.
        await asyncio.get_running_loop().run_in_executor(None, finished.wait, 10)

    asyncio.run(main())
    assert finished.is_set()


class _Reading:
    """Files' bytes as the service gives them: chunks, then the check at the end."""

    def __init__(self, contents: dict[str, bytes], damaged: str = "") -> None:
        self.contents = contents
        self.damaged = damaged

    def read(self, instance: InstanceFile) -> Iterator[bytes]:
        data = self.contents[instance.sop_instance_uid]
        for start in range(0, len(data), 1 << 20):
            yield data[start : start + (1 << 20)]
        if instance.sop_instance_uid == self.damaged:
            raise DataLost(f"instance {instance.sop_instance_uid} is damaged")


def _file(uid: str, data: bytes) -> InstanceFile:
    return cast(
        InstanceFile,
        type("F", (), {"sop_instance_uid": uid, "sha256": hashlib.sha256(data).hexdigest()})(),
    )


def _sent(reading: _Reading, files: list[InstanceFile]) -> tuple[bytes, BaseException | None]:
    produce = wado._stored_parts(cast(StudyReading, reading), files, b"<head>", b"<end>")
    got = bytearray()

    async def main() -> None:
        async for buffer in produced(produce):
            got.extend(buffer)

    try:
        asyncio.run(main())
    except DataLost as failure:
        return bytes(got), failure
    return bytes(got), None


def test_stored_parts_frame_every_file() -> None:
    contents = {"a": b"A" * 3_000_000, "b": b"B" * 10, "c": b"C" * 5_000_000}
    files = [_file(uid, data) for uid, data in contents.items()]
    body, failure = _sent(_Reading(contents), files)
    assert failure is None
    assert body == b"".join(b"<head>" + contents[u] + b"\r\n" for u in "abc") + b"<end>"


def test_a_damaged_file_of_a_few_megabytes_is_never_handed_over() -> None:
    contents = {"a": b"A" * 5_000_000, "b": b"B" * 3_000_000}
    files = [_file(uid, data) for uid, data in contents.items()]
    body, failure = _sent(_Reading(contents, damaged="b"), files)
    assert failure is not None
    # Not even the CRLF closing a's part: it goes with b's head.
    assert body == b"<head>" + contents["a"]


def test_a_damaged_large_file_breaks_the_stream_before_its_part_ends() -> None:
    large = b"L" * (wado._BUFFER_LIMIT + 3_000_000)
    files = [_file("big", large)]
    body, failure = _sent(_Reading({"big": large}, damaged="big"), files)
    assert failure is not None
    assert body.startswith(b"<head>L")
    assert not body.endswith(b"\r\n")
    assert b"<end>" not in body


def test_a_damaged_file_among_many_breaks_the_stream_at_its_part() -> None:
    uids = [f"{n:02d}" for n in range(30)]
    contents = {uid: uid.encode() * 300_000 for uid in uids}
    files = [_file(uid, data) for uid, data in contents.items()]
    body, failure = _sent(_Reading(contents, damaged="17"), files)
    assert failure is not None
    whole = b"".join(b"<head>" + contents[u] + b"\r\n" for u in uids)
    # Whole parts of the files before it (handed over a few megabytes at a time), then the
    # break: nothing of the damaged file, nor of any after it.
    assert whole.startswith(body)
    assert any(body.endswith(b"<head>" + contents[u]) for u in uids[:17])
    assert b"17" * 10 not in body
    assert b"18" * 10 not in body
