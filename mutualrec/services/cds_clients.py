"""Who may call the CDS Hooks services: administrators register an EHR's issuer and public
keys for an institution; every call's JWT is verified against them, and its id recorded so a
replay is refused.

Each server keeps the registered clients' parsed keys in memory (parsing a JWKS costs more than
verifying a signature), forgets them when the administrators' change counter moves
(:class:`mutualrec.change_watch.ChangeWatch`; adding and removing a client bump it), and reads
a client again when its cached keys do not verify a token. A removal takes effect at once
anyway: recording the token's id, which every call does, succeeds only while the registration
the keys came from still exists.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import jwt
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mutualrec.security.access import HOSPITAL
from mutualrec.security.api_keys import InvalidKey, Principal
from mutualrec.security.cds_tokens import (
    BadKeys,
    UnknownSigner,
    VerifiedToken,
    claimed_issuer,
    parsed_keys,
    public_keys,
    verify,
)
from mutualrec.security.token_ids import RecentTokenIds
from mutualrec.services.outage import unavailable_on_outage
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


@dataclass(frozen=True, slots=True)
class _Registered:
    """A registration as a server keeps it: the index's record, its keys parsed, and who its
    calls are."""

    record: cds_clients.ClientRecord
    keys: tuple[jwt.PyJWK, ...]
    principal: Principal


class _Stale(Exception):
    """The registration held in memory may not be the index's any more; ``refusal`` is the
    answer should it be the index's."""

    def __init__(self, refusal: InvalidKey) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal


class CdsClients:
    """Registering, listing and removing CDS clients, and authenticating their calls."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        engine = sessions.kw["bind"]
        assert isinstance(engine, Engine)
        self._engine = engine
        self._uses = itertools.count()
        self._lock = threading.Lock()
        self._registered: dict[str, _Registered] = {}
        # Bumped by forget(): a registration read before is not kept (it may predate a removal).
        self._generation = 0
        self._recent = RecentTokenIds()

    def forget(self) -> None:
        """Drop every registration held in memory (after an administrator's change)."""
        with self._lock:
            self._generation += 1
            self._registered.clear()

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
        self.forget()
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
            removed = cds_clients.remove_client(session, issuer.strip())
        self.forget()
        return removed

    def authenticate(self, token: str, audiences: Sequence[str]) -> Principal:
        """The hospital a CDS client's JWT speaks for, once the token is verified against its
        registered keys for one of ``audiences`` (the endpoint called) and its id is recorded;
        raises :class:`InvalidKey` (unknown issuer, bad signature, expired, replayed...), and
        :class:`Unavailable` when the index cannot be read or written."""
        with unavailable_on_outage("the token cannot be checked now"):
            return self._authenticate(token, audiences)

    def _authenticate(self, token: str, audiences: Sequence[str]) -> Principal:
        issuer = claimed_issuer(token)
        held = self._registered.get(issuer)
        if held is not None:
            try:
                return self._admit(token, audiences, held)
            except _Stale:
                pass  # registered again, or removed, since it was read: read it again
        try:
            return self._admit(token, audiences, self._load(issuer))
        except _Stale as stale:
            raise stale.refusal from None

    def _load(self, issuer: str) -> _Registered:
        with self._lock:
            generation = self._generation
        with self._sessions() as session:
            record = cds_clients.find_client(session, issuer)
        if record is None:
            raise InvalidKey("the token's issuer is not a registered CDS client")
        registered = _Registered(
            record,
            parsed_keys(record.jwks),
            Principal(
                HOSPITAL, record.institution_id, record.institution_code, key_id=f"cds:{issuer}"
            ),
        )
        with self._lock:
            if generation == self._generation:
                self._registered[issuer] = registered
        return registered

    def _admit(self, token: str, audiences: Sequence[str], held: _Registered) -> Principal:
        """``held``'s principal once ``token`` verifies with its keys and its id is recorded;
        :class:`_Stale` when the refusal may come from ``held`` being out of date."""
        record = held.record
        try:
            verified = verify(token, held.keys, record.issuer, audiences)
        except UnknownSigner as unknown:
            raise _Stale(unknown) from None
        self._record(held, verified)
        return held.principal

    def _record(self, held: _Registered, verified: VerifiedToken) -> None:
        issuer = held.record.issuer
        replayed = InvalidKey("the token was used already (jti replayed)")
        if self._recent.seen(issuer, verified.jti):
            raise replayed
        sweep = next(self._uses) % SWEEP_EVERY == 0
        try:
            cds_clients.record_token_use(
                self._engine, held.record, verified.jti, verified.expires_at, sweep
            )
        except cds_clients.ReplayedToken:
            raise replayed from None
        except cds_clients.RemovedClient:
            with self._lock:
                if self._registered.get(issuer) is held:
                    del self._registered[issuer]
            raise _Stale(InvalidKey("the token's issuer is not a registered CDS client")) from None
        self._recent.remember(issuer, verified.jti, verified.expires_at.timestamp())
