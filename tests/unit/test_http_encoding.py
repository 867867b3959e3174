"""Which Accept-Encoding headers get gzip (RFC 9110 12.5.3), and gzip made piece by piece."""

from __future__ import annotations

import gzip
import os

import pytest

from mutualrec.http.encoding import GzipStream, accepts_gzip


@pytest.mark.parametrize(
    ("header", "gzip"),
    [
        ("gzip, deflate, br, zstd", True),  # Chromium's
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0.001", True),
        ("*", True),
        ("br, *;q=0.1", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0, *", False),  # named: its own weight decides
        ("*;q=0", False),
        ("gzip;q=x", False),  # an unreadable weight is no consent
        ("identity", False),
        ("br, zstd", False),
        ("", False),
        (None, False),
    ],
)
def test_gzip_is_sent_only_where_accepted(header: str | None, gzip: bool) -> None:
    assert accepts_gzip(header) is gzip


def test_a_stream_gzipped_piece_by_piece_inflates_to_the_pieces() -> None:
    pieces = [b"[", b'{"00080018": {"vr": "UI"}}' * 3_000, b",", os.urandom(70_000), b"]", b""]
    stream = GzipStream()
    packed = b"".join(stream.piece(p) for p in pieces) + stream.end()
    assert gzip.decompress(packed) == b"".join(pieces)
