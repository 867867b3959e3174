"""Administrators' use cases on API keys: issue, revoke, rotate.

A key's token is made here (:func:`mutualrec.security.api_keys.issue_key`), shown once to the
administrator and never stored: the index keeps its hash.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from mutualrec.security.api_keys import issue_key
from mutualrec.storage import institutions
from mutualrec.violations import NotFound


@dataclass(frozen=True, slots=True)
class Rotation:
    """A key's successor, and when the key it replaces stops working."""

    token: str
    old_key_until: dt.datetime


class ApiKeys:
    """Issues, revokes and rotates API keys in one index."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def issue(self, role: str, institution_code: str | None = None) -> str:
        """A new key for ``role`` (a hospital's names its institution); its token."""
        issued = issue_key()
        with self._sessions.begin() as session:
            try:
                institutions.add_key(session, issued, role, institution_code)
            except institutions.UnknownInstitution as missing:
                raise NotFound(str(missing)) from None
        return issued.token

    def revoke(self, key_id: str) -> bool:
        """Revoke a key now; False when no live key has that id."""
        with self._sessions.begin() as session:
            return institutions.revoke_key(session, key_id)

    def rotate(self, key_id: str, grace: dt.timedelta) -> Rotation:
        """A successor of ``key_id`` (same role and institution); the old key keeps working for
        ``grace``. Raises :class:`NotFound` when ``key_id`` names no live key."""
        successor = issue_key()
        until = dt.datetime.now(dt.UTC) + grace
        with self._sessions.begin() as session:
            try:
                institutions.rotate_key(session, key_id, successor, until)
            except LookupError as missing:
                raise NotFound(str(missing)) from None
        return Rotation(successor.token, until)
