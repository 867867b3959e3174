"""One interceptor admits every call before its servicer runs: who calls, whether their role may
call this method, and whether their credential is within its limits."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from mutualrec.api.auth import admit, authenticate_call
from mutualrec.api.status import retry_status
from mutualrec.runtime import Runtime
from mutualrec.security.access import is_public, refusal, roles_for
from mutualrec.security.api_keys import InvalidKey, Principal

# Calls that hold a slot of their credential while they run: a PACS gateway streaming studies.
_SLOTTED = frozenset({"/mutualrec.v1.IngestService/UploadStudy"})

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses a call without a valid credential (UNAUTHENTICATED), whose role the matrix of
    :mod:`mutualrec.security.access` does not name for the method (PERMISSION_DENIED), or whose
    credential is over its call rate or its concurrent uploads (RESOURCE_EXHAUSTED, with a
    ``google.rpc.RetryInfo`` saying when to try again).

    The check runs as the first step of the servicer's own handler, where the call's TLS peer
    (a hospital's client certificate) is known; nothing of the servicer runs before it passes.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.calls = runtime.limits.calls
        self.uploads = runtime.limits.uploads

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        """The servicer's handler, guarded by the admission check."""
        method = str(handler_call_details.method)
        handler = await continuation(handler_call_details)
        if handler is None or is_public(method):
            return handler
        metadata = handler_call_details.invocation_metadata
        return _guarded(handler, lambda context: self._admit(method, metadata, context))

    async def _admit(self, method: str, metadata: Any, context: Context) -> Callable[[], None]:
        """Admit the call (or end it); returns what to do when it ends."""
        try:
            principal = await authenticate_call(self.runtime, metadata, context.auth_context())
        except InvalidKey as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if principal.role not in roles_for(method):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal(method, principal.role))
        key = _limit_key(principal)
        wait = self.calls.take(key)
        if wait > 0:
            await context.abort_with_status(
                retry_status(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"more than {self.calls.rate:g} calls per second with this credential",
                    wait,
                )
            )
        release = _nothing
        if method in _SLOTTED:
            if not self.uploads.acquire(key):
                await context.abort_with_status(
                    retry_status(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"at most {self.uploads.limit} uploads at once with this credential",
                        1.0,
                    )
                )
            release = lambda: self.uploads.release(key)  # noqa: E731
        admit(principal)
        return release


def _nothing() -> None:
    """Nothing to give back when the call ends."""


def _limit_key(principal: Principal) -> str:
    """Whose limits a call counts against: the API key or certificate, the share link, or the
    patient (every token of one patient shares them)."""
    if principal.patient_key is not None and principal.share_link_id is None:
        return f"patient:{principal.patient_key}"
    return f"{principal.role}:{principal.key_id}"


Admission: TypeAlias = Callable[[Context], Awaitable[Callable[[], None]]]


def _guarded(handler: Any, admission: Admission) -> Any:
    """``handler`` that first passes ``admission``, and calls what it returns when it ends."""
    shape = (handler.request_streaming, handler.response_streaming)
    behavior = {
        (False, False): handler.unary_unary,
        (False, True): handler.unary_stream,
        (True, False): handler.stream_unary,
        (True, True): handler.stream_stream,
    }[shape]
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[shape]

    async def run(request: Any, context: Context) -> Any:
        done = await admission(context)
        try:
            return await behavior(request, context)
        finally:
            done()

    async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
        done = await admission(context)
        try:
            async for item in behavior(request, context):
                yield item
        finally:
            done()

    return make(
        stream if inspect.isasyncgenfunction(behavior) else run,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
