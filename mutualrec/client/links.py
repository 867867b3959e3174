"""The forms of credentials and study references the CLI prints, read back where it asks.

`mutualrec share` prints a link (``mutualrec://share/mrs_...``) and `mutualrec check` an
``open_url`` (``https://HOST/open#mro_...``, a study link whose fragment is the token; without
an HTTP door, ``mutualrec://study/UID``); a user pastes what they were shown, so every command
taking a token or a study accepts the printed form as well as the bare value. This is the one
place that knows those prefixes.
"""

from __future__ import annotations

SHARE_PREFIX = "mutualrec://share/"
STUDY_PREFIX = "mutualrec://study/"
# The token of an https open_url, after its '#'.
STUDY_LINK_TOKEN_PREFIX = "mro_"


def study_link_token(text: str) -> str | None:
    """The study-link token an https ``open_url`` carries in its fragment; None for any other
    text."""
    value = text.strip()
    if not value.lower().startswith(("https://", "http://")):
        return None
    fragment = value.partition("#")[2]
    return fragment if fragment.startswith(STUDY_LINK_TOKEN_PREFIX) else None


def credential(text: str) -> str:
    """The bearer credential in ``text``: a share link's token, or ``text`` as given."""
    value = text.strip()
    link_token = study_link_token(value)
    if link_token is not None:
        return link_token
    if value.lower().startswith(SHARE_PREFIX):
        value = value[len(SHARE_PREFIX) :]
    return value.strip("/")


def study_uid(text: str) -> str:
    """The StudyInstanceUID in ``text``: an ``open_url``'s UID, or ``text`` as given."""
    value = text.strip()
    if value.lower().startswith(STUDY_PREFIX):
        value = value[len(STUDY_PREFIX) :]
    return value.strip("/")
