"""Opens each call's audit record and closes it with the call's status."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from mutualrec.security.api_keys import Principal
from mutualrec.security.audit import CallRecord, current_call, events_of, open_call
from mutualrec.services.audit import AuditWriter


class AuditInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Names the call in a fresh record that the servicer it reaches fills in."""

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        """Open the record (in the call's own context), then hand over to the servicer."""
        method = str(handler_call_details.method)
        # "/mutualrec.v1.ImagingService/GetStudy" -> "ImagingService/GetStudy"
        open_call(method.rsplit(".", 1)[-1])
        return await continuation(handler_call_details)


def attach(
    writer: AuditWriter, context: grpc.aio.ServicerContext[Any, Any], principal: Principal
) -> None:
    """Record who calls, and have the call's entries written when it ends."""
    record = current_call()
    if record is None or record.attached:
        return
    record.role = principal.role
    record.credential = principal.key_id or principal.role
    record.institution_id = principal.institution_id
    record.peer = context.peer() or ""
    record.attached = True
    context.add_done_callback(functools.partial(_finish, writer, record))


def _finish(writer: AuditWriter, record: CallRecord, context: Any) -> None:
    if not record.patients:
        return
    code = context.code()
    outcome = "OK" if code is None or code == grpc.StatusCode.OK else str(code.name)
    writer.submit(events_of(record, outcome, dt.datetime.now(dt.UTC)))
