"""Security headers on every response of the HTTP door, whatever answered it (a route, a
problem body, a 404), with the Content-Security-Policy chosen by path, here, in one place: the
API (JSON) the strictest; the web pages scripts and styles from this site only, never inline."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Nothing an API path answers is a page that loads anything, or may be framed.
API_POLICY = b"default-src 'none'; frame-ancestors 'none'"
# The pages: their own files only; no inline script, no plugin, no framing, no <base>, forms
# post back here only. Images: thumbnails from here, and the inline SVG of a QR code.
PAGE_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    b"object-src 'none'"
)
# The web pages' paths (exact, or a prefix ending in "/"); everything else is API.
PAGE_PATHS = frozenset({"/", "/signin", "/open", "/session", "/session/end", "/shares"})
PAGE_PREFIXES = ("/shares/", "/accesses", "/studies/", "/static/", "/language")

COMMON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    # Answers name patients' results: no cache keeps them (a route may say otherwise).
    (b"cache-control", b"no-store"),
)


def is_page(path: str) -> bool:
    """Whether ``path`` is one of the web pages' (or their files')."""
    return path in PAGE_PATHS or path.startswith(PAGE_PREFIXES)


def policy_for(path: str) -> bytes:
    """The Content-Security-Policy of responses under ``path``."""
    return PAGE_POLICY if is_page(path) else API_POLICY


def referrer_policy_for(path: str) -> bytes:
    """The pages name themselves to themselves only: under ``no-referrer`` a browser sends
    ``Origin: null`` with a form, and the same-origin check could not tell our forms from a
    forged one. (No page's URL holds a credential: share tokens stay in the fragment.)"""
    return b"same-origin" if is_page(path) else b"no-referrer"


class SecurityHeaders:
    """ASGI middleware adding :data:`COMMON_HEADERS` and the path's policy to every HTTP
    response (a header the route set itself is kept)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = (
            (b"content-security-policy", policy_for(path)),
            (b"referrer-policy", referrer_policy_for(path)),
            *COMMON_HEADERS,
        )

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((n, v) for n, v in headers if n not in names),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
