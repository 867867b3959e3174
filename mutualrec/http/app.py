"""The HTTP door's ASGI app: its routes, and problem bodies for what no route answers."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from mutualrec import __version__
from mutualrec.http.admission import Admission
from mutualrec.http.cds_hooks import cds_routes
from mutualrec.http.cors import CdsCors
from mutualrec.http.dicomweb import dicomweb_routes
from mutualrec.http.dicomweb.stow import stow_routes
from mutualrec.http.headers import SecurityHeaders
from mutualrec.http.pages import page_routes
from mutualrec.http.problem_pages import ProblemPages
from mutualrec.http.problems import problem
from mutualrec.http.regulator import regulator_routes
from mutualrec.http.sessions import session_routes
from mutualrec.http.static_files import static_routes
from mutualrec.http.viewer import viewer_routes
from mutualrec.runtime import Runtime
from mutualrec.security.api_keys import Principal


def health_route(admission: Admission, serving: Callable[[], bool]) -> BaseRoute:
    """``GET /healthz``: 200 while serving, 503 once shutting down (load balancers stop
    sending new work), as gRPC's health service says SERVING and NOT_SERVING."""

    async def health(_request: Request, _principal: Principal | None) -> Response:
        if serving():
            return JSONResponse({"status": "SERVING", "version": __version__})
        return JSONResponse({"status": "NOT_SERVING", "version": __version__}, status_code=503)

    return admission.route("GET", "/healthz", health)


async def _http_error(_request: Request, error: Exception) -> Response:
    """Starlette's own refusals (no such route, method not allowed) as problem bodies."""
    assert isinstance(error, HTTPException)
    headers = dict(error.headers or {})
    if error.status_code == 404:
        return problem(404, "no such resource", headers=headers)
    return problem(error.status_code, str(error.detail), headers=headers)


def build_app(runtime: Runtime, serving: Callable[[], bool]) -> Starlette:
    """The HTTP door's app: health, then each door's routes (CDS Hooks, DICOMweb, the
    viewer, the regulators' dashboard, the web pages)."""
    admission = Admission(runtime)
    routes = [
        health_route(admission, serving),
        *cds_routes(admission),
        *regulator_routes(admission, admission.session_or_bearer),
        *session_routes(admission),
        *page_routes(admission),
        *static_routes(admission),
        *dicomweb_routes(admission, admission.session_or_bearer),
        *stow_routes(admission),
        *viewer_routes(admission, runtime.settings.viewer_dir),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error},
        # Outermost first: preflights get the security headers too.
        # Problem pages inside the headers: a page made of a problem gets the page's headers.
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(CdsCors),
            Middleware(ProblemPages, settings=runtime.settings),
        ],
    )
