"""What every door answers alike about a recognized result: where to open it."""

from __future__ import annotations

# Where a doctor opens a recognized study's images (the imaging history service's locator).
STUDY_URL = "mutualrec://study/{uid}"


def study_open_url(study_instance_uid: str) -> str:
    """The locator that opens a recognized study."""
    return STUDY_URL.format(uid=study_instance_uid)
