"""The pages' own scripts and style sheet, served from the package as files (the pages'
Content-Security-Policy allows scripts from this site only, never inline)."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from mutualrec.http.admission import Admission
from mutualrec.security.api_keys import Principal
from mutualrec.violations import NotFound

_MEDIA_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    # The one JSON file is the history page's speculation rules, which Chromium takes only with
    # their own media type.
    ".json": "application/speculationrules+json",
}


def _files() -> dict[str, tuple[bytes, str]]:
    """Every file of the static folder with its media type, read once at start."""
    found: dict[str, tuple[bytes, str]] = {}
    for entry in resources.files("mutualrec.http").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _MEDIA_TYPES:
            found[entry.name] = (entry.read_bytes(), _MEDIA_TYPES[suffix])
    return found


def static_routes(admission: Admission) -> list[BaseRoute]:
    """``GET /static/{name}``: only the files the package ships, never a path."""
    files = _files()

    async def serve(request: Request, _principal: Principal | None) -> Response:
        found = files.get(request.path_params["name"])
        if found is None:
            raise NotFound("no such file")
        body, media_type = found
        return Response(body, media_type=media_type, headers={"Cache-Control": "max-age=3600"})

    return [admission.route("GET", "/static/{name}", serve)]
