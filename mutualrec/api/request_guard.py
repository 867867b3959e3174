"""One interceptor between every call and its servicer: what no request may hold ends the call
INVALID_ARGUMENT naming the field, and an exception no servicer expected ends it UNKNOWN with a
correlation id that the server's log line carries too. A domain error a service raised ends the
call with the status :mod:`mutualrec.api.errors` maps its class to: servicers do not abort.

What a request may not hold is decided in :mod:`mutualrec.api.message_check`; per-entry and
per-instance problems of FHIR documents and DICOM instances (inside ``bytes`` fields) stay with
their readers, which reject just that entry or instance.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import descriptor_pool
from google.protobuf.message import Message

from mutualrec.api.errors import status_for
from mutualrec.api.guarded_handlers import GuardedHandlers
from mutualrec.api.message_check import WHOLE_REQUEST, malformed_violation, string_violations
from mutualrec.api.status import unexpected_status
from mutualrec.services.outage import is_unstorable
from mutualrec.violations import DomainError, Rejected, Violation

_LOG = logging.getLogger(__name__)
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True, slots=True)
class _Invalid:
    """Stands in for a request no servicer may see, so the call can say why."""

    violations: list[Violation]


class _Refused(Exception):
    """A request no servicer should see."""

    def __init__(self, violations: list[Violation]) -> None:
        super().__init__("the request is not valid")
        self.violations = violations


def _input_type(method: str) -> pb_descriptor.Descriptor | None:
    """The request message type of ``/package.Service/Method``, when its module is loaded."""
    service, _, name = method.lstrip("/").partition("/")
    try:
        found = descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]
    except KeyError:
        return None
    return found.input_type


def _checked(request: Any) -> Any:
    if isinstance(request, _Invalid):
        raise _Refused(request.violations)
    return request


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _checked(request)


class RequestGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Checks every request message before its servicer reads it, and turns an unexpected
    exception into a logged, traceable UNKNOWN. Placed last, innermost: callers are admitted
    (authenticated, within their limits) before their requests are looked at."""

    def __init__(self) -> None:
        self._guarded = GuardedHandlers()

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        """The servicer's handler, its request checked and its failures accounted for."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = str(handler_call_details.method)
        return self._guarded.get(
            method, handler, lambda name, found: _guarded(found, name, _input_type(name))
        )


def _deserializer(
    parse: Callable[[bytes], Any] | None, descriptor: pb_descriptor.Descriptor | None
) -> Callable[[bytes], Any] | None:
    if parse is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            request = parse(data)
        # Left to gRPC, a parse error ends the call with a bare INTERNAL; protobuf raises
        # DecodeError, and RuntimeWarning or others on some inputs.
        except Exception:
            return _Invalid([malformed_violation(data, descriptor)])
        # NUL is a zero byte in UTF-8: a request without one (most of them) needs no walk.
        if b"\0" in data and isinstance(request, Message):
            violations = string_violations(request)
            if violations:
                return _Invalid(violations)
        return request

    return deserialize


async def _refuse(context: Context, violations: list[Violation]) -> None:
    await context.abort_with_status(status_for(Rejected("the request is not valid", violations)))


async def _unexpected(context: Context, method: str, error: Exception) -> None:
    correlation_id = uuid.uuid4().hex
    if is_unstorable(error):
        # A value the index cannot store that no check caught: the caller's data, so neither
        # UNAVAILABLE (retried forever) nor UNKNOWN; logged, as it shows a check missing.
        _LOG.warning(
            "%s: a request value the index refused, correlation id %s",
            method,
            correlation_id,
            exc_info=error,
        )
        unstorable = Rejected.one(
            f"a value of the request cannot be stored; correlation id {correlation_id}",
            WHOLE_REQUEST,
            "holds a value out of the range stored",
            "UNSTORABLE_VALUE",
        )
        await context.abort_with_status(status_for(unstorable))
    _LOG.error("%s failed, correlation id %s", method, correlation_id, exc_info=error)
    await context.abort_with_status(unexpected_status(correlation_id))


def _guarded(handler: Any, method: str, descriptor: pb_descriptor.Descriptor | None) -> Any:
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
    check = _checked_stream if handler.request_streaming else _checked

    async def run(request: Any, context: Context) -> Any:
        try:
            return await behavior(check(request), context)
        except _Refused as refused:
            await _refuse(context, refused.violations)
        except DomainError as error:
            await context.abort_with_status(status_for(error))
        except grpc.aio.BaseError:
            raise  # the servicer ended the call itself (abort)
        except Exception as error:
            await _unexpected(context, method, error)

    async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
        try:
            async for item in behavior(check(request), context):
                yield item
        except _Refused as refused:
            await _refuse(context, refused.violations)
        except DomainError as error:
            await context.abort_with_status(status_for(error))
        except grpc.aio.BaseError:
            raise
        except Exception as error:
            await _unexpected(context, method, error)

    return make(
        stream if inspect.isasyncgenfunction(behavior) else run,
        request_deserializer=_deserializer(handler.request_deserializer, descriptor),
        response_serializer=handler.response_serializer,
    )
