"""Share links: a patient lets a doctor read one study for a while, lists the links with who
opened them, and revokes them; a doctor's share token is turned into what it may read."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from mutualrec.imaging.sharing import LinkEntry, LinkState, check_share_request, new_link_id
from mutualrec.imaging.viewer import own_patient_key
from mutualrec.security.access import SHARE
from mutualrec.security.api_keys import InvalidKey, Principal
from mutualrec.security.audit import touched
from mutualrec.security.patient_tokens import new_share_token, share_token_hash
from mutualrec.storage import history_index, share_index
from mutualrec.violations import NotFound, Rejected


@dataclass(frozen=True, slots=True)
class ShareLinkRequest:
    """A new link to one of the patient's studies: until when (ISO 8601 with an offset) and a
    note for the patient's own records."""

    study_instance_uid: str
    expire_time: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class CreatedLink:
    """A new share link and its token, which is shown this once."""

    link: LinkEntry
    token: str


class Sharing:
    """Blocking share-link reads and writes; doors run them on worker threads (in the call's
    context, which carries its audit record)."""

    def __init__(self, sessions: sessionmaker[Session], *, token_secret: bytes) -> None:
        self._sessions = sessions
        # Signs share tokens, so a forged one is refused without a lookup.
        self._token_secret = token_secret

    def create(self, principal: Principal, request: ShareLinkRequest) -> CreatedLink:
        """A new link; :class:`Rejected` naming every bad field, :class:`NotFound` when the
        patient has no such study."""
        patient_key = own_patient_key(principal)
        uid = request.study_instance_uid
        touched(patient_key, f"share link to study {uid}")
        now = dt.datetime.now(dt.UTC)
        share = check_share_request(request.expire_time, request.note, now)
        if not uid:
            raise Rejected("study_instance_uid is empty", [])
        issued = new_share_token(self._token_secret)
        link_id = new_link_id()
        with self._sessions.begin() as session:
            entry = history_index.patient_study(session, patient_key, uid)
            if entry is None:
                raise NotFound("no such study")
            share_index.add_link(
                session,
                link_id=link_id,
                token_sha256=issued.token_sha256,
                patient_key=patient_key,
                study_id=entry.study_id,
                note=share.note,
                created_at=now,
                expires_at=share.expires_at,
            )
        with self._sessions() as session:
            links = share_index.patient_links(session, patient_key, uid)
        return CreatedLink(next(link for link in links if link.link_id == link_id), issued.token)

    def links(self, principal: Principal, study_instance_uid: str = "") -> list[LinkEntry]:
        """The patient's links (to one study, if named), newest first, with their openings."""
        patient_key = own_patient_key(principal)
        touched(patient_key, "list of share links")
        with self._sessions() as session:
            return share_index.patient_links(session, patient_key, study_instance_uid)

    def revoke(self, principal: Principal, link_id: str) -> LinkEntry:
        """Close a link at once (revoking twice keeps the first revocation); :class:`NotFound`
        when the patient has no such link."""
        patient_key = own_patient_key(principal)
        touched(patient_key, f"revocation of share link {link_id}")
        with self._sessions.begin() as session:
            link = share_index.revoke_link(session, patient_key, link_id, dt.datetime.now(dt.UTC))
        if link is None:
            raise NotFound("no such share link")
        return link

    def principal(self, token: str) -> Principal:
        """What a share token (its signature already checked) may read: one study, as the
        patient who made the link. Raises :class:`InvalidKey` for a link unknown, expired or
        revoked; never cached, so a revocation closes the link at once."""
        with self._sessions() as session:
            link = share_index.link_by_token_hash(session, share_token_hash(token))
        if link is None or link.state(dt.datetime.now(dt.UTC)) is not LinkState.ACTIVE:
            raise InvalidKey("the share link is unknown, expired or revoked")
        return Principal(
            role=SHARE,
            institution_id=None,
            institution_code=None,
            key_id=link.link_id,
            patient_key=link.patient_key,
            share_link_id=link.link_id,
            shared_study_id=link.study_id,
        )
