"""The patient's pages: the imaging history from every hospital (filters, thumbnails, "open in
viewer"), share links (create with a URL and QR code, list, revoke) and who accessed the data.
Thin: each page calls the same services as ImagingService's RPCs, on worker threads."""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote, urlencode

import segno
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute

from mutualrec.http.admission import Admission
from mutualrec.http.browser import form_fields
from mutualrec.http.rendering import render_page
from mutualrec.http.viewer import start_files
from mutualrec.imaging.sharing import LinkState
from mutualrec.localtime import LOCAL_ZONE
from mutualrec.security.api_keys import Principal
from mutualrec.services.patient_history import AccessesRequest, StudiesRequest, StudyRequest
from mutualrec.services.sharing import ShareLinkRequest
from mutualrec.services.web_sessions import VIEWER_STUDY
from mutualrec.violations import NotFound, Rejected

HISTORY_PAGE = 20
MODALITIES = ("CT", "MR", "CR", "DX", "US", "MG", "PT", "NM", "XA", "RF")
SHARE_DAYS = (1, 3, 7, 30)
# The history's speculation rules (a structured-field list of one URL): Chromium prerenders the
# viewer of the newest study while the patient reads, so that the click shows it at once.
VIEWER_PRERENDER_RULES = '"/static/viewer-prerender.json"'
# Only the query parameters the history page reads are passed on to its next page.
_FILTERS = ("modality", "institution", "from", "to")


def _text(value: str, field: str, limit: int = 64) -> str:
    """A query or path value as the services take it: :class:`Rejected` for a NUL (no index
    stores one, and PostgreSQL refuses it even in a query), clipped to ``limit``."""
    if "\0" in value:
        raise Rejected.one("the request holds a NUL character", field, "NUL", "NUL_CHARACTER")
    return value[:limit]


def viewer_url(study_instance_uid: str) -> str:
    """Where the viewer opens one study."""
    return VIEWER_STUDY + quote(study_instance_uid, safe="")


def page_routes(admission: Admission) -> list[BaseRoute]:
    """The patient's pages, each admitted by its session (or a Bearer header)."""
    runtime = admission.runtime
    settings = runtime.settings
    who = admission.session_or_bearer
    # Fetched ahead by the history page (none when no viewer is installed).
    viewer_files = start_files(settings.viewer_dir)

    def public_url(request: Request) -> str:
        return settings.http_public_url or f"{request.url.scheme}://{request.url.netloc}"

    async def history(request: Request, principal: Principal | None) -> Response:
        assert principal is not None
        query = request.query_params
        filters = {name: _text(query.get(name, ""), name) for name in _FILTERS}
        page = await runtime.run_blocking(
            runtime.history.list_studies,
            principal,
            StudiesRequest(
                page_size=HISTORY_PAGE,
                page_token=_text(query.get("page", ""), "page", 2000),
                modality=filters["modality"],
                from_date=filters["from"],
                to_date=filters["to"],
                institution_code=filters["institution"],
            ),
        )
        next_url = ""
        if page.next_page_token:
            kept = {k: v for k, v in filters.items() if v}
            next_url = "/?" + urlencode({**kept, "page": page.next_page_token})
        response = render_page(
            request,
            settings,
            "history.html",
            nav=True,
            studies=page.studies,
            filters=filters,
            modalities=MODALITIES,
            share_days=SHARE_DAYS,
            next_url=next_url,
            viewer_url=viewer_url,
            viewer_files=viewer_files,
            quote=quote,
        )
        if viewer_files:
            # Rules from a file, not an inline <script>: the pages' policy allows no inline
            # script. What they prerender, and when, is in the file and viewer-prefetch.js.
            response.headers["Speculation-Rules"] = VIEWER_PRERENDER_RULES
        return response

    async def thumbnail(request: Request, principal: Principal | None) -> Response:
        assert principal is not None
        uid = _text(request.path_params["study_uid"], "study_uid")
        view = await runtime.run_blocking(runtime.history.study, principal, StudyRequest(uid))
        if not view.series:
            raise NotFound("the study has no series")
        shown = await runtime.run_blocking(
            runtime.history.thumbnail,
            principal,
            StudyRequest(uid, view.series[0].series_instance_uid),
        )
        return Response(
            shown.thumbnail.png,
            media_type="image/png",
            # The patient's own image: this browser may keep it briefly, no shared cache may.
            headers={"Cache-Control": "private, max-age=300"},
        )

    async def shares(request: Request, principal: Principal | None) -> Response:
        assert principal is not None
        links = await runtime.run_blocking(runtime.sharing.links, principal)
        now = dt.datetime.now(dt.UTC)
        return render_page(
            request,
            settings,
            "shares.html",
            nav=True,
            links=[(link, link.state(now).value) for link in links],
            active=LinkState.ACTIVE.value,
        )

    async def create_share(request: Request, principal: Principal | None) -> Response:
        assert principal is not None
        fields = await form_fields(request)
        days_text = fields.get("days", "")
        if not days_text.isdigit() or int(days_text) not in SHARE_DAYS:
            raise Rejected.one(
                "the link's lifetime is not one offered",
                "days",
                f"one of {', '.join(map(str, SHARE_DAYS))}",
                "OUT_OF_RANGE",
            )
        expires = dt.datetime.now(LOCAL_ZONE) + dt.timedelta(days=int(days_text))
        created = await runtime.run_blocking(
            runtime.sharing.create,
            principal,
            ShareLinkRequest(
                study_instance_uid=fields.get("study_uid", ""),
                expire_time=expires.isoformat(timespec="seconds"),
                note=fields.get("note", ""),
            ),
        )
        url = f"{public_url(request)}/open#{created.token}"
        qr = segno.make(url, error="m").svg_inline(scale=4, title="QR")
        return render_page(
            request, settings, "share_created.html", nav=True, link=created.link, url=url, qr=qr
        )

    async def revoke_share(request: Request, principal: Principal | None) -> Response:
        assert principal is not None
        await runtime.run_blocking(
            runtime.sharing.revoke, principal, _text(request.path_params["link_id"], "link_id")
        )
        return RedirectResponse("/shares", status_code=303)

    async def accesses(request: Request, principal: Principal | None) -> Response:
        assert principal is not None
        page = await runtime.run_blocking(
            runtime.history.accesses,
            principal,
            AccessesRequest(page_token=_text(request.query_params.get("page", ""), "page", 2000)),
        )
        next_url = "/accesses?" + urlencode({"page": page.next_page_token})
        return render_page(
            request,
            settings,
            "accesses.html",
            nav=True,
            accesses=page.accesses,
            next_url=next_url if page.next_page_token else "",
        )

    return [
        admission.route("GET", "/", history, who),
        admission.route("GET", "/studies/{study_uid}/thumbnail", thumbnail, who),
        admission.route("GET", "/shares", shares, who),
        admission.route("POST", "/shares", create_share, who),
        admission.route("POST", "/shares/{link_id}/revoke", revoke_share, who),
        admission.route("GET", "/accesses", accesses, who),
    ]
