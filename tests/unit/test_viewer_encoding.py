"""Which Accept-Encoding headers get the viewer's gzip copies (RFC 9110 12.5.3)."""

from __future__ import annotations

import pytest

from mutualrec.http.viewer import accepts_gzip


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
