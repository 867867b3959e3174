"""Browser sign-in for every web page: ``GET /signin`` (a form), ``POST /session`` (a credential
for a session cookie), ``POST /session/end`` (sign out), ``GET /session`` (who am I), and
``GET /open``, where a share link (``/open#<token>``) is traded for a session by a small script:
the token travels in the URL's fragment, which no server, proxy or log ever sees.

Other routes a browser calls admit it with :meth:`Admission.session_or_bearer
<mutualrec.http.admission.Admission.session_or_bearer>` (re-exported here as
:func:`session_or_bearer`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute

from mutualrec.http.admission import Admission, Authenticator
from mutualrec.http.browser import (
    CSRF_FIELD,
    PRESESSION_COOKIE,
    check_csrf,
    clear_cookie,
    form_fields,
    session_cookie_name,
    session_csrf,
    session_id_of,
    set_cookie,
)
from mutualrec.http.rendering import render_page
from mutualrec.http.strings import LANGUAGE_COOKIE, LANGUAGES
from mutualrec.security.api_keys import InvalidKey, Principal
from mutualrec.services.web_sessions import OpenedSession

CREDENTIAL_FIELD = "credential"
# A patient token, share token or API key is at most a few hundred characters.
MAX_CREDENTIAL = 4096


def session_or_bearer(admission: Admission) -> Authenticator:
    """The authenticator admitting a request by its session cookie or, failing that, its
    Bearer header: ``admission.route(method, path, handler, authenticate=
    session_or_bearer(admission))``."""
    return admission.session_or_bearer


def wants_json(request: Request) -> bool:
    """Whether the caller asked for JSON rather than a page (a script, an API client)."""
    accept = request.headers.get("accept", "")
    return "json" in accept and "text/html" not in accept


def _safe_back(value: str) -> str:
    """A local path to return to; anything else (another site, a scheme) becomes ``/``."""
    if value.startswith("/") and not value.startswith(("//", "/\\")) and len(value) < 500:
        return value
    return "/"


def session_routes(admission: Admission) -> list[BaseRoute]:
    """The sign-in routes."""
    runtime = admission.runtime
    settings = runtime.settings
    cookie = session_cookie_name(settings)

    async def signin_credential(request: Request, route: str) -> Principal:
        """The principal of the credential a sign-in form (or the /open script) posts, checked
        as the Bearer header's is; the form must be ours (CSRF, Origin)."""
        fields = await form_fields(request)
        check_csrf(request, settings, fields.get(CSRF_FIELD, ""))
        token = fields.get(CREDENTIAL_FIELD, "").strip()
        if not token:
            raise InvalidKey("no credential was given")
        if len(token) > MAX_CREDENTIAL or not token.isascii():
            raise InvalidKey("the credential is malformed")
        request.state.credential = token
        authentication = runtime.authentication
        principal = authentication.without_lookup(token)
        if principal is None:
            principal = await runtime.run_blocking(authentication.look_up, token)
        return principal

    async def signin_page(request: Request, _principal: Principal | None) -> Response:
        return render_page(request, settings, "signin.html")

    async def open_page(request: Request, _principal: Principal | None) -> Response:
        return render_page(request, settings, "open.html")

    async def start(request: Request, principal: Principal | None) -> Response:
        assert principal is not None
        previous = session_id_of(request, settings)
        if previous is not None:
            # Signing in as someone else leaves no session of the one before alive.
            await runtime.run_blocking(runtime.web_sessions.end, previous)
        opened: OpenedSession = await runtime.run_blocking(
            runtime.web_sessions.open, principal, request.state.credential
        )
        response: Response
        if wants_json(request):
            response = JSONResponse({"target": opened.landing, "role": principal.role})
        else:
            response = RedirectResponse(opened.landing, status_code=303)
        max_age = int(runtime.web_sessions.limits.absolute.total_seconds())
        set_cookie(response, settings, cookie, opened.session_id, max_age=max_age)
        # Forms from now on carry the session's token; the pre-session one is spent.
        clear_cookie(response, settings, PRESESSION_COOKIE)
        return response

    async def whoami(request: Request, principal: Principal | None) -> Response:
        assert principal is not None
        session_id = session_id_of(request, settings)
        landing = "/"
        if session_id is not None:
            try:
                landing = await runtime.run_blocking(runtime.web_sessions.landing, session_id)
            except InvalidKey:
                landing = "/"
        if wants_json(request):
            # A script of a page this site serves (the viewer) learns the token its
            # state-changing requests send as X-CSRF-Token; no other site can read this.
            csrf = session_csrf(settings.token_secret, session_id) if session_id else ""
            return JSONResponse({"role": principal.role, "landing": landing, "csrf": csrf})
        return render_page(request, settings, "session.html", role=principal.role, landing=landing)

    async def end(request: Request, _principal: Principal | None) -> Response:
        fields = await form_fields(request)
        check_csrf(request, settings, fields.get(CSRF_FIELD, ""))
        session_id = session_id_of(request, settings)
        if session_id is not None:
            await runtime.run_blocking(runtime.web_sessions.end, session_id)
        response: Response = RedirectResponse("/signin", status_code=303)
        if wants_json(request):
            response = JSONResponse({"signed_out": True})
        clear_cookie(response, settings, cookie)
        return response

    async def language(request: Request, _principal: Principal | None) -> Response:
        fields = await form_fields(request)
        check_csrf(request, settings, fields.get(CSRF_FIELD, ""))
        chosen = fields.get("lang", "")
        response = RedirectResponse(_safe_back(fields.get("back", "/")), status_code=303)
        if chosen in LANGUAGES:
            # Readable by no script, sent to no other site, kept for a year.
            set_cookie(response, settings, LANGUAGE_COOKIE, chosen, max_age=365 * 86400)
        return response

    return [
        admission.route("GET", "/signin", signin_page),
        admission.route("GET", "/open", open_page),
        admission.route("POST", "/session", start, signin_credential),
        admission.route("GET", "/session", whoami, admission.session_or_bearer),
        admission.route("POST", "/session/end", end),
        admission.route("POST", "/language", language),
    ]
