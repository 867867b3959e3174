"""The OHIF viewer at ``/viewer/``: its installed files (:mod:`mutualrec.viewer_install`), and
``index.html`` for any other path below it, where the single-page app's router takes over
(``/viewer/viewer?StudyInstanceUIDs=...``). The files hold no patient data: served to anyone;
the studies it shows come from ``/dicomweb``, which admits its callers as every route does.

The viewer speaks the language of our pages (the toggle's choice, else the browser's, Chinese
first): OHIF reads its language from the ``i18next`` cookie before the browser's own list, so
every load of its page sets that cookie to the page language's OHIF code."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute
from starlette.staticfiles import StaticFiles

from mutualrec.config import Settings
from mutualrec.http.admission import Admission
from mutualrec.http.browser import set_cookie
from mutualrec.http.encoding import accepts_gzip
from mutualrec.http.headers import VIEWER_PATH
from mutualrec.http.strings import EN, ZH, language_of
from mutualrec.viewer_install import GZIPPED, INDEX, OURS

# Files whose names carry their content's hash (webpack's chunks, the codecs' WebAssembly, fonts):
# a new build names them anew, so a browser may keep them for good without asking again. Without
# this, a warm browser revalidated each of the 40-odd chunks the viewer loads in waves, seconds
# before the first image on this machine.
_CONTENT_NAMED = re.compile(r"(^|/)([^/]*\.)?[0-9a-f]{16,}\.(js|wasm|woff2?|css)$")
IMMUTABLE = "public, max-age=31536000, immutable"
# The rest of the pinned release's files change only with a new release: a day.
RELEASE_FILE = "public, max-age=86400"
# i18next's browser detector (OHIF's) reads this cookie after the ``lng`` query parameter and
# before the browser's languages; OHIF's own codes for our two languages (both in its release).
OHIF_LANGUAGE_COOKIE = "i18next"
OHIF_LANGUAGES = {ZH: "zh", EN: "en-US"}


def cache_control(path: str) -> str | None:
    """How long a browser may keep the viewer's file ``path`` (None: the default, revalidate)."""
    if _CONTENT_NAMED.search(path):
        return IMMUTABLE
    if path in OURS:
        # Written by the installer for this server: always revalidated (the security
        # headers' default for the viewer).
        return None
    return RELEASE_FILE


class _StartFiles(HTMLParser):
    """The files ``index.html`` names as scripts (``<script src>``) and style sheets."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script" and named.get("src"):
            self.found.append(named["src"] or "")
        elif tag == "link" and named.get("rel") == "stylesheet" and named.get("href"):
            self.found.append(named["href"] or "")


def start_files(directory: Path | None) -> tuple[str, ...]:
    """The viewer's own start-up files (its ``index.html``'s scripts and style sheets under
    ``/viewer/``) that a browser keeps once fetched: what another page may ask the browser to
    fetch ahead of a click into the viewer. None without a viewer; the files written for this
    server (always revalidated) are left out, as fetching them ahead saves nothing."""
    if directory is None:
        return ()
    parser = _StartFiles()
    parser.feed((directory / INDEX).read_text(encoding="utf-8"))
    prefix = VIEWER_PATH + "/"
    return tuple(
        url
        for url in dict.fromkeys(parser.found)
        if url.startswith(prefix)
        and "?" not in url
        and cache_control(url.removeprefix(prefix)) is not None
    )


def speak_page_language(response: Response, request: Request, settings: Settings) -> None:
    """Have OHIF, whose page ``response`` is, speak the language ``request``'s pages read.

    Readable by the viewer's script (which is the point), sent to no other site; re-set on every
    load of the page, so the toggle's latest choice wins over what OHIF kept from before."""
    set_cookie(
        response,
        settings,
        OHIF_LANGUAGE_COOKIE,
        OHIF_LANGUAGES[language_of(request)],
        script_readable=True,
    )


def viewer_routes(admission: Admission, directory: Path | None) -> list[BaseRoute]:
    """The viewer's routes; none when no viewer is installed (``directory`` None)."""
    if directory is None:
        return []
    files = StaticFiles(directory=directory)
    settings = admission.runtime.settings

    async def entry(_request: Request, _principal: object) -> Response:
        return RedirectResponse("/viewer/", status_code=308)

    async def stored(path: str, request: Request) -> Response | None:
        try:
            return await files.get_response(path, request.scope)
        except HTTPException as missing:
            if missing.status_code != 404:
                raise
            return None

    async def page(request: Request) -> Response:
        response = await files.get_response(INDEX, request.scope)
        speak_page_language(response, request, settings)
        # Its language cookie follows the request's.
        response.headers["vary"] = "Accept-Language, Cookie"
        return response

    async def serve(request: Request, _principal: object) -> Response:
        path = request.path_params["path"] or INDEX
        if path == INDEX or path.endswith(GZIPPED):
            # The app's page; the compressed copies are how a file is sent, not files of their
            # own.
            return await page(request)
        response = None
        if path not in OURS and accepts_gzip(request.headers.get("accept-encoding")):
            # The installer's compressed copy; its media type is the file's own (``NAME.js.gz``
            # is guessed as JavaScript encoded by gzip).
            response = await stored(path + GZIPPED, request)
            if response is not None:
                response.headers["content-encoding"] = "gzip"
        if response is None:
            response = await stored(path, request)
        if response is None:
            # A route of the app, not a file: the app's page, whose router reads the path.
            return await page(request)
        # Caches keep the two codings of a file apart.
        response.headers["vary"] = "Accept-Encoding"
        keep = cache_control(path)
        if keep is not None:
            response.headers["cache-control"] = keep
        return response

    return [
        admission.route("GET", "/viewer", entry),
        admission.route("GET", "/viewer/{path:path}", serve),
    ]
