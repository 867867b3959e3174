"""Institutions and their credentials in the index."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mutualrec.security.access import ADMIN, HOSPITAL, REGULATOR
from mutualrec.security.api_keys import (
    InvalidKey,
    Principal,
    issue_key,
    secret_matches,
    split_token,
)
from mutualrec.storage import admin_changes
from mutualrec.storage.models import ApiKey, Institution
from mutualrec.storage.sql import as_utc

LEVELS = ("tertiary", "secondary", "primary")
# Roles of API keys: a hospital ingests and checks; a regulator reads aggregate statistics only;
# an identity provider (admin) vouches for patients by minting their tokens. Patients and share
# links hold tokens, not keys.
ROLES = (HOSPITAL, REGULATOR, ADMIN)
DEFAULT_CITY = "chongqing"
DEFAULT_REGION = "chengdu-chongqing"
# Width of the institution.city and institution.region columns.
PLACE_MAX = 32


class DuplicateInstitution(Exception):
    """An institution with that code exists already."""


class UnknownInstitution(LookupError):
    """No institution with that code."""


def add_institution(
    session: Session,
    code: str,
    name: str,
    district: str,
    level: str,
    *,
    city: str = DEFAULT_CITY,
    region: str = DEFAULT_REGION,
) -> Institution:
    """Register an institution; ``code`` is its stable identifier in the region.

    ``city`` and ``region`` decide which qualification scopes reach it; they are compared
    exactly, so they are stored in lower case.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    if not code.strip() or not name.strip():
        raise ValueError("an institution needs a code and a name")
    place = {"city": city.strip().lower(), "region": region.strip().lower()}
    for label, value in place.items():
        if not value or len(value) > PLACE_MAX:
            raise ValueError(f"an institution's {label} is 1 to {PLACE_MAX} characters")
    institution = Institution(
        code=code.strip(), name=name.strip(), district=district.strip(), level=level, **place
    )
    session.add(institution)
    try:
        session.flush()
    except IntegrityError:
        raise DuplicateInstitution(f"institution {code} exists already") from None
    admin_changes.bump(session)
    return institution


def find_institution(session: Session, code: str) -> Institution:
    """The institution with ``code``."""
    institution = session.scalar(select(Institution).where(Institution.code == code))
    if institution is None:
        raise UnknownInstitution(f"no institution with code {code!r}")
    return institution


def issue_institution_key(session: Session, code: str) -> str:
    """Make an API key for a hospital; returns the token, which is never stored."""
    institution = find_institution(session, code)
    issued = issue_key()
    session.add(
        ApiKey(
            key_id=issued.key_id,
            secret_sha256=issued.secret_sha256,
            role=HOSPITAL,
            institution_id=institution.id,
        )
    )
    session.flush()
    return issued.token


def issue_role_key(session: Session, role: str) -> str:
    """Make an API key that names no institution: a regulator's (health commission:
    aggregates only) or an administrator's (the identity provider minting patient tokens)."""
    if role not in (REGULATOR, ADMIN):
        raise ValueError(f"{role!r} keys belong to an institution")
    issued = issue_key()
    session.add(
        ApiKey(
            key_id=issued.key_id,
            secret_sha256=issued.secret_sha256,
            role=role,
            institution_id=None,
        )
    )
    session.flush()
    return issued.token


def revoke_key(session: Session, key_id: str, at: dt.datetime | None = None) -> bool:
    """Revoke a key by its id, now or at ``at`` (a rotation's grace period); True if a key
    that was not already revoked by then was."""
    when = at or dt.datetime.now(dt.UTC)
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.key_id == key_id, (ApiKey.revoked_at.is_(None)) | (ApiKey.revoked_at > when))
        .values(revoked_at=when)
    )
    if result.rowcount:  # type: ignore[attr-defined]
        admin_changes.bump(session)
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Rotation:
    """A key's successor, and when the key it replaces stops working."""

    token: str
    old_key_until: dt.datetime


def rotate_key(session: Session, key_id: str, grace: dt.timedelta) -> Rotation:
    """A new key of the same role and institution as ``key_id``, which keeps working for
    ``grace`` so clients can switch without an outage; raises :class:`LookupError` when
    ``key_id`` names no live key."""
    now = dt.datetime.now(dt.UTC)
    old = session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
    if old is None or (old.revoked_at is not None and as_utc(old.revoked_at) <= now):
        raise LookupError(f"no live key {key_id}")
    issued = issue_key()
    session.add(
        ApiKey(
            key_id=issued.key_id,
            secret_sha256=issued.secret_sha256,
            role=old.role,
            institution_id=old.institution_id,
        )
    )
    until = now + grace
    revoke_key(session, key_id, at=until)
    session.flush()
    return Rotation(issued.token, until)


def authenticate(session: Session, token: str) -> Principal:
    """The principal a presented token stands for; raises :class:`InvalidKey`."""
    key_id, secret = split_token(token)
    row = session.execute(
        select(ApiKey, Institution.code)
        .outerjoin(Institution, Institution.id == ApiKey.institution_id)
        .where(ApiKey.key_id == key_id)
    ).one_or_none()
    # The same message for unknown, wrong and revoked keys: a caller learns nothing from it.
    revoked_at = row[0].revoked_at if row is not None else None
    if (
        row is None
        or (revoked_at is not None and as_utc(revoked_at) <= dt.datetime.now(dt.UTC))
        or not secret_matches(secret, row[0].secret_sha256)
    ):
        raise InvalidKey("the API key is unknown, wrong or revoked")
    key, institution_code = row
    return Principal(
        key.role,
        key.institution_id,
        institution_code,
        key.key_id,
        valid_until=None if revoked_at is None else as_utc(revoked_at),
    )
