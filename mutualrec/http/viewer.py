"""The OHIF viewer at ``/viewer/``: its installed files (:mod:`mutualrec.viewer_install`), and
``index.html`` for any other path below it, where the single-page app's router takes over
(``/viewer/viewer?StudyInstanceUIDs=...``). The files hold no patient data: served to anyone;
the studies it shows come from ``/dicomweb``, which admits its callers as every route does."""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute
from starlette.staticfiles import StaticFiles

from mutualrec.http.admission import Admission

INDEX = "index.html"


def viewer_routes(admission: Admission, directory: Path | None) -> list[BaseRoute]:
    """The viewer's routes; none when no viewer is installed (``directory`` None)."""
    if directory is None:
        return []
    files = StaticFiles(directory=directory)

    async def entry(_request: Request, _principal: object) -> Response:
        return RedirectResponse("/viewer/", status_code=308)

    async def serve(request: Request, _principal: object) -> Response:
        path = request.path_params["path"] or INDEX
        try:
            return await files.get_response(path, request.scope)
        except HTTPException as missing:
            if missing.status_code != 404:
                raise
            # A route of the app, not a file: the app's page, whose router reads the path.
            return await files.get_response(INDEX, request.scope)

    return [
        admission.route("GET", "/viewer", entry),
        admission.route("GET", "/viewer/{path:path}", serve),
    ]
