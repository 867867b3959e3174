"""CORS for the CDS Hooks services only: CDS Hooks 2.0 asks services to allow browser-based
CDS clients (an EHR's web front end) to call them. Their credential is a bearer JWT, never a
cookie, so any origin may call; the rest of the door (pages, to come) stays same-origin."""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

CDS_PREFIX = "/cds-services"


class CdsCors:
    """ASGI middleware answering CORS (preflights included) under ``/cds-services``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=["*"],
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Accept-Language"],
            allow_credentials=False,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == CDS_PREFIX or path.startswith(CDS_PREFIX + "/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
