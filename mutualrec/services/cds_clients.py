"""Who may call the CDS Hooks services: administrators register an EHR's issuer and public
keys for an institution; every call's JWT is verified against them, and its id recorded so a
replay is refused."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from mutualrec.security.access import HOSPITAL
from mutualrec.security.api_keys import InvalidKey, Principal
from mutualrec.security.cds_tokens import BadKeys, claimed_issuer, public_keys, verify
from mutualrec.storage import cds_clients
from mutualrec.storage.institutions import UnknownInstitution
from mutualrec.violations import Conflict, NotFound, Rejected

MAX_ISSUER = 255
# Expired token ids are swept on one call in this many: each sweep deletes what expired since the
# last, and calls at once do not queue on deleting the same rows.
SWEEP_EVERY = 100


@dataclass(frozen=True, slots=True)
class CdsClient:
    """A registered EHR: its issuer, its institution, and how many public keys it has."""

    issuer: str
    institution_code: str
    key_count: int


def _issuer(text: str) -> str:
    issuer = text.strip()
    if not issuer or len(issuer) > MAX_ISSUER or any(not c.isprintable() for c in issuer):
        raise Rejected.one(
            "not an issuer",
            "issuer",
            f"the EHR's iss: 1 to {MAX_ISSUER} printable characters, usually its URL",
            "BAD_ISSUER",
        )
    return issuer


def _count(jwks: str) -> int:
    return len(json.loads(jwks)["keys"])


class CdsClients:
    """Registering, listing and removing CDS clients, and authenticating their calls."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._uses = itertools.count()

    def add(self, institution_code: str, issuer: str, keys: str) -> CdsClient:
        """Register ``issuer`` with ``keys`` (a JWKS, a JWK or a PEM public key) for the
        institution: :class:`Conflict` when the issuer is taken, :class:`NotFound` for an
        unknown institution, :class:`Rejected` for a malformed issuer or keys."""
        issuer = _issuer(issuer)
        try:
            jwks = public_keys(keys)
        except BadKeys as exc:
            raise Rejected.one("the keys cannot be used", "jwks", str(exc), "BAD_KEYS") from None
        with self._sessions.begin() as session:
            try:
                added = cds_clients.add_client(session, institution_code.strip(), issuer, jwks)
            except UnknownInstitution as unknown:
                raise NotFound(str(unknown)) from None
            except cds_clients.DuplicateClient as taken:
                raise Conflict(str(taken)) from None
        return CdsClient(added.issuer, added.institution_code, _count(jwks))

    def list(self) -> list[CdsClient]:
        """Every registered client, by issuer."""
        with self._sessions() as session:
            return [
                CdsClient(c.issuer, c.institution_code, _count(c.jwks))
                for c in cds_clients.list_clients(session)
            ]

    def remove(self, issuer: str) -> bool:
        """Forget ``issuer``; whether it was registered. Its next call is refused."""
        with self._sessions.begin() as session:
            return cds_clients.remove_client(session, issuer.strip())

    def authenticate(self, token: str, audiences: Sequence[str]) -> Principal:
        """The hospital a CDS client's JWT speaks for, once the token is verified against its
        registered keys for one of ``audiences`` (the endpoint called) and its id is recorded;
        raises
        :class:`InvalidKey` (unknown issuer, bad signature, expired, replayed...)."""
        issuer = claimed_issuer(token)
        with self._sessions() as session:
            client = cds_clients.find_client(session, issuer)
        if client is None:
            raise InvalidKey("the token's issuer is not a registered CDS client")
        verified = verify(token, client.jwks, issuer, audiences)
        with self._sessions.begin() as session:
            try:
                sweep = next(self._uses) % SWEEP_EVERY == 0
                cds_clients.use_token(session, issuer, verified.jti, verified.expires_at, sweep)
            except cds_clients.ReplayedToken:
                raise InvalidKey("the token was used already (jti replayed)") from None
        return Principal(
            HOSPITAL, client.institution_id, client.institution_code, key_id=f"cds:{issuer}"
        )
