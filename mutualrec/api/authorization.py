"""One interceptor admits every call before any servicer runs: who calls, whether their role
may call this method, and whether their credential is within its limits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from mutualrec.api.auth import admit, authenticate_call
from mutualrec.api.status import retry_status
from mutualrec.runtime import Runtime
from mutualrec.security.access import is_public, refusal, roles_for
from mutualrec.security.api_keys import InvalidKey, Principal

# Calls that hold a slot of their credential while they run: a PACS gateway streaming studies.
_SLOTTED = frozenset({"/mutualrec.v1.IngestService/UploadStudy"})


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses a call without a valid credential (UNAUTHENTICATED), whose role the matrix of
    :mod:`mutualrec.security.access` does not name for the method (PERMISSION_DENIED), or whose
    credential is over its call rate or its concurrent uploads (RESOURCE_EXHAUSTED, with a
    ``google.rpc.RetryInfo`` saying when to try again)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.calls = runtime.limits.calls
        self.uploads = runtime.limits.uploads

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        """The servicer's handler for an authorized call, a refusing one otherwise."""
        method = str(handler_call_details.method)
        handler = await continuation(handler_call_details)
        if handler is None or is_public(method):
            return handler
        try:
            principal = await authenticate_call(
                self.runtime, handler_call_details.invocation_metadata
            )
        except InvalidKey as exc:
            return _refusing(handler, grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if principal.role not in roles_for(method):
            return _refusing(
                handler, grpc.StatusCode.PERMISSION_DENIED, refusal(method, principal.role)
            )
        key = _limit_key(principal)
        wait = self.calls.take(key)
        if wait > 0:
            return _refusing(
                handler,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"more than {self.calls.rate:g} calls per second with this credential",
                retry_after=wait,
            )
        if method in _SLOTTED:
            if not self.uploads.acquire(key):
                return _refusing(
                    handler,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"at most {self.uploads.limit} uploads at once with this credential",
                    retry_after=1.0,
                )
            handler = _releasing(handler, lambda: self.uploads.release(key))
        admit(principal)
        return handler


def _limit_key(principal: Principal) -> str:
    """Whose limits a call counts against: the API key, the share link, or the patient (every
    token of one patient shares them)."""
    if principal.patient_key is not None and principal.share_link_id is None:
        return f"patient:{principal.patient_key}"
    return f"{principal.role}:{principal.key_id}"


def _maker(handler: Any) -> Any:
    return {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[handler.request_streaming, handler.response_streaming]


def _refusing(
    handler: Any, code: grpc.StatusCode, message: str, retry_after: float | None = None
) -> Any:
    """A handler of the same shape as ``handler`` that ends the call with ``code``."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if retry_after is None:
            await context.abort(code, message)
        else:
            await context.abort_with_status(retry_status(code, message, retry_after))

    return _maker(handler)(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _releasing(handler: Any, release: Callable[[], None]) -> Any:
    """``handler`` calling ``release`` when its call ends, however it ends."""
    if handler.request_streaming and not handler.response_streaming:
        behavior = handler.stream_unary
    else:
        raise NotImplementedError("only client-streaming calls hold slots")

    async def run(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(requests, context)
        finally:
            release()

    return _maker(handler)(
        run,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
