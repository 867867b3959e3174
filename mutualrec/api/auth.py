"""Who is calling: the credential in the call's metadata (API key, patient token, share token).

:class:`mutualrec.api.authorization.AuthorizationInterceptor` authenticates every call and checks
its role against :mod:`mutualrec.security.access` before a servicer runs; the servicer then asks
:func:`caller` for the principal.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Mapping, Sequence

import grpc

from mutualrec.api.audit_interceptor import attach
from mutualrec.runtime import Runtime
from mutualrec.security.access import HOSPITAL, PATIENT
from mutualrec.security.api_keys import InvalidKey, Principal, bearer_token, has_bearer
from mutualrec.security.patient_tokens import (
    check_share_token,
    looks_like_patient_token,
    looks_like_share_token,
    verify_patient_token,
)
from mutualrec.storage.institutions import UnknownInstitution, authenticate, find_institution

# The principal of the call in progress, set by the authorization interceptor.
_CALLER: contextvars.ContextVar[Principal] = contextvars.ContextVar("mutualrec_caller")


def _check(runtime: Runtime, token: str) -> Principal:
    generation = runtime.principals.generation
    with runtime.sessions() as session:
        principal = authenticate(session, token)
    runtime.principals.put(token, principal, generation)
    return principal


def _check_certificate(runtime: Runtime, code: str) -> Principal:
    generation = runtime.principals.generation
    with runtime.sessions() as session:
        try:
            institution = find_institution(session, code)
        except UnknownInstitution:
            raise InvalidKey(
                f"the client certificate names no known institution ({code})"
            ) from None
    principal = Principal(HOSPITAL, institution.id, institution.code, key_id=f"cert:{code}")
    runtime.principals.put(f"cert:{code}", principal, generation)
    return principal


def certified_institution(peer: Mapping[str, Iterable[bytes]] | None) -> str | None:
    """The institution code a verified client certificate names (its subject CN), if any.

    gRPC fills ``x509_common_name`` only for a certificate it verified against
    ``MUTUALREC_TLS_CLIENT_CA``, which it requires of every client once that is set.
    """
    names = list((peer or {}).get("x509_common_name", ()))
    return names[0].decode("utf-8") if names else None


async def authenticate_call(
    runtime: Runtime,
    metadata: Sequence[tuple[str, str | bytes]] | None,
    peer: Mapping[str, Iterable[bytes]] | None = None,
) -> Principal:
    """The principal of the call's credential; raises :class:`InvalidKey`.

    The credential is an API key (``mrk_...``), a share token (``mrs_...``) or a patient token
    (a JWT) in ``metadata``, its shape saying which; or, without one, the hospital a verified
    client certificate names (``peer``, the call's TLS auth context). Sent together, the key
    must be that same hospital's: a certificate is not a carrier for someone else's key.
    """
    certified = certified_institution(peer)
    if certified is not None and not has_bearer(metadata):
        cached = runtime.principals.get(f"cert:{certified}")
        if cached is not None:
            return cached
        return await runtime.run_blocking(_check_certificate, runtime, certified)
    principal = await _token_principal(runtime, tuple(metadata or ()))
    if certified is not None and (
        principal.role != HOSPITAL or principal.institution_code != certified
    ):
        raise InvalidKey(
            f"the credential sent is not {certified}'s, whose client certificate carries the call"
        )
    return principal


async def _token_principal(
    runtime: Runtime, metadata: tuple[tuple[str, str | bytes], ...]
) -> Principal:
    token = bearer_token(metadata)
    if looks_like_share_token(token):
        # A token the server did not sign costs no worker thread and no lookup.
        check_share_token(runtime.settings.token_secret, token)
        return await runtime.run_blocking(runtime.sharing.principal, token)
    if looks_like_patient_token(token):
        key = verify_patient_token(runtime.settings.token_secret, token)
        return Principal(PATIENT, None, None, key_id="patient-token", patient_key=key)
    cached = runtime.principals.get(token)
    if cached is not None:
        return cached
    return await runtime.run_blocking(_check, runtime, token)


def admit(principal: Principal) -> None:
    """Make ``principal`` the caller of the call in progress (the interceptor's last step)."""
    _CALLER.set(principal)


def caller(runtime: Runtime, context: grpc.aio.ServicerContext[object, object]) -> Principal:
    """The authorized caller of this call, recorded in its audit entries."""
    principal = _CALLER.get()
    attach(runtime.audit, context, principal)
    return principal
