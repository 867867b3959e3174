"""Who is calling: the credential in the call's metadata (API key, patient token, share token)."""

from __future__ import annotations

import datetime as dt

import grpc

from mutualrec.api.audit_interceptor import attach
from mutualrec.api.status import abort
from mutualrec.imaging.sharing import LinkState, link_state
from mutualrec.runtime import Runtime
from mutualrec.security.api_keys import InvalidKey, Principal, bearer_token
from mutualrec.security.patient_tokens import (
    looks_like_patient_token,
    looks_like_share_token,
    share_token_hash,
    verify_patient_token,
)
from mutualrec.storage import share_index
from mutualrec.storage.institutions import authenticate

# Roles of credentials that are not API keys.
PATIENT = "patient"
SHARE = "share"


def _check(runtime: Runtime, token: str) -> Principal:
    with runtime.sessions() as session:
        principal = authenticate(session, token)
    runtime.principals.put(token, principal)
    return principal


def _check_share(runtime: Runtime, token: str) -> Principal:
    with runtime.sessions() as session:
        link = share_index.link_by_token_hash(session, share_token_hash(token))
    # Not cached: a revocation must close the link at once.
    now = dt.datetime.now(dt.UTC)
    if link is None or link_state(link.expires_at, link.revoked_at, now) is not LinkState.ACTIVE:
        raise InvalidKey("the share link is unknown, expired or revoked")
    return Principal(
        role=SHARE,
        institution_id=None,
        institution_code=None,
        key_id=link.link_id,
        patient_key=link.patient_key,
        share_link_id=link.link_id,
        shared_study_id=link.study_id,
    )


async def require_caller(
    runtime: Runtime, context: grpc.aio.ServicerContext[object, object]
) -> Principal:
    """Whoever calls with a valid credential, in any role; aborts with UNAUTHENTICATED.

    The credential is an API key (``mrk_...``), a share token (``mrs_...``) or a patient token
    (a JWT); its shape says which.
    """
    try:
        principal = await _principal(runtime, context)
    except InvalidKey as exc:
        await abort(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))
    attach(runtime.audit, context, principal)
    return principal


async def _principal(
    runtime: Runtime, context: grpc.aio.ServicerContext[object, object]
) -> Principal:
    token = bearer_token(context.invocation_metadata())
    if looks_like_share_token(token):
        return await runtime.run_blocking(_check_share, runtime, token)
    if looks_like_patient_token(token):
        key = verify_patient_token(runtime.settings.token_secret, token)
        return Principal(PATIENT, None, None, key_id="patient-token", patient_key=key)
    cached = runtime.principals.get(token)
    if cached is not None:
        return cached
    return await runtime.run_blocking(_check, runtime, token)


async def require_role(
    runtime: Runtime,
    context: grpc.aio.ServicerContext[object, object],
    roles: frozenset[str],
    refusal: str,
) -> Principal:
    """A caller in one of ``roles``; aborts with UNAUTHENTICATED or PERMISSION_DENIED."""
    principal = await require_caller(runtime, context)
    if principal.role not in roles:
        await abort(context, grpc.StatusCode.PERMISSION_DENIED, refusal)
    return principal


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
