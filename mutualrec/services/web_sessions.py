"""Browser sessions: a credential checked once (by the same authentication the Bearer header
uses) becomes a random session id in an HttpOnly cookie; the index keeps only its hash.

A session ends when the browser signs out, after an idle time, at an absolute lifetime (never
later than a patient token it was opened with), and at once when the share link or API key it
was opened with is revoked: every use checks the credential again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from sqlalchemy.orm import Session, sessionmaker

from mutualrec.security.access import DOCTOR, PATIENT, REGULATOR, SHARE
from mutualrec.security.api_keys import InvalidKey, Principal
from mutualrec.security.patient_tokens import looks_like_patient_token, patient_token_expiry
from mutualrec.services.outage import unavailable_on_outage
from mutualrec.storage import history_index, web_sessions
from mutualrec.storage.web_sessions import StoredSession

# A patient's own pages; a doctor's share link or check's link opens its study in the viewer;
# a regulator's dashboard.
PATIENT_LANDING = "/"
REGULATOR_LANDING = "/regulator"
OTHER_LANDING = "/session"
VIEWER_STUDY = "/viewer/viewer?StudyInstanceUIDs="
# A session's last use is written at most this often: a page's thumbnails do not each write.
_TOUCH_EVERY = dt.timedelta(seconds=30)


def hash_session_id(session_id: str) -> str:
    """The stored form of a session id (256 random bits: a plain SHA-256 suffices)."""
    return hashlib.sha256(session_id.encode("ascii", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """How long a session lives: idle, and at most."""

    idle: dt.timedelta
    absolute: dt.timedelta


@dataclass(frozen=True, slots=True)
class OpenedSession:
    """A new session: its id (the cookie's value, shown this once), where the browser goes
    next, and when it ends at the latest."""

    session_id: str
    landing: str
    expires_at: dt.datetime


class UnknownSession(InvalidKey):
    """A cookie naming no live session (unknown, ended, idle too long, expired, or its
    credential revoked); the message is safe to send back."""


class WebSessions:
    """Blocking session reads and writes; doors run them on worker threads. ``clock`` is the
    service's time, which tests move."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        limits: SessionLimits,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self._sessions = sessions
        self.limits = limits
        self.clock: Callable[[], dt.datetime] = clock or (lambda: dt.datetime.now(dt.UTC))

    def open(self, principal: Principal, token: str) -> OpenedSession:
        """A session for ``principal``, whom ``token`` (already authenticated) names."""
        now = self.clock()
        expires_at = now + self.limits.absolute
        if principal.role == PATIENT and looks_like_patient_token(token):
            expires_at = min(expires_at, patient_token_expiry(token))
        if principal.valid_until is not None:
            expires_at = min(expires_at, principal.valid_until)
        session_id = secrets.token_urlsafe(32)
        with self._sessions.begin() as session:
            # Each sign-in clears sessions long dead (kept a day to answer "expired"): the
            # table holds about a day of sign-ins, with no sweeper to run.
            web_sessions.drop_expired(session, now - dt.timedelta(days=1))
            landing = _landing(session, principal)
            web_sessions.add_session(
                session,
                StoredSession(
                    id_sha256=hash_session_id(session_id),
                    role=principal.role,
                    key_id=principal.key_id[:32],
                    institution_id=principal.institution_id,
                    institution_code=principal.institution_code,
                    patient_key=principal.patient_key,
                    shared_study_id=principal.shared_study_id,
                    check_id=principal.check_id,
                    checked_study_uid=principal.checked_study_uid,
                    landing=landing,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=expires_at,
                    ended_at=None,
                ),
            )
        return OpenedSession(session_id, landing, expires_at)

    def principal(self, session_id: str) -> Principal:
        """Who the session ``session_id`` stands for; raises :class:`UnknownSession`, and
        :class:`Unavailable` when the index cannot be read."""
        now = self.clock()
        id_sha256 = hash_session_id(session_id)
        with (
            unavailable_on_outage("the session cannot be checked now"),
            self._sessions.begin() as session,
        ):
            stored = web_sessions.find_session(session, id_sha256)
            if stored is None or not self._alive(session, stored, now):
                raise UnknownSession("the session is unknown, ended or expired: sign in again")
            if now - stored.last_seen_at >= _TOUCH_EVERY:
                web_sessions.touch_session(session, id_sha256, now)
        return _principal_of(stored)

    def landing(self, session_id: str) -> str:
        """Where the session's browser goes once signed in; raises :class:`UnknownSession`."""
        with self._sessions() as session:
            stored = web_sessions.find_session(session, hash_session_id(session_id))
        if stored is None:
            raise UnknownSession("the session is unknown: sign in again")
        return stored.landing

    def end(self, session_id: str) -> None:
        """Sign out (a session unknown or already ended is left as it is)."""
        with self._sessions.begin() as session:
            web_sessions.end_session(session, hash_session_id(session_id), self.clock())

    def _alive(self, session: Session, stored: StoredSession, now: dt.datetime) -> bool:
        if stored.ended_at is not None or now >= stored.expires_at:
            return False
        if now - stored.last_seen_at >= self.limits.idle:
            return False
        if stored.role == SHARE:
            return web_sessions.share_link_active(session, stored.key_id, now)
        if stored.role in (PATIENT, DOCTOR):
            # The token's own expiry capped expires_at; a doctor's reads are checked against
            # the check that recognized the study, each time.
            return True
        return web_sessions.api_key_active(session, stored.key_id, now)


def _landing(session: Session, principal: Principal) -> str:
    """Where a new session goes: never from the request, so no link can redirect elsewhere."""
    if principal.role == PATIENT:
        return PATIENT_LANDING
    if principal.role == REGULATOR:
        return REGULATOR_LANDING
    if principal.role == DOCTOR and principal.checked_study_uid:
        return VIEWER_STUDY + quote(principal.checked_study_uid, safe="")
    if principal.role == SHARE and principal.shared_study_id is not None:
        entry = history_index.study_by_id(session, principal.shared_study_id)
        if entry is not None:
            return VIEWER_STUDY + quote(entry.study_instance_uid, safe="")
    return OTHER_LANDING


def _principal_of(stored: StoredSession) -> Principal:
    doctor = stored.role == DOCTOR
    return Principal(
        role=stored.role,
        institution_id=stored.institution_id,
        institution_code=stored.institution_code,
        # A doctor's key id names the whole check (the stored one is cut to the column).
        key_id=f"check:{stored.check_id}" if doctor else stored.key_id,
        patient_key=stored.patient_key,
        share_link_id=stored.key_id if stored.role == SHARE else None,
        shared_study_id=stored.shared_study_id,
        check_id=stored.check_id,
        checked_study_uid=stored.checked_study_uid,
    )
