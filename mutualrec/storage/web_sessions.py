"""Browser sessions of the web pages: opened, found by the hash of their cookie, touched,
ended; and whether the credential a session was opened with still stands."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mutualrec.storage.models import ApiKey, ShareLink, WebSession
from mutualrec.storage.sql import as_utc


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A session as the index holds it."""

    id_sha256: str
    role: str
    key_id: str
    institution_id: int | None
    institution_code: str | None
    patient_key: str | None
    shared_study_id: int | None
    check_id: str | None
    checked_study_uid: str | None
    landing: str
    created_at: dt.datetime
    last_seen_at: dt.datetime
    expires_at: dt.datetime
    ended_at: dt.datetime | None


def add_session(session: Session, stored: StoredSession) -> None:
    """Record a new session."""
    session.add(
        WebSession(
            id_sha256=stored.id_sha256,
            role=stored.role,
            key_id=stored.key_id,
            institution_id=stored.institution_id,
            institution_code=stored.institution_code,
            patient_key=stored.patient_key,
            shared_study_id=stored.shared_study_id,
            check_id=stored.check_id,
            checked_study_uid=stored.checked_study_uid,
            landing=stored.landing,
            created_at=stored.created_at,
            last_seen_at=stored.last_seen_at,
            expires_at=stored.expires_at,
            ended_at=None,
        )
    )


def find_session(session: Session, id_sha256: str) -> StoredSession | None:
    """The session whose id hashes to ``id_sha256``, whatever its state."""
    row = session.get(WebSession, id_sha256)
    if row is None:
        return None
    return StoredSession(
        id_sha256=row.id_sha256,
        role=row.role,
        key_id=row.key_id,
        institution_id=row.institution_id,
        institution_code=row.institution_code,
        patient_key=row.patient_key,
        shared_study_id=row.shared_study_id,
        check_id=row.check_id,
        checked_study_uid=row.checked_study_uid,
        landing=row.landing,
        created_at=as_utc(row.created_at),
        last_seen_at=as_utc(row.last_seen_at),
        expires_at=as_utc(row.expires_at),
        ended_at=None if row.ended_at is None else as_utc(row.ended_at),
    )


def touch_session(session: Session, id_sha256: str, now: dt.datetime) -> None:
    """Note the session's latest use (its idle time starts again)."""
    session.execute(
        update(WebSession).where(WebSession.id_sha256 == id_sha256).values(last_seen_at=now)
    )


def end_session(session: Session, id_sha256: str, now: dt.datetime) -> None:
    """End the session (signing out twice keeps the first time)."""
    session.execute(
        update(WebSession)
        .where(WebSession.id_sha256 == id_sha256, WebSession.ended_at.is_(None))
        .values(ended_at=now)
    )


def drop_expired(session: Session, before: dt.datetime) -> int:
    """Delete sessions that expired before ``before``; how many."""
    result = session.execute(delete(WebSession).where(WebSession.expires_at < before))
    return int(getattr(result, "rowcount", 0) or 0)


def share_link_active(session: Session, link_id: str, now: dt.datetime) -> bool:
    """Whether the share link is neither revoked nor expired at ``now``."""
    row = session.execute(
        select(ShareLink.expires_at, ShareLink.revoked_at).where(ShareLink.id == link_id)
    ).one_or_none()
    if row is None:
        return False
    expires_at, revoked_at = row
    return revoked_at is None and as_utc(expires_at) > now


def api_key_active(session: Session, key_id: str, now: dt.datetime) -> bool:
    """Whether the API key is known and not revoked at ``now`` (a key being rotated out works
    until its grace period ends)."""
    row = session.execute(select(ApiKey.revoked_at).where(ApiKey.key_id == key_id)).one_or_none()
    if row is None:
        return False
    revoked_at = row[0]
    return revoked_at is None or as_utc(revoked_at) > now
