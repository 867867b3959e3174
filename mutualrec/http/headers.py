"""Security headers on every response of the HTTP door, whatever answered it (a route, a
problem body, a 404), with the Content-Security-Policy chosen by path, here, in one place: the
API (JSON) the strictest; the web pages scripts and styles from this site only, never inline;
the viewer only what the OHIF viewer needs."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Nothing an API path answers is a page that loads anything, or may be framed.
API_POLICY = b"default-src 'none'; frame-ancestors 'none'"
# The pages: their own files only; no inline script, no plugin, no framing, no <base>, forms
# post back here only. Images: thumbnails from here, and the inline SVG of a QR code.
# default-src is 'self', not 'none', for one kind of request only: the history page's
# <link rel="prefetch"> of the viewer's files (static/viewer-prefetch.js). CSP 3 has no directive
# of its own for a prefetch (prefetch-src left the spec; Chromium never had it): the effective
# directive is default-src. (Chromium 156, tried: a same-origin prefetch passes under this policy
# and the old 'none' one alike, but a cross-origin one is refused as violating default-src, and
# default-src 'none' alone refuses both.) So that nothing else gains from it, every other fetch
# directive falling back to default-src is spelled out: 'none' for what no page loads (fonts,
# media, frames, workers, manifests, plugins), 'self' for what they do.
PAGE_POLICY = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; font-src 'none'; media-src 'none'; frame-src 'none'; "
    b"child-src 'none'; worker-src 'none'; manifest-src 'none'; object-src 'none'; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# Under /viewer/: the OHIF app from this origin only. What it truly needs beyond 'self':
# WebAssembly compilation for its image codecs ('wasm-unsafe-eval', not 'unsafe-eval'), workers
# it builds from blob: URLs, images and fonts it decodes to blob:/data: URLs, and the style
# elements its components inject. No inline script (the installer moved them to a file), no
# other origin, no framing.
VIEWER_PATH = "/viewer"
VIEWER_CSP = (
    b"default-src 'self'; "
    b"script-src 'self' 'wasm-unsafe-eval'; "
    b"worker-src 'self' blob:; "
    b"connect-src 'self'; "
    b"img-src 'self' data: blob:; "
    b"font-src 'self' data:; "
    b"style-src 'self' 'unsafe-inline'; "
    b"object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
# The web pages' paths (exact, or a prefix ending in "/"); everything else is API.
PAGE_PATHS = frozenset({"/", "/signin", "/open", "/session", "/session/end", "/shares"})
PAGE_PREFIXES = ("/shares/", "/accesses", "/studies/", "/static/", "/language")

_NOSNIFF = (b"x-content-type-options", b"nosniff")
# Answers name patients' results: no cache keeps them (a route may say otherwise).
_NO_STORE = (b"cache-control", b"no-store")

API_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", API_POLICY),
    (b"referrer-policy", b"no-referrer"),
    _NOSNIFF,
    _NO_STORE,
)
# The pages name themselves to themselves only: under ``no-referrer`` a browser sends
# ``Origin: null`` with a form, and the same-origin check could not tell our forms from a forged
# one. (No page's URL holds a credential: share tokens stay in the fragment.)
PAGE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", PAGE_POLICY),
    (b"referrer-policy", b"same-origin"),
    _NOSNIFF,
    _NO_STORE,
)
VIEWER_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", VIEWER_CSP),
    (b"referrer-policy", b"no-referrer"),
    _NOSNIFF,
    # The same files for everyone: revalidated (ETag), not re-sent, on every load.
    (b"cache-control", b"no-cache"),
)


def is_page(path: str) -> bool:
    """Whether ``path`` is one of the web pages' (or their files')."""
    return path in PAGE_PATHS or path.startswith(PAGE_PREFIXES)


def headers_for(path: str) -> tuple[tuple[bytes, bytes], ...]:
    """The security headers of a response to ``path``."""
    if path == VIEWER_PATH or path.startswith(VIEWER_PATH + "/"):
        return VIEWER_HEADERS
    return PAGE_HEADERS if is_page(path) else API_HEADERS


class SecurityHeaders:
    """ASGI middleware adding the path's security headers to every HTTP response (a header
    the route set itself is kept)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        added = headers_for(scope["path"])

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((n, v) for n, v in added if n not in names),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
