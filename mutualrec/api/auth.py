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
from mutualrec.security.access import HOSPITAL
from mutualrec.security.api_keys import InvalidKey, Principal, bearer_token, has_bearer

# The principal of the call in progress, set by the authorization interceptor.
_CALLER: contextvars.ContextVar[Principal] = contextvars.ContextVar("mutualrec_caller")


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
    authentication = runtime.authentication
    certified = certified_institution(peer)
    if certified is not None and not has_bearer(metadata):
        cached = authentication.certificate_without_lookup(certified)
        if cached is not None:
            return cached
        return await runtime.run_blocking(authentication.certificate, certified)
    token = bearer_token(tuple(metadata or ()))
    principal = authentication.without_lookup(token)
    if principal is None:
        principal = await runtime.run_blocking(authentication.look_up, token)
    if certified is not None and (
        principal.role != HOSPITAL or principal.institution_code != certified
    ):
        raise InvalidKey(
            f"the credential sent is not {certified}'s, whose client certificate carries the call"
        )
    return principal


def admit(principal: Principal) -> None:
    """Make ``principal`` the caller of the call in progress (the interceptor's last step)."""
    _CALLER.set(principal)


def caller(runtime: Runtime, context: grpc.aio.ServicerContext[object, object]) -> Principal:
    """The authorized caller of this call, recorded in its audit entries."""
    principal = _CALLER.get()
    attach(runtime.audit, context, principal)
    return principal
