"""Reading a request's JSON body, bounded, with refusals that name what is wrong."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from mutualrec.violations import Rejected, TooLarge, Violation

# The whole body (what a field path of "" names).
WHOLE_BODY = ""


async def json_body(request: Request, max_bytes: int) -> Any:
    """The request's body parsed as JSON; :class:`TooLarge` beyond ``max_bytes``,
    :class:`Rejected` for a body that is not JSON."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise Rejected.one(
            "the body must be JSON",
            WHOLE_BODY,
            f"Content-Type is {media_type or 'missing'}; send application/json",
            "NOT_JSON",
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"the body is larger than {max_bytes} bytes")
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > max_bytes:
            raise TooLarge(f"the body is larger than {max_bytes} bytes")
    try:
        parsed = json.loads(bytes(received))
    except (ValueError, RecursionError) as exc:
        raise Rejected(
            "the body is not valid JSON",
            [Violation(WHOLE_BODY, f"not valid JSON ({exc.__class__.__name__})", "BAD_JSON")],
        ) from None
    try:
        violations = _nul_violations(parsed, "", [])
    except RecursionError:
        raise Rejected.one(
            "the body is nested too deeply", WHOLE_BODY, "JSON nested too deeply", "TOO_DEEP"
        ) from None
    if violations:
        raise Rejected("the body holds text no field may hold", violations)
    return parsed


# As the gRPC door refuses them: no index stores a NUL (PostgreSQL refuses it in text), and no
# field of a request has a use for one.
MAX_NUL_VIOLATIONS = 10


def _nul_violations(value: Any, path: str, found: list[Violation]) -> list[Violation]:
    """Where strings of ``value`` hold a NUL character (keys included), up to a few."""
    if len(found) >= MAX_NUL_VIOLATIONS:
        return found
    if isinstance(value, str):
        if "\0" in value:
            found.append(Violation(path, "holds a NUL character", "NUL_CHARACTER"))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            _nul_violations(item, f"{path}[{position}]", found)
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if "\0" in key:
                found.append(
                    Violation(where, "a member name holds a NUL character", "NUL_CHARACTER")
                )
            _nul_violations(item, where, found)
    return found
