"""The one place where the services' domain errors (and the door's own refusals) become HTTP
statuses with an RFC 9457 ``application/problem+json`` body.

Field violations travel as the body's ``violations`` extension member: each with the ``field``
path into what was sent, a ``description`` and a stable ``reason`` code, as gRPC's BadRequest
carries them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from starlette.responses import JSONResponse

from mutualrec.violations import (
    Conflict,
    DataLost,
    DomainError,
    NotFound,
    Rejected,
    TooLarge,
    Unavailable,
    Violation,
    clip,
)

PROBLEM_JSON = "application/problem+json"
# A problem body repeats no caller's value at any length, and lists a bounded number of fields.
MAX_DETAIL = 400
MAX_VIOLATIONS = 50

# By class, most specific first, mirroring mutualrec.api.errors: a door never reads an error's
# text to pick a status.
_STATUSES: tuple[tuple[type[DomainError], int], ...] = (
    (Rejected, 400),
    (NotFound, 404),
    (Conflict, 409),
    (TooLarge, 413),
    (Unavailable, 503),
    (DataLost, 500),
)
_TITLES: Mapping[int, str] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Refusal(Exception):
    """A refusal of the HTTP door itself (no credential, wrong role, over a limit), with its
    status and, for 429 and 503, when to try again."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


def status_of(error: DomainError) -> int:
    """The HTTP status of ``error``'s class."""
    for kind, status in _STATUSES:
        if isinstance(error, kind):
            return status
    raise TypeError(f"no status for {type(error).__name__}")  # a new class without a mapping


def problem(
    status: int,
    detail: str,
    violations: Iterable[Violation] = (),
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """An RFC 9457 problem response."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": clip(detail, MAX_DETAIL),
    }
    listed = list(violations)
    if listed:
        body["violations"] = [
            {
                "field": clip(v.field, 200),
                "description": clip(v.description, MAX_DETAIL),
                "reason": v.reason,
            }
            for v in listed[:MAX_VIOLATIONS]
        ]
    body.update(extensions)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def problem_for(error: DomainError) -> JSONResponse:
    """``error`` as a problem response: its summary as the detail, its violations listed."""
    return problem(status_of(error), error.summary, error.violations)


def problem_for_refusal(refusal: Refusal) -> JSONResponse:
    """A door refusal as a problem response (``Retry-After`` when it says when to retry;
    ``WWW-Authenticate`` on 401, as RFC 9110 requires)."""
    headers: dict[str, str] = {}
    if refusal.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(refusal.retry_after + 0.499)))
    if refusal.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="mutualrec"'
    return problem(refusal.status, refusal.detail, headers=headers)
