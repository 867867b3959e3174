"""Storage failures as the services report them: an outage is :class:`Unavailable` (try again
later); a value the index refuses is the request's own fault and is left to the door."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DataError, InterfaceError, OperationalError, SQLAlchemyError

from mutualrec.storage.objects import ObjectStoreError
from mutualrec.violations import Unavailable

# Failures of the object store or the index that end a call UNAVAILABLE; the server goes on.
STORAGE_FAILURES = (ObjectStoreError, OSError, SQLAlchemyError)
# The index out of reach: a connect refused, a connection it ended, a server shutting down.
UNREACHABLE = (OperationalError, InterfaceError)


def is_outage(failure: BaseException) -> bool:
    """Whether ``failure`` means storage is unreachable or busy (UNAVAILABLE: try again later),
    rather than a value the database refuses (a NUL, a number out of range): retried, that
    request would fail forever, so it is left to end INVALID_ARGUMENT instead."""
    return not isinstance(failure, DataError)


def is_unstorable(failure: BaseException) -> bool:
    """Whether ``failure`` is the index refusing a value of the request that no check caught
    (out of a column's range, a NUL): the caller's data, neither an outage nor a fault."""
    return isinstance(failure, DataError | OverflowError)


@contextmanager
def unavailable_on_outage(what: str, advice: str = "try again") -> Iterator[None]:
    """Raise :class:`Unavailable` saying ``what`` failed and ``advice`` when storage fails inside
    the block; a value the index refused propagates unchanged."""
    try:
        yield
    except STORAGE_FAILURES as failure:
        if not is_outage(failure):
            raise
        raise Unavailable(f"{what} ({failure.__class__.__name__}); {advice}") from failure


@contextmanager
def unavailable_when_unreachable(what: str, advice: str = "try again") -> Iterator[None]:
    """Raise :class:`Unavailable` saying ``what`` failed and ``advice`` when the index cannot be
    reached inside the block; any other failure (a statement the index refused) propagates
    unchanged, a fault rather than a reason to try again."""
    try:
        yield
    except UNREACHABLE as failure:
        raise Unavailable(f"{what} ({failure.__class__.__name__}); {advice}") from failure
