"""CDS Hooks 2.0 on the HTTP door: discovery, the order-select and order-sign services, and
their feedback. The translation is :mod:`mutualrec.recognition.cds_hooks`; the check and the
decisions are the recognition service's, the same as CheckOrder and RecordDecision."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from mutualrec.http.admission import Admission, authorization_header
from mutualrec.http.bodies import json_body
from mutualrec.recognition.cds_hooks import (
    SERVICES,
    CdsService,
    cards,
    discovery,
    feedback_field,
    read_feedback,
    read_request,
    request_field,
)
from mutualrec.security.api_keys import Principal
from mutualrec.services.recognition import CheckContext, CheckRequest, DecisionRequest
from mutualrec.violations import DomainError, NotFound, Violation

# A hook request carries a few draft orders and a Patient; a megabyte is a client bug.
MAX_BODY_BYTES = 1024 * 1024


def _service(request: Request) -> CdsService:
    service_id = request.path_params["service_id"]
    service = SERVICES.get(service_id)
    if service is None:
        raise NotFound(f"no CDS service {service_id[:64]!r}: see GET /cds-services")
    return service


def _endpoint_url(request: Request, public_url: str) -> str:
    """The URL the EHR called, as its token's ``aud`` names it: under
    ``MUTUALREC_HTTP_PUBLIC_URL`` when the door sits behind a proxy, else as it arrived."""
    if public_url:
        return public_url + request.url.path
    return str(request.url.replace(query="", fragment=""))


def _remapped(error: DomainError, field: Callable[[str], str]) -> DomainError:
    """``error`` with its fields named as the request sent them (``field``: service field ->
    request path)."""
    remapped = [Violation(field(v.field), v.description, v.reason) for v in error.violations]
    return type(error)(error.summary, remapped)


def cds_routes(admission: Admission) -> list[BaseRoute]:
    """The CDS Hooks routes."""
    runtime = admission.runtime

    async def ehr(request: Request, _route: str) -> Principal:
        """The institution whose EHR signed the request's JWT (CDS Hooks 2.0 authentication):
        the token's audience is the endpoint called (for feedback, its service's too)."""
        token = authorization_header(request)
        called = _endpoint_url(request, runtime.settings.http_public_url)
        audiences = [called]
        if called.endswith("/feedback"):
            audiences.append(called.removesuffix("/feedback"))
        return await runtime.run_blocking(runtime.cds_clients.authenticate, token, audiences)

    async def services(_request: Request, _principal: Principal | None) -> Response:
        return JSONResponse(discovery())

    async def hook(request: Request, principal: Principal | None) -> Response:
        assert principal is not None
        service = _service(request)
        order = read_request(service, await json_body(request, MAX_BODY_BYTES))
        if not order.codes:
            return JSONResponse({"cards": []})
        check = CheckRequest(
            patient=order.patient,
            ordered_codes=order.codes,
            context=CheckContext(order_id=order.hook_instance[:64], department=service.hook),
            accept_language=request.headers.get("accept-language", ""),
            received_at=dt.datetime.now(dt.UTC),
        )
        try:
            report = await runtime.recognition.check(check, principal)
        except DomainError as error:
            raise _remapped(error, request_field) from None
        assert principal.institution_id is not None  # an EHR's JWT names its institution
        open_url = functools.partial(
            runtime.study_links.open_url,
            report.check_id,
            report.received_at,
            principal.institution_id,
        )
        return JSONResponse(
            {"cards": cards(report.check_id, report.lines, order.orders, report.language, open_url)}
        )

    async def feedback(request: Request, principal: Principal | None) -> Response:
        assert principal is not None
        _service(request)
        items = read_feedback(await json_body(request, MAX_BODY_BYTES))
        for position, item in enumerate(items):
            decision = DecisionRequest(
                check_id=item.check_id,
                line=item.line,
                accepted=item.accepted,
                reason=item.reason,
                reason_text=item.reason_text,
                decided_at=dt.datetime.now(dt.UTC),
            )
            try:
                await runtime.recognition.decide(decision, principal)
            except DomainError as error:
                raise _remapped(error, functools.partial(feedback_field, position)) from None
        return JSONResponse({})

    return [
        admission.route("GET", "/cds-services", services),
        admission.route("POST", "/cds-services/{service_id}", hook, ehr),
        admission.route("POST", "/cds-services/{service_id}/feedback", feedback, ehr),
    ]
