"""DICOMweb (PS3.18) on the HTTP door, under ``/dicomweb``: QIDO-RS searches and WADO-RS
retrievals (:func:`dicomweb_routes`); STOW-RS lives beside them in its own module.

Thin: each route admits its caller, checks what the request names, and calls
:class:`~mutualrec.services.study_reading.StudyReading`, which decides what the caller may
read exactly as ImagingService does.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from mutualrec.http.admission import Admission, Authenticator
from mutualrec.http.dicomweb import qido, wado
from mutualrec.http.dicomweb.paths import PREFIX
from mutualrec.imaging.dicomweb_query import Level
from mutualrec.runtime import Runtime
from mutualrec.security.api_keys import Principal
from mutualrec.services.study_reading import StudyReading

_STUDY = PREFIX + "/studies/{study}"
_SERIES = _STUDY + "/series/{series}"
_INSTANCE = _SERIES + "/instances/{instance}"

# Every route of the read side, as the role matrix names them (mutualrec.security.access).
SEARCHES: tuple[tuple[str, Level], ...] = (
    (PREFIX + "/studies", Level.STUDY),
    (PREFIX + "/series", Level.SERIES),
    (_STUDY + "/series", Level.SERIES),
    (PREFIX + "/instances", Level.INSTANCE),
    (_STUDY + "/instances", Level.INSTANCE),
    (_SERIES + "/instances", Level.INSTANCE),
)
_Work = Callable[[Runtime, StudyReading, Request, Principal], Awaitable[Response]]
RETRIEVALS: tuple[tuple[str, _Work], ...] = (
    (_STUDY, wado.retrieve),
    (_SERIES, wado.retrieve),
    (_INSTANCE, wado.retrieve),
    (_STUDY + "/metadata", wado.metadata),
    (_SERIES + "/metadata", wado.metadata),
    (_INSTANCE + "/metadata", wado.metadata),
    (_INSTANCE + "/frames/{frames}", wado.frames),
    (_INSTANCE + "/rendered", wado.rendered),
    (_INSTANCE + "/frames/{frames}/rendered", wado.rendered),
)
ROUTES = tuple(path for path, _ in SEARCHES) + tuple(path for path, _ in RETRIEVALS)


def study_reading(runtime: Runtime) -> StudyReading:
    """The reads DICOMweb calls, over the runtime's history and object store."""
    return StudyReading(
        runtime.history,
        runtime.store,
        Path(tempfile.gettempdir()),
        runtime.settings.dicomweb_cache_bytes,
    )


def dicomweb_routes(
    admission: Admission, authenticate: Authenticator | None = None
) -> list[BaseRoute]:
    """The QIDO-RS and WADO-RS routes, admitting callers ``authenticate`` names (by default
    the Bearer credential: API key, patient token or share token)."""
    runtime = admission.runtime
    reading = study_reading(runtime)

    def bind(work: _Work) -> Callable[[Request, Principal | None], Awaitable[Response]]:
        async def handler(request: Request, principal: Principal | None) -> Response:
            assert principal is not None  # no DICOMweb route is public
            return await work(runtime, reading, request, principal)

        return handler

    routes: list[BaseRoute] = []
    for path, level in SEARCHES:
        work = functools.partial(_search, level=level)
        routes.append(admission.route("GET", path, bind(work), authenticate))
    for path, retrieval in RETRIEVALS:
        routes.append(admission.route("GET", path, bind(retrieval), authenticate))
    return routes


async def _search(
    runtime: Runtime, reading: StudyReading, request: Request, principal: Principal, level: Level
) -> Response:
    return await qido.search(runtime, reading, request, principal, level)
