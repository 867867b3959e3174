"""One interceptor admits every call before its servicer runs: who calls, whether their role may
call this method, and whether their credential is within its limits."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from mutualrec.api.auth import admit, authenticate_call
from mutualrec.api.errors import status_for
from mutualrec.api.guarded_handlers import GuardedHandlers
from mutualrec.api.message_check import WHOLE_REQUEST
from mutualrec.api.status import abort_with_violations, retry_status
from mutualrec.runtime import Runtime
from mutualrec.security.access import is_public, refusal, roles_for
from mutualrec.security.api_keys import InvalidKey
from mutualrec.security.limits import limit_key
from mutualrec.violations import DomainError, Violation

# Calls that hold a slot of their credential while they run: a PACS gateway streaming studies.
_SLOTTED = frozenset({"/mutualrec.v1.IngestService/UploadStudy"})

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses a call without a valid credential (UNAUTHENTICATED), whose role the matrix of
    :mod:`mutualrec.security.access` does not name for the method (PERMISSION_DENIED), or whose
    credential or client address is over its limits (RESOURCE_EXHAUSTED, with a
    ``google.rpc.RetryInfo`` saying when to try again).

    The check runs as the first step of the servicer's own handler, where the call's TLS peer
    (a hospital's client certificate) is known, and before its request arrives: a caller
    without credentials never holds a call slot while the server waits for its request, and a
    request that does not come within ``MUTUALREC_REQUEST_TIMEOUT_SECONDS`` ends the call.
    Nothing of the servicer runs before the check passes. Public methods (health, reflection)
    need no credential but obey the same per-address cap and request timeout.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.calls = runtime.limits.calls
        self.uploads = runtime.limits.uploads
        self.peers = runtime.limits.peers
        self.auth_failures = runtime.limits.auth_failures
        self._guarded = GuardedHandlers()

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        """The servicer's handler, guarded by the admission check."""
        method = str(handler_call_details.method)
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return self._guarded.get(method, handler, self._guard)

    def _guard(self, method: str, handler: Any) -> Any:
        public = is_public(method)
        return _guarded(
            handler,
            lambda context: self._admit(method, public, context),
            self.runtime.settings.request_timeout_seconds,
        )

    async def _admit(self, method: str, public: bool, context: Context) -> Callable[[], None]:
        """Admit the call (or end it); returns what to do when it ends."""
        metadata = context.invocation_metadata()
        peer = peer_address(context.peer())
        if not self.peers.acquire(peer):
            await context.abort_with_status(
                retry_status(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"at most {self.peers.limit} calls at once from one address",
                    1.0,
                )
            )
        try:
            done = _nothing if public else await self._authorize(method, metadata, context, peer)
        except BaseException:
            self.peers.release(peer)
            raise

        def release() -> None:
            done()
            self.peers.release(peer)

        return release

    async def _authorize(
        self, method: str, metadata: Any, context: Context, peer: str
    ) -> Callable[[], None]:
        # An address whose credentials keep failing is refused before its next credential costs
        # a lookup: guessing keys or share tokens must not turn into index queries.
        wait = self.auth_failures.delay(peer)
        if wait > 0:
            await context.abort_with_status(
                retry_status(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "too many failed authentications from this address",
                    wait,
                )
            )
        try:
            principal = await authenticate_call(self.runtime, metadata, context.auth_context())
        except InvalidKey as exc:
            self.auth_failures.take(peer)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        except DomainError as error:  # the index unreachable: UNAVAILABLE
            await context.abort_with_status(status_for(error))
        if principal.role not in roles_for(method):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal(method, principal.role))
        key = limit_key(principal)
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


def peer_address(peer: str | None) -> str:
    """The client's address in a gRPC peer string, without its port: ``ipv4:10.0.0.7:53122``
    is ``ipv4:10.0.0.7``, ``ipv6:[::1]:53122`` is ``ipv6:[::1]``; every connection from one
    host counts as one peer."""
    if not peer:
        return ""
    scheme, _, rest = peer.partition(":")
    if scheme in {"ipv4", "ipv6"}:
        return f"{scheme}:{rest.rsplit(':', 1)[0]}"
    return peer


def _nothing() -> None:
    """Nothing to give back when the call ends."""


Admission: TypeAlias = Callable[[Context], Awaitable[Callable[[], None]]]


def _guarded(handler: Any, admission: Admission, request_timeout: float) -> Any:
    """``handler`` that first passes ``admission``, and calls what it returns when it ends.

    Whatever its method's shape, the handler returned reads its requests as a stream: gRPC runs
    a unary handler only once the request has arrived, so a unary call that sends headers and
    never its request would hold its slot of ``maximum_concurrent_rpcs`` unchecked for ever.
    Here it is admitted from its metadata at once, and waits ``request_timeout`` seconds at most
    for its request (a stream: for its first message).
    """
    request_streaming = handler.request_streaming
    behavior = {
        (False, False): handler.unary_unary,
        (False, True): handler.unary_stream,
        (True, False): handler.stream_unary,
        (True, True): handler.stream_stream,
    }[(request_streaming, handler.response_streaming)]

    async def requests(messages: Any, context: Context) -> Any:
        """What ``behavior`` takes: the one request, or the stream with its first message."""
        first = await _first_request(context, request_timeout)
        if request_streaming:
            return _followed_by(first, messages)
        if first is grpc.aio.EOF:
            await abort_with_violations(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "the call ended before sending its request",
                [
                    Violation(
                        WHOLE_REQUEST, "a unary call sends exactly one request", "MISSING_REQUEST"
                    )
                ],
            )
        return first

    async def run(messages: Any, context: Context) -> Any:
        done = await admission(context)
        try:
            return await behavior(await requests(messages, context), context)
        finally:
            done()

    async def stream(messages: Any, context: Context) -> AsyncIterator[Any]:
        done = await admission(context)
        try:
            async for item in behavior(await requests(messages, context), context):
                yield item
        finally:
            done()

    make = (
        grpc.stream_stream_rpc_method_handler
        if handler.response_streaming
        else grpc.stream_unary_rpc_method_handler
    )
    # A streaming reply comes from an async generator, or from context.write (health's Watch).
    return make(
        stream if inspect.isasyncgenfunction(behavior) else run,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


async def _first_request(context: Context, seconds: float) -> Any:
    """The call's first request message (EOF: none, the stream ended), or the call ended if it
    does not come in time."""
    try:
        # Not asyncio.wait_for: on Python 3.11 it runs the read as a task of its own, with a
        # future and callbacks, on every call (1.8 % of a check's GIL time in a profile).
        async with asyncio.timeout(seconds):
            return await context.read()
    except TimeoutError:
        await context.abort(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"no request arrived within {seconds:g} s of the call's start",
        )
    except DecodeError:
        await abort_with_violations(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            "the request is not valid protobuf",
            [
                Violation(
                    WHOLE_REQUEST, "the request does not decode as its message", "MALFORMED_REQUEST"
                )
            ],
        )


async def _followed_by(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The stream whose first message was read already (EOF: an empty stream)."""
    if first is grpc.aio.EOF:
        return
    yield first
    async for message in rest:
        yield message
