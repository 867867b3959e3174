"""Who is calling: the API key of the call's metadata, checked against the index."""

from __future__ import annotations

import grpc

from mutualrec.api.status import abort
from mutualrec.runtime import Runtime
from mutualrec.security.api_keys import InvalidKey, Principal, bearer_token
from mutualrec.storage.institutions import authenticate


def _check(runtime: Runtime, token: str) -> Principal:
    with runtime.sessions() as session:
        return authenticate(session, token)


async def require_hospital(
    runtime: Runtime, context: grpc.aio.ServicerContext[object, object]
) -> Principal:
    """The calling hospital; aborts with UNAUTHENTICATED or PERMISSION_DENIED otherwise."""
    try:
        token = bearer_token(context.invocation_metadata())
        principal = await runtime.run_blocking(_check, runtime, token)
    except InvalidKey as exc:
        await abort(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))
    if principal.role != "hospital" or principal.institution_id is None:
        await abort(context, grpc.StatusCode.PERMISSION_DENIED, "only hospitals may ingest")
    return principal
