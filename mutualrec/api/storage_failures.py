"""Which failures of the index are an outage, and which the request's own data caused."""

from __future__ import annotations

from sqlalchemy.exc import DataError


def is_outage(failure: BaseException) -> bool:
    """Whether ``failure`` means storage is unreachable or busy (UNAVAILABLE: try again later),
    rather than a value the database refuses (a NUL, a number out of range): retried, that
    request would fail forever, so it is left to end INVALID_ARGUMENT instead."""
    return not isinstance(failure, DataError)
