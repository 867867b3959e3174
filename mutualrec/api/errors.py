"""The one place where the services' domain errors become gRPC statuses."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from mutualrec.api.status import MAX_MESSAGE, bad_request_status
from mutualrec.violations import (
    Conflict,
    DataLost,
    DomainError,
    NotFound,
    Rejected,
    TooLarge,
    Unavailable,
    clip,
)

# By class, most specific first: a door never reads an error's text to pick a status.
_CODES: tuple[tuple[type[DomainError], grpc.StatusCode], ...] = (
    (Rejected, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
    (TooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (DataLost, grpc.StatusCode.DATA_LOSS),
)


def status_code(error: DomainError) -> grpc.StatusCode:
    """The status code of ``error``'s class."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    raise TypeError(f"no status for {type(error).__name__}")  # a new class without a mapping


def status_for(error: DomainError) -> grpc.Status:
    """``error`` as a status: its summary as the message and, when it names fields, a
    ``google.rpc.BadRequest`` listing them."""
    code = status_code(error)
    if error.violations:
        return bad_request_status(code, error.summary, error.violations)
    return _Plain(code, clip(error.summary, MAX_MESSAGE))


@dataclass(frozen=True)
class _Plain(grpc.Status):  # type: ignore[misc]
    """A status with a message and no details, as ``context.abort`` sends."""

    code: grpc.StatusCode
    details: str
    # Empty, not None: grpc's abort_with_status refuses None as metadata.
    trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()
