"""Security headers on every response of the HTTP door, whatever answered it (a route, a
problem body, a 404): the door serves JSON today, so the strictest policy applies; pages to come
loosen only what they need, here, in one place."""

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


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((n, v) for n, v in SECURITY_HEADERS if n not in names),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
