"""The ``open_url`` of a recognized study: an https link under the HTTP door's public URL that
opens the viewer on that one study for the asking hospital, while its check is recent.

The link is ``{MUTUALREC_HTTP_PUBLIC_URL}/open#mro_...``: the token rides in the fragment, which
browsers never send, so no server or proxy log holds it; the ``/open`` page hands it to the
server in exchange for a viewing session. The token itself is a bearer credential everywhere a
share token is (gRPC GetStudy, GetThumbnail, DownloadStudy; ``mutualrec download <open_url>``).

Without any HTTP URL (the HTTP door off and no public URL) the link stays what it was,
``mutualrec://study/UID``, which a hospital opens with its API key within the same window.
"""

from __future__ import annotations

import datetime as dt

from mutualrec.imaging.viewer import RECENT_CHECK
from mutualrec.recognition.answers import study_open_url
from mutualrec.security.study_links import StudyGrant, mint_study_link_token

# Where the token is exchanged for a viewing session (the page reads its URL's fragment).
OPEN_PATH = "/open"


class StudyLinks:
    """Mints the study links of a server's answers."""

    def __init__(self, token_secret: bytes, public_url: str) -> None:
        self._token_secret = token_secret
        # MUTUALREC_HTTP_PUBLIC_URL, else the HTTP door's own URL once it listens.
        self.base_url = public_url

    def serve_at(self, base_url: str) -> None:
        """The HTTP door listens at ``base_url``: links point there unless a public URL is set."""
        if not self.base_url:
            self.base_url = base_url

    def open_url(
        self, check_id: str, checked_at: dt.datetime, institution_id: int, study_instance_uid: str
    ) -> str:
        """Where the doctor of ``institution_id`` opens ``study_instance_uid``, which its check
        ``check_id`` (received at ``checked_at``) recognized; valid as long as that check lets
        the hospital open the study."""
        if not self.base_url:
            return study_open_url(study_instance_uid)
        grant = StudyGrant(check_id, study_instance_uid, institution_id, checked_at + RECENT_CHECK)
        token = mint_study_link_token(self._token_secret, grant)
        return f"{self.base_url}{OPEN_PATH}#{token}"
