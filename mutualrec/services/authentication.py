"""Who a credential names: an API key, a share token, a patient token, or the institution a
verified client certificate names. Every door authenticates through this.

Each credential is first tried without a lookup (:meth:`Authentication.without_lookup`: a
cached key, a patient token's signature), which a door may run on its event loop; only what
needs the index (:meth:`Authentication.look_up`) costs a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy.orm import Session

from mutualrec.security.access import DOCTOR, HOSPITAL, PATIENT
from mutualrec.security.api_keys import InvalidKey, Principal
from mutualrec.security.patient_tokens import (
    check_share_token,
    looks_like_patient_token,
    looks_like_share_token,
    verify_patient_token,
)
from mutualrec.security.principal_cache import PrincipalCache
from mutualrec.security.study_links import looks_like_study_link_token, verify_study_link_token
from mutualrec.services.outage import unavailable_on_outage
from mutualrec.services.sharing import Sharing
from mutualrec.storage.institutions import UnknownInstitution, authenticate, find_institution

# The cache key of a certificate's institution: never a token's shape.
_CERTIFICATE = "cert:"


def _unavailable() -> AbstractContextManager[None]:
    # Every door authenticates before anything else: a database that cannot be reached must
    # end the call UNAVAILABLE (try again), as a call's own work would, not as an unknown fault.
    return unavailable_on_outage("the credential cannot be checked now")


def study_link_principal(token_secret: bytes, token: str) -> Principal:
    """Who a study-link token (an ``open_url``'s) names: its institution as a doctor opening
    the one study its check recognized. Raises :class:`InvalidKey`. The reads it makes are
    checked against that check in the index (:mod:`mutualrec.services.patient_history`)."""
    grant = verify_study_link_token(token_secret, token)
    return Principal(
        DOCTOR,
        grant.institution_id,
        None,
        key_id=f"check:{grant.check_id}",
        check_id=grant.check_id,
        checked_study_uid=grant.study_instance_uid,
        valid_until=grant.expires_at,
    )


class Authentication:
    """Credentials to principals, with API keys and certificates cached (an administrator's
    change clears the cache) and share links read afresh every time (a revocation is
    immediate)."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        principals: PrincipalCache,
        token_secret: bytes,
        sharing: Sharing,
    ) -> None:
        self._sessions = sessions
        self._principals = principals
        self._token_secret = token_secret
        # Share links are the sharing service's: it reads them afresh on every call.
        self._sharing = sharing

    def without_lookup(self, token: str) -> Principal | None:
        """The principal of ``token`` when no index read is needed (a patient token, a cached
        key), None when :meth:`look_up` must decide; raises :class:`InvalidKey` for a token
        the server cannot have issued."""
        if looks_like_share_token(token):
            # A token the server did not sign costs no worker thread and no lookup.
            check_share_token(self._token_secret, token)
            return None
        if looks_like_study_link_token(token):
            return study_link_principal(self._token_secret, token)
        if looks_like_patient_token(token):
            key = verify_patient_token(self._token_secret, token)
            return Principal(PATIENT, None, None, key_id="patient-token", patient_key=key)
        return self._principals.get(token)

    def look_up(self, token: str) -> Principal:
        """The principal of an API key or a share token, read from the index; raises
        :class:`InvalidKey`, and :class:`Unavailable` when the index cannot be read."""
        with _unavailable():
            return self._look_up(token)

    def _look_up(self, token: str) -> Principal:
        if looks_like_share_token(token):
            return self._sharing.principal(token)
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
        certificate names; raises :class:`InvalidKey` when no such institution is known, and
        :class:`Unavailable` when the index cannot be read."""
        generation = self._principals.generation
        with _unavailable(), self._sessions() as session:
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
