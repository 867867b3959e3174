"""The registered CDS clients (EHRs): issuers, their institution and keys; and the JWT ids
they have used, until their tokens expire."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import DateTime, Engine, Select, bindparam, delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mutualrec.storage import admin_changes
from mutualrec.storage.driver_cursors import lent_cursor
from mutualrec.storage.institutions import find_institution
from mutualrec.storage.models import CdsClient, CdsTokenUse, Institution


class DuplicateClient(Exception):
    """The issuer is registered already."""


class ReplayedToken(Exception):
    """The JWT id was used already by this issuer, within its token's lifetime."""


class RemovedClient(Exception):
    """The client a token was verified for is registered no more (removed, or removed and
    registered again with other keys)."""


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A registered CDS client as the index holds it; ``client_id`` is this registration's own
    (registering the issuer again makes another)."""

    client_id: int
    issuer: str
    institution_id: int
    institution_code: str
    jwks: str


def add_client(session: Session, institution_code: str, issuer: str, jwks: str) -> ClientRecord:
    """Register ``issuer`` for the institution; :class:`DuplicateClient` when it is taken,
    :class:`~mutualrec.storage.institutions.UnknownInstitution` for an unknown code."""
    institution = find_institution(session, institution_code)
    client = CdsClient(issuer=issuer, institution_id=institution.id, jwks=jwks)
    try:
        with session.begin_nested():
            session.add(client)
    except IntegrityError:
        raise DuplicateClient(f"issuer {issuer!r} is registered already") from None
    # Servers keep registered keys in memory: the counter has them look again.
    admin_changes.bump(session)
    return ClientRecord(client.id, issuer, institution.id, institution.code, jwks)


def _select() -> Select[int, str, int, str, str]:
    return select(
        CdsClient.id, CdsClient.issuer, CdsClient.institution_id, Institution.code, CdsClient.jwks
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
    if not removed.rowcount:  # type: ignore[attr-defined]
        return False
    admin_changes.bump(session)
    return True


# Recorded only while the registration the token was verified against still exists: servers
# verify with keys they keep in memory, and this statement, which every call runs anyway, is
# what refuses a client removed a moment ago by another process. Its keys and institution are
# compared too: SQLite may give a removed registration's id to the next one.
_REGISTERED = "id = :client_id AND institution_id = :institution_id AND jwks = :jwks"
_USE_TOKEN = text(
    "INSERT INTO cds_token_use (issuer, jti, expires_at) "
    "SELECT :issuer, :jti, :expires_at "
    f"WHERE EXISTS (SELECT 1 FROM cds_client WHERE {_REGISTERED}) "
    "ON CONFLICT (issuer, jti) DO NOTHING RETURNING id"
).bindparams(bindparam("expires_at", type_=DateTime(timezone=True)))
_IS_REGISTERED = text(f"SELECT 1 FROM cds_client WHERE {_REGISTERED}")


def use_token(
    session: Session,
    client: ClientRecord,
    jti: str,
    expires_at: dt.datetime,
    sweep: bool,
) -> None:
    """Record ``jti`` of ``client`` as used until ``expires_at``; :class:`ReplayedToken` when
    it was used already, :class:`RemovedClient` when this registration is gone. With
    ``sweep``, ids of expired tokens are forgotten on the way: they cannot be replayed anyway,
    the token's expiry refuses them."""
    if sweep:
        now = dt.datetime.now(dt.UTC)
        session.execute(delete(CdsTokenUse).where(CdsTokenUse.expires_at < now))
    # One statement, no savepoint: this runs on every CDS call, before its check.
    registration = {
        "client_id": client.client_id,
        "institution_id": client.institution_id,
        "jwks": client.jwks,
    }
    parameters = {"issuer": client.issuer, "jti": jti, "expires_at": expires_at, **registration}
    if session.execute(_USE_TOKEN, parameters).first() is not None:
        return
    # Refused: tell why (rare, so a second statement is fine).
    if session.execute(_IS_REGISTERED, registration).first() is None:
        raise RemovedClient(f"issuer {client.issuer!r} is registered no more")
    raise ReplayedToken(f"the token id {jti[:64]!r} was used already")


# The same statements for the driver's prepared statements (see record_token_use).
_USE_TOKEN_SQL = (
    "INSERT INTO cds_token_use (issuer, jti, expires_at) SELECT %s, %s, %s "
    "WHERE EXISTS (SELECT 1 FROM cds_client WHERE id = %s AND institution_id = %s AND jwks = %s) "
    "ON CONFLICT (issuer, jti) DO NOTHING RETURNING id"
)
_IS_REGISTERED_SQL = "SELECT 1 FROM cds_client WHERE id = %s AND institution_id = %s AND jwks = %s"
_SWEEP_SQL = "DELETE FROM cds_token_use WHERE expires_at < %s"


def record_token_use(
    engine: Engine, client: ClientRecord, jti: str, expires_at: dt.datetime, sweep: bool
) -> None:
    """:func:`use_token` in its own transaction, committed durably (a replay must stay refused
    after a crash).

    It runs on every CDS call: on PostgreSQL straight through the driver with a prepared
    statement, as the check's own statements do, without a session's bookkeeping (half of a
    call's authentication CPU went there); other databases go through a session.
    """
    if engine.dialect.name != "postgresql":
        with Session(engine) as session, session.begin():
            use_token(session, client, jti, expires_at, sweep)
        return
    registration = (client.client_id, client.institution_id, client.jwks)
    with lent_cursor(engine) as cursor, cursor.connection.transaction():
        if sweep:
            cursor.execute(_SWEEP_SQL, (dt.datetime.now(dt.UTC),))
        cursor.execute(
            _USE_TOKEN_SQL, (client.issuer, jti, expires_at, *registration), prepare=True
        )
        if cursor.fetchone() is not None:
            return
        cursor.execute(_IS_REGISTERED_SQL, registration)
        registered = cursor.fetchone() is not None
    if not registered:
        raise RemovedClient(f"issuer {client.issuer!r} is registered no more")
    raise ReplayedToken(f"the token id {jti[:64]!r} was used already")
