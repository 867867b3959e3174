"""What a browser brings besides a Bearer header: the session cookie, the CSRF token of a form,
the Origin of a state-changing request, urlencoded forms. Pure door helpers: no routes here.

CSRF: a form (or a script's request) carries a token that a cross-site page cannot read. With a
session it is bound to the session (an HMAC of its id); before sign-in it is a random cookie
repeated in the form (double submit). Every cookie is SameSite=Strict, and a state-changing
request must also come from our own origin where the browser says where it came from.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from mutualrec.config import Settings
from mutualrec.http.problems import Refusal
from mutualrec.violations import Rejected, TooLarge

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
# The random token of a browser not signed in yet (double submit).
PRESESSION_COOKIE = "mrcsrf"
# Forms are a few fields; a credential is at most a few kilobytes.
MAX_FORM_BYTES = 16 * 1024
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
_CSRF_LABEL = b"mutualrec csrf v1\0"


def secure_cookies(settings: Settings) -> bool:
    """Whether cookies are marked Secure: the door speaks TLS, or sits behind an https URL."""
    return settings.tls is not None or settings.http_public_url.startswith("https://")


def session_cookie_name(settings: Settings) -> str:
    """The session cookie's name; ``__Host-`` (Secure, Path=/, no Domain) under TLS."""
    return "__Host-mrsession" if secure_cookies(settings) else "mrsession"


def session_id_of(request: Request, settings: Settings) -> str | None:
    """The session id the request's cookie carries, if any."""
    value = request.cookies.get(session_cookie_name(settings), "")
    # A session id is 43 URL-safe characters; anything else names no session.
    if not value or len(value) > 64:
        return None
    return value


def set_cookie(
    response: Response,
    settings: Settings,
    name: str,
    value: str,
    max_age: int | None = None,
    *,
    script_readable: bool = False,
) -> None:
    """Set a SameSite=Strict, Path=/ cookie (Secure under TLS), HttpOnly unless a script of
    ours must read it (``script_readable``: nothing secret in it)."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=secure_cookies(settings),
        httponly=not script_readable,
        samesite="strict",
    )


def clear_cookie(response: Response, settings: Settings, name: str) -> None:
    """Remove a cookie set by :func:`set_cookie`."""
    response.delete_cookie(
        name, path="/", secure=secure_cookies(settings), httponly=True, samesite="strict"
    )


def session_csrf(secret: bytes, session_id: str) -> str:
    """The CSRF token of the session ``session_id``: a page of it can show it, no other can."""
    mac = hmac.new(secret, _CSRF_LABEL + session_id.encode("ascii", "replace"), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")


def new_presession_token() -> str:
    """A random token for a browser not signed in yet."""
    return secrets.token_urlsafe(24)


def expected_csrf(request: Request, settings: Settings) -> str | None:
    """The token a state-changing request of this browser must carry: its session's, else its
    pre-session cookie's; None when it has neither (then nothing can match)."""
    session_id = session_id_of(request, settings)
    if session_id is not None:
        return session_csrf(settings.token_secret, session_id)
    return request.cookies.get(PRESESSION_COOKIE) or None


def own_origin(request: Request, settings: Settings) -> str:
    """Our origin as the browser sees it: the public URL's, else the URL the request came to."""
    if settings.http_public_url:
        scheme, _, rest = settings.http_public_url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}".lower()
    return f"{request.url.scheme}://{request.url.netloc}".lower()


def check_same_origin(request: Request, settings: Settings) -> None:
    """Refuse a state-changing request a browser says came from another site. (A client that is
    no browser sends neither header; the CSRF token still stands in its way.)"""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise Refusal(403, "a cross-site request may not change anything here")
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() != own_origin(request, settings):
        raise Refusal(403, "the request's Origin is not this site")


def check_csrf(request: Request, settings: Settings, presented: str) -> None:
    """Refuse a state-changing request whose CSRF token is missing or wrong (or foreign)."""
    check_same_origin(request, settings)
    expected = expected_csrf(request, settings)
    if not presented or expected is None or not hmac.compare_digest(presented, expected):
        raise Refusal(403, "the form's CSRF token is missing or wrong: reload the page")


async def form_fields(request: Request) -> dict[str, str]:
    """The request's urlencoded form (first value of each field), read once and kept on the
    request; :class:`Rejected` for another body, :class:`TooLarge` beyond a few kilobytes."""
    cached = getattr(request.state, "form_fields", None)
    if isinstance(cached, dict):
        return cached
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        raise Rejected.one(
            "the body must be a form",
            "",
            f"Content-Type is {media_type or 'missing'}; send {FORM_MEDIA_TYPE}",
            "NOT_FORM",
        )
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > MAX_FORM_BYTES:
            raise TooLarge(f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        text = bytes(received).decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected.one("the form is not UTF-8", "", "not UTF-8", "BAD_ENCODING") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=50)
    except ValueError:
        raise Rejected.one("the form has too many fields", "", "over 50", "TOO_MANY") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if "\0" in value or "\0" in name:
            raise Rejected.one("the form holds a NUL character", name[:64], "NUL", "NUL_CHARACTER")
        fields.setdefault(name, value)
    request.state.form_fields = fields
    return fields


async def presented_csrf(request: Request) -> str:
    """The CSRF token a state-changing request carries: its header, else its form field."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == FORM_MEDIA_TYPE:
        return (await form_fields(request)).get(CSRF_FIELD, "")
    return ""
