"""Which HTTP requests a browser made ahead of its user (Fetch's Sec-Purpose header)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from mutualrec.http.admission import is_ahead


def _request(*headers: tuple[bytes, bytes]) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": list(headers)})


@pytest.mark.parametrize(
    ("purpose", "ahead"),
    [
        (b"prefetch;prerender", True),
        (b"prefetch", True),
        (b"prefetch;anonymous-client-ip", True),
        (b" prefetch ; prerender", True),
        (b"prerender", False),
        (b"", False),
        (b"prefetch-not", False),
    ],
)
def test_sec_purpose_prefetch_with_or_without_parameters_is_ahead(
    purpose: bytes, ahead: bool
) -> None:
    assert is_ahead(_request((b"sec-purpose", purpose))) is ahead


def test_a_request_without_sec_purpose_is_the_users_own() -> None:
    assert is_ahead(_request()) is False
