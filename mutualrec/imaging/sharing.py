"""Share links: what a patient may ask for, and the link's state at a given moment."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from enum import Enum

from mutualrec.violations import Rejected, Violation

MAX_SHARE = dt.timedelta(days=30)
# A link that dies within a minute is a mistake (a clock or a time zone), not a wish.
MIN_SHARE = dt.timedelta(minutes=1)
NOTE_MAX = 200


class LinkState(Enum):
    """Whether a link opens its study now."""

    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


def link_state(
    expires_at: dt.datetime, revoked_at: dt.datetime | None, now: dt.datetime
) -> LinkState:
    """The state of a link at ``now``; revocation wins over expiry."""
    if revoked_at is not None:
        return LinkState.REVOKED
    return LinkState.ACTIVE if now < expires_at else LinkState.EXPIRED


@dataclass(frozen=True, slots=True)
class Opening:
    """One call made with a share link."""

    opened_at: dt.datetime
    rpc: str
    peer: str


@dataclass(frozen=True, slots=True)
class LinkEntry:
    """A share link as its patient sees it."""

    link_id: str
    patient_key: str
    study_id: int
    study_instance_uid: str
    note: str
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    opening_count: int = 0
    # The latest openings, newest first; ``opening_count`` counts all of them.
    openings: tuple[Opening, ...] = ()

    def state(self, now: dt.datetime) -> LinkState:
        """Whether the link opens its study at ``now``."""
        return link_state(self.expires_at, self.revoked_at, now)


@dataclass(frozen=True, slots=True)
class ShareRequest:
    """A checked CreateShareLink request."""

    expires_at: dt.datetime
    note: str


def check_share_request(expire_time: str, note: str, now: dt.datetime) -> ShareRequest:
    """The expiry and note of a new link; raises :class:`Rejected` naming every bad field."""
    problems: list[Violation] = []
    expires_at = None
    try:
        parsed = dt.datetime.fromisoformat(expire_time.replace("Z", "+00:00"))
    except ValueError:
        problems.append(
            Violation(
                "expire_time",
                "must be an ISO 8601 date and time with an offset, e.g. 2026-12-01T18:00:00+08:00",
                "MALFORMED_TIME",
            )
        )
    else:
        if parsed.tzinfo is None:
            problems.append(
                Violation("expire_time", "must carry a UTC offset (Z or +08:00)", "MISSING_OFFSET")
            )
        elif parsed < now + MIN_SHARE:
            problems.append(
                Violation("expire_time", "is in the past or within the next minute", "IN_THE_PAST")
            )
        elif parsed > now + MAX_SHARE:
            problems.append(
                Violation(
                    "expire_time",
                    f"is more than {MAX_SHARE.days} days ahead; make a new link later instead",
                    "TOO_FAR_AHEAD",
                )
            )
        else:
            expires_at = parsed.astimezone(dt.UTC)
    note = note.strip()
    if len(note) > NOTE_MAX:
        problems.append(Violation("note", f"at most {NOTE_MAX} characters", "TOO_LONG"))
    if any(ord(c) < 32 for c in note):
        problems.append(Violation("note", "must not contain control characters", "MALFORMED_TEXT"))
    if problems or expires_at is None:
        raise Rejected("the share link request is invalid", problems)
    return ShareRequest(expires_at, note)


def new_link_id() -> str:
    """A public id for a link (what the patient revokes it by); not a credential."""
    return "shl_" + secrets.token_hex(8)
