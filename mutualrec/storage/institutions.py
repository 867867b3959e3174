"""Institutions and their credentials in the index."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mutualrec.security.access import ADMIN, HOSPITAL, REGULATOR
from mutualrec.security.api_keys import (
    InvalidKey,
    IssuedKey,
    Principal,
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


def add_key(
    session: Session, issued: IssuedKey, role: str, institution_code: str | None = None
) -> None:
    """Keep a freshly issued key (its hash, never its token) for ``role``: a hospital's key
    names its institution; a regulator's (health commission: aggregates only) or an
    administrator's (the identity provider minting patient tokens) names none."""
    if role not in ROLES:
        raise ValueError(f"{role!r} is not a role of API keys")
    if (role == HOSPITAL) != (institution_code is not None):
        raise ValueError(f"a {role} key names {'its' if role == HOSPITAL else 'no'} institution")
    institution_id = (
        None if institution_code is None else find_institution(session, institution_code).id
    )
    session.add(
        ApiKey(
            key_id=issued.key_id,
            secret_sha256=issued.secret_sha256,
            role=role,
            institution_id=institution_id,
        )
    )
    session.flush()


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


def rotate_key(session: Session, key_id: str, successor: IssuedKey, until: dt.datetime) -> None:
    """Keep ``successor`` with the same role and institution as ``key_id``, which keeps working
    until ``until`` so clients can switch without an outage; raises :class:`LookupError` when
    ``key_id`` names no live key."""
    old = session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
    if old is None or (
        old.revoked_at is not None and as_utc(old.revoked_at) <= dt.datetime.now(dt.UTC)
    ):
        raise LookupError(f"no live key {key_id}")
    session.add(
        ApiKey(
            key_id=successor.key_id,
            secret_sha256=successor.secret_sha256,
            role=old.role,
            institution_id=old.institution_id,
        )
    )
    revoke_key(session, key_id, at=until)
    session.flush()


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
