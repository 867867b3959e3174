"""Problems as pages for browsers: a request that accepts HTML gets the RFC 9457 problem of
whatever refused it rendered as a page in its language (an API client, asking for JSON, keeps
the problem body). A page a browser may not see without signing in sends it to the sign-in."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mutualrec.config import Settings
from mutualrec.http.problems import PROBLEM_JSON
from mutualrec.http.rendering import render_page


def accepts_html(scope: Scope) -> bool:
    """Whether the request names HTML among what it accepts (browsers do; API clients not)."""
    for name, value in scope.get("headers", []):
        if name == b"accept":
            return b"text/html" in value
    return False


class ProblemPages:
    """ASGI middleware turning problem bodies into pages for browsers."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not accepts_html(scope):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body = bytearray()

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if headers.get(b"content-type", b"").startswith(PROBLEM_JSON.encode()):
                    start = message
                    return
            elif message["type"] == "http.response.body" and start is not None:
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    page = self._page(scope, start, bytes(body))
                    await page(scope, receive, send)
                return
            await send(message)

        await self.app(scope, receive, capture)

    def _page(self, scope: Scope, start: Message, body: bytes) -> Response:
        request = Request(scope)
        status = int(start["status"])
        if status == 401 and scope["method"] == "GET":
            return RedirectResponse("/signin", status_code=303)
        try:
            problem: dict[str, Any] = json.loads(body)
        except ValueError:
            problem = {}
        response = render_page(
            request,
            self.settings,
            "problem.html",
            status=status,
            problem_status=status,
            title=str(problem.get("title", "")),
            detail=str(problem.get("detail", "")),
            violations=problem.get("violations", []),
        )
        for name, value in start.get("headers", []):
            if name in (b"retry-after", b"www-authenticate", b"allow"):
                response.headers[name.decode()] = value.decode("latin-1")
        return response
