"""The registered CDS clients (EHRs): issuers, their institution and keys; and the JWT ids
they have used, until their tokens expire."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import DateTime, Select, bindparam, delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mutualrec.storage.institutions import find_institution
from mutualrec.storage.models import CdsClient, CdsTokenUse, Institution


class DuplicateClient(Exception):
    """The issuer is registered already."""


class ReplayedToken(Exception):
    """The JWT id was used already by this issuer, within its token's lifetime."""


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A registered CDS client as the index holds it."""

    issuer: str
    institution_id: int
    institution_code: str
    jwks: str


def add_client(session: Session, institution_code: str, issuer: str, jwks: str) -> ClientRecord:
    """Register ``issuer`` for the institution; :class:`DuplicateClient` when it is taken,
    :class:`~mutualrec.storage.institutions.UnknownInstitution` for an unknown code."""
    institution = find_institution(session, institution_code)
    try:
        with session.begin_nested():
            session.add(CdsClient(issuer=issuer, institution_id=institution.id, jwks=jwks))
    except IntegrityError:
        raise DuplicateClient(f"issuer {issuer!r} is registered already") from None
    return ClientRecord(issuer, institution.id, institution.code, jwks)


def _select() -> Select[str, int, str, str]:
    return select(
        CdsClient.issuer, CdsClient.institution_id, Institution.code, CdsClient.jwks
    ).join(Institution, Institution.id == CdsClient.institution_id)


def list_clients(session: Session) -> list[ClientRecord]:
    """Every registered client, by issuer."""
    return [ClientRecord(*row) for row in session.execute(_select().order_by(CdsClient.issuer))]


def find_client(session: Session, issuer: str) -> ClientRecord | None:
    """The client registered as ``issuer``, if any."""
    row = session.execute(_select().where(CdsClient.issuer == issuer)).first()
    return ClientRecord(*row) if row is not None else None


def remove_client(session: Session, issuer: str) -> bool:
    """Forget ``issuer``; whether it was registered."""
    removed = session.execute(delete(CdsClient).where(CdsClient.issuer == issuer))
    return bool(removed.rowcount)  # type: ignore[attr-defined]


_USE_TOKEN = text(
    "INSERT INTO cds_token_use (issuer, jti, expires_at) VALUES (:issuer, :jti, :expires_at) "
    "ON CONFLICT (issuer, jti) DO NOTHING RETURNING id"
).bindparams(bindparam("expires_at", type_=DateTime(timezone=True)))


def use_token(
    session: Session, issuer: str, jti: str, expires_at: dt.datetime, sweep: bool
) -> None:
    """Record ``jti`` of ``issuer`` as used until ``expires_at``; :class:`ReplayedToken` when
    it was used already. With ``sweep``, ids of expired tokens are forgotten on the way: they
    cannot be replayed anyway, the token's expiry refuses them."""
    if sweep:
        now = dt.datetime.now(dt.UTC)
        session.execute(delete(CdsTokenUse).where(CdsTokenUse.expires_at < now))
    # One statement, no savepoint: this runs on every CDS call, before its check.
    recorded = session.execute(_USE_TOKEN, {"issuer": issuer, "jti": jti, "expires_at": expires_at})
    if recorded.first() is None:
        raise ReplayedToken(f"the token id {jti[:64]!r} was used already")
