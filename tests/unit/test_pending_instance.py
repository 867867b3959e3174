"""An instance's bytes as received: kept chunk by chunk, joined and hashed when first read."""

from __future__ import annotations

import hashlib

from mutualrec.ingest import study_upload
from mutualrec.ingest.study_upload import PendingInstance

MiB = 1024 * 1024


def _received(chunks: list[bytes], max_bytes: int = 64 * MiB) -> PendingInstance:
    pending = PendingInstance(0, "a.dcm", max_bytes)
    for chunk in chunks:
        pending.write(chunk, 4 * MiB)
    return pending


def test_chunks_are_joined_and_hashed_in_order() -> None:
    chunks = [b"first", b"-", b"second" * 1000]
    pending = _received(chunks)
    whole = b"".join(chunks)
    assert pending.size == len(whole)
    assert pending.spool.read() == whole
    assert pending.sha256 == hashlib.sha256(whole).hexdigest()
    # Read again (the header walk, then the store): the same bytes from the start.
    assert pending.spool.read() == whole
    pending.close()


def test_hash_before_spool_and_empty_instance() -> None:
    pending = _received([b"abc", b"def"])
    assert pending.sha256 == hashlib.sha256(b"abcdef").hexdigest()
    assert pending.spool.read() == b"abcdef"
    empty = _received([])
    assert empty.spool.read() == b""
    assert empty.sha256 == hashlib.sha256(b"").hexdigest()


def test_a_large_instance_spills_to_a_file_with_the_same_bytes() -> None:
    chunk = bytes(range(256)) * 4096  # 1 MiB
    count = study_upload.SPOOL_IN_MEMORY_BYTES // len(chunk) + 3
    pending = _received([chunk] * count)
    assert pending._chunks is None  # spilled while arriving
    whole = chunk * count
    assert pending.sha256 == hashlib.sha256(whole).hexdigest()
    assert pending.spool.read() == whole
    pending.close()


def test_an_oversized_instance_is_marked_and_dropped() -> None:
    pending = _received([b"x" * 600, b"y" * 600], max_bytes=1000)
    assert pending.problem is not None
    assert pending.problem.reason == "INSTANCE_TOO_LARGE"
