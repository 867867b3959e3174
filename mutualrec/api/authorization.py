"""One interceptor authenticates every call and checks its role before any servicer runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from mutualrec.api.auth import admit, authenticate_call
from mutualrec.runtime import Runtime
from mutualrec.security.access import is_public, refusal, roles_for
from mutualrec.security.api_keys import InvalidKey


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses a call without a valid credential (UNAUTHENTICATED) or whose role the matrix of
    :mod:`mutualrec.security.access` does not name for the method (PERMISSION_DENIED)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

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
        admit(principal)
        return handler


def _refusing(handler: Any, code: grpc.StatusCode, message: str) -> Any:
    """A handler of the same shape as ``handler`` that ends the call with ``code``."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[handler.request_streaming, handler.response_streaming]
    return make(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
