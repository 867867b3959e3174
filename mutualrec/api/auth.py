"""Who is calling: the API key of the call's metadata, checked against the index."""

from __future__ import annotations

import grpc

from mutualrec.api.status import abort
from mutualrec.runtime import Runtime
from mutualrec.security.api_keys import InvalidKey, Principal, bearer_token
from mutualrec.storage.institutions import authenticate


def _check(runtime: Runtime, token: str) -> Principal:
    with runtime.sessions() as session:
        principal = authenticate(session, token)
    runtime.principals.put(token, principal)
    return principal


async def require_caller(
    runtime: Runtime, context: grpc.aio.ServicerContext[object, object]
) -> Principal:
    """Whoever calls with a valid, unrevoked key, in any role; aborts with UNAUTHENTICATED."""
    try:
        token = bearer_token(context.invocation_metadata())
        cached = runtime.principals.get(token)
        if cached is not None:
            return cached
        return await runtime.run_blocking(_check, runtime, token)
    except InvalidKey as exc:
        await abort(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))


async def require_hospital(
    runtime: Runtime, context: grpc.aio.ServicerContext[object, object]
) -> Principal:
    """The calling hospital; aborts with UNAUTHENTICATED or PERMISSION_DENIED otherwise."""
    principal = await require_caller(runtime, context)
    if principal.role != "hospital" or principal.institution_id is None:
        await abort(context, grpc.StatusCode.PERMISSION_DENIED, "only hospitals may ingest")
    return principal


async def require_regulator(
    runtime: Runtime, context: grpc.aio.ServicerContext[object, object]
) -> Principal:
    """A regulator's key; aborts with UNAUTHENTICATED or PERMISSION_DENIED otherwise."""
    principal = await require_caller(runtime, context)
    if principal.role != "regulator":
        await abort(
            context,
            grpc.StatusCode.PERMISSION_DENIED,
            "only regulator keys may read statistics",
        )
    return principal
