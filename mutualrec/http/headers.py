"""Security headers on every response of the HTTP door, whatever answered it (a route, a
problem body, a 404): JSON answers get the strictest policy; the viewer's pages only what the
OHIF viewer needs, here, in one place."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    # Nothing the door answers is a page that loads anything, or may be framed.
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # Answers name patients' results: no cache keeps them.
    (b"cache-control", b"no-store"),
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
VIEWER_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", VIEWER_CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # The same files for everyone: revalidated (ETag), not re-sent, on every load.
    (b"cache-control", b"no-cache"),
)


def headers_for(path: str) -> tuple[tuple[bytes, bytes], ...]:
    """The security headers of a response to ``path``."""
    if path == VIEWER_PATH or path.startswith(VIEWER_PATH + "/"):
        return VIEWER_HEADERS
    return SECURITY_HEADERS


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

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
