"""The forms of credentials and study references the CLI prints, read back where it asks.

`mutualrec share` prints a link (``mutualrec://share/mrs_...``) and `mutualrec check` an
``open_url`` (``mutualrec://study/UID``); a user pastes what they were shown, so every command
taking a token or a study accepts the printed form as well as the bare value. This is the one
place that knows those prefixes.
"""

from __future__ import annotations

SHARE_PREFIX = "mutualrec://share/"
STUDY_PREFIX = "mutualrec://study/"


def credential(text: str) -> str:
    """The bearer credential in ``text``: a share link's token, or ``text`` as given."""
    value = text.strip()
    if value.lower().startswith(SHARE_PREFIX):
        value = value[len(SHARE_PREFIX) :]
    return value.strip("/")


def study_uid(text: str) -> str:
    """The StudyInstanceUID in ``text``: an ``open_url``'s UID, or ``text`` as given."""
    value = text.strip()
    if value.lower().startswith(STUDY_PREFIX):
        value = value[len(STUDY_PREFIX) :]
    return value.strip("/")
