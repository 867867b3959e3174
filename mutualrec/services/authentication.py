"""Who a credential names: an API key, a share token, a patient token, or the institution a
verified client certificate names. Every door authenticates through this.

Each credential is first tried without a lookup (:meth:`Authentication.without_lookup`: a
cached key, a patient token's signature), which a door may run on its event loop; only what
needs the index (:meth:`Authentication.look_up`) costs a worker thread.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy.orm import Session

from mutualrec.imaging.sharing import LinkState, link_state
from mutualrec.security.access import HOSPITAL, PATIENT, SHARE
from mutualrec.security.api_keys import InvalidKey, Principal
from mutualrec.security.patient_tokens import (
    check_share_token,
    looks_like_patient_token,
    looks_like_share_token,
    share_token_hash,
    verify_patient_token,
)
from mutualrec.security.principal_cache import PrincipalCache
from mutualrec.storage import share_index
from mutualrec.storage.institutions import UnknownInstitution, authenticate, find_institution

# The cache key of a certificate's institution: never a token's shape.
_CERTIFICATE = "cert:"


class Authentication:
    """Credentials to principals, with API keys and certificates cached (an administrator's
    change clears the cache) and share links read afresh every time (a revocation is
    immediate)."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        principals: PrincipalCache,
        token_secret: bytes,
    ) -> None:
        self._sessions = sessions
        self._principals = principals
        self._token_secret = token_secret

    def without_lookup(self, token: str) -> Principal | None:
        """The principal of ``token`` when no index read is needed (a patient token, a cached
        key), None when :meth:`look_up` must decide; raises :class:`InvalidKey` for a token
        the server cannot have issued."""
        if looks_like_share_token(token):
            # A token the server did not sign costs no worker thread and no lookup.
            check_share_token(self._token_secret, token)
            return None
        if looks_like_patient_token(token):
            key = verify_patient_token(self._token_secret, token)
            return Principal(PATIENT, None, None, key_id="patient-token", patient_key=key)
        return self._principals.get(token)

    def look_up(self, token: str) -> Principal:
        """The principal of an API key or a share token, read from the index; raises
        :class:`InvalidKey`."""
        if looks_like_share_token(token):
            return self._share(token)
        generation = self._principals.generation
        with self._sessions() as session:
            principal = authenticate(session, token)
        self._principals.put(token, principal, generation)
        return principal

    def certificate_without_lookup(self, code: str) -> Principal | None:
        """The cached principal of the institution a verified certificate names."""
        return self._principals.get(_CERTIFICATE + code)

    def certificate(self, code: str) -> Principal:
        """The principal of the institution with ``code``, which a verified client
        certificate names; raises :class:`InvalidKey` when no such institution is known."""
        generation = self._principals.generation
        with self._sessions() as session:
            try:
                institution = find_institution(session, code)
            except UnknownInstitution:
                raise InvalidKey(
                    f"the client certificate names no known institution ({code})"
                ) from None
        principal = Principal(
            HOSPITAL, institution.id, institution.code, key_id=_CERTIFICATE + code
        )
        self._principals.put(_CERTIFICATE + code, principal, generation)
        return principal

    def _share(self, token: str) -> Principal:
        with self._sessions() as session:
            link = share_index.link_by_token_hash(session, share_token_hash(token))
        now = dt.datetime.now(dt.UTC)
        if (
            link is None
            or link_state(link.expires_at, link.revoked_at, now) is not LinkState.ACTIVE
        ):
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
