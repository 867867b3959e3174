"""Every HTTP route admits its caller before its handler runs, as gRPC's authorization
interceptor does, with the same pieces: the per-address cap on calls in progress, the
failed-authentication brake, the credential's authentication, the role matrix of
:mod:`mutualrec.security.access`, and the credential's call rate. Then the handler runs, and
whatever it raises becomes a problem response here, in one place.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mutualrec.http.browser import SAFE_METHODS, check_csrf, presented_csrf, session_id_of
from mutualrec.http.problems import Refusal, problem, problem_for, problem_for_refusal
from mutualrec.runtime import Runtime
from mutualrec.security.access import http_route, is_public, refusal, roles_for
from mutualrec.security.api_keys import InvalidKey, Principal, bearer_token
from mutualrec.security.audit import events_of, open_call
from mutualrec.security.limits import limit_key
from mutualrec.services.outage import is_unstorable
from mutualrec.violations import DomainError

_LOG = logging.getLogger(__name__)

# Who a request comes from, given the route's name; raises InvalidKey.
Authenticator: TypeAlias = Callable[[Request, str], Awaitable[Principal]]
# A route's work, given its admitted caller (None on a public route).
Handler: TypeAlias = Callable[[Request, Principal | None], Awaitable[Response]]


def peer_address(request: Request) -> str:
    """The client's address as gRPC's admission counts it (``ipv4:10.0.0.7``,
    ``ipv6:[::1]``): one host's calls over both doors share one cap."""
    host = request.client.host if request.client else ""
    if not host:
        return ""
    return f"ipv6:[{host}]" if ":" in host else f"ipv4:{host}"


def is_ahead(request: Request) -> bool:
    """Whether the browser sent ``request`` ahead of its user: a prefetch, or any request of a
    page it prerenders (Fetch's ``Sec-Purpose: prefetch`` or ``prefetch;prerender``; Chromium
    sends it on a prerendered page's own requests too, until the page is shown)."""
    # A structured-field list whose first item is a token with parameters: "prefetch;prerender".
    purpose = request.headers.get("sec-purpose", "")
    return purpose.split(",", 1)[0].split(";", 1)[0].strip() == "prefetch"


def authorization_header(request: Request) -> str:
    """The token of the request's ``Authorization: Bearer`` header; raises InvalidKey."""
    header = request.headers.get("authorization")
    return bearer_token((("authorization", header),) if header is not None else ())


class Admission:
    """Makes routes whose handlers run only for admitted callers."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.limits = runtime.limits

    async def bearer(self, request: Request, _route: str) -> Principal:
        """An API key, patient token or share token, as over gRPC."""
        token = authorization_header(request)
        authentication = self.runtime.authentication
        principal = authentication.without_lookup(token)
        if principal is None:
            principal = await self.runtime.run_blocking(authentication.look_up, token)
        return principal

    async def session_or_bearer(self, request: Request, route: str) -> Principal:
        """The browser session its cookie names or, failing that, the Bearer header: the
        authenticator of every route a browser calls (the pages, DICOMweb, the viewer). A
        cookie-admitted request that changes state must carry the session's CSRF token (header
        ``X-CSRF-Token`` or form field ``csrf``) and come from this site."""
        settings = self.runtime.settings
        session_id = session_id_of(request, settings)
        if session_id is None:
            return await self.bearer(request, route)
        try:
            principal = await self.runtime.run_blocking(
                self.runtime.web_sessions.principal, session_id
            )
        except InvalidKey:
            if "authorization" in request.headers:
                return await self.bearer(request, route)
            raise
        if request.method not in SAFE_METHODS:
            check_csrf(request, settings, await presented_csrf(request))
        return principal

    def route(
        self,
        method: str,
        path: str,
        handler: Handler,
        authenticate: Authenticator | None = None,
    ) -> Route:
        """The route ``method path`` running ``handler`` for callers ``authenticate`` (by
        default: :meth:`bearer`) names and the matrix admits."""
        name = http_route(method, path)
        public = is_public(name)
        who = authenticate or self.bearer

        async def endpoint(request: Request) -> Response:
            record = open_call(name)
            peer = peer_address(request)
            record.peer = peer
            record.ahead = is_ahead(request)
            if not self.limits.peers.acquire(peer):
                return problem_for_refusal(
                    Refusal(
                        429,
                        f"at most {self.limits.peers.limit} calls at once from one address",
                        1.0,
                    )
                )
            try:
                principal = None if public else await self._admit(request, name, peer, who)
                if principal is not None:
                    record.role = principal.role
                    record.credential = principal.key_id or principal.role
                    record.institution_id = principal.institution_id
                    record.attached = True
                response = await handler(request, principal)
            except Refusal as refused:
                response = problem_for_refusal(refused)
            except DomainError as error:
                response = problem_for(error)
            except Exception as error:
                response = _unexpected(name, error)
            finally:
                self.limits.peers.release(peer)
            if record.patients:
                status = response.status_code
                outcome = "OK" if status < 400 else f"HTTP {status}"
                self.runtime.audit.submit(events_of(record, outcome, dt.datetime.now(dt.UTC)))
            return response

        return Route(path, endpoint, methods=[method], name=name)

    async def _admit(
        self, request: Request, name: str, peer: str, authenticate: Authenticator
    ) -> Principal:
        # An address whose credentials keep failing is refused before its next credential
        # costs a lookup: guessing keys must not turn into index queries.
        wait = self.limits.auth_failures.delay(peer)
        if wait > 0:
            raise Refusal(429, "too many failed authentications from this address", wait)
        try:
            principal = await authenticate(request, name)
        except InvalidKey as exc:
            self.limits.auth_failures.take(peer)
            raise Refusal(401, str(exc)) from None
        if principal.role not in roles_for(name):
            raise Refusal(403, refusal(name, principal.role))
        wait = self.limits.calls.take(limit_key(principal))
        if wait > 0:
            raise Refusal(
                429,
                f"more than {self.limits.calls.rate:g} calls per second with this credential",
                wait,
            )
        return principal


def _unexpected(name: str, error: Exception) -> Response:
    correlation_id = uuid.uuid4().hex
    if is_unstorable(error):
        # A value the index cannot store that no check caught: the caller's data, logged as it
        # shows a check missing.
        _LOG.warning(
            "%s: a request value the index refused, correlation id %s",
            name,
            correlation_id,
            exc_info=error,
        )
        return problem(
            400,
            f"a value of the request cannot be stored; correlation id {correlation_id}",
            correlation_id=correlation_id,
        )
    _LOG.error("%s failed, correlation id %s", name, correlation_id, exc_info=error)
    return problem(
        500,
        f"unexpected server error; correlation id {correlation_id}",
        correlation_id=correlation_id,
    )
