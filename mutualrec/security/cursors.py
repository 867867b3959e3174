"""Signed paging cursors: opaque to clients, bound to one patient and one query."""

from __future__ import annotations

from typing import Any

import jwt

_ALGORITHM = "HS256"


class InvalidCursor(ValueError):
    """A page token that is not ours, was altered, or belongs to another patient or query."""


def sign_cursor(secret: bytes, audience: str, patient_key: str, query: str, key: Any) -> str:
    """A page token carrying ``key`` (where the next page starts) for this patient and query."""
    claims = {"aud": audience, "sub": patient_key, "f": query, "k": key}
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def open_cursor(secret: bytes, audience: str, patient_key: str, query: str, token: str) -> Any:
    """The key a page token carries; raises :class:`InvalidCursor` saying why it is refused."""
    try:
        claims = jwt.decode(token, secret, algorithms=[_ALGORITHM], audience=audience)
    except jwt.InvalidTokenError:
        raise InvalidCursor("the page token is malformed or was altered") from None
    if claims.get("sub") != patient_key:
        raise InvalidCursor("the page token was issued for another patient")
    if claims.get("f") != query:
        raise InvalidCursor("the page token was issued for other filters; send the same filters")
    return claims.get("k")
