"""Share links and their openings: created, listed and revoked by the patient, used by doctors."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mutualrec.imaging.sharing import LinkEntry, Opening
from mutualrec.storage.models import ShareLink, ShareOpening, Study
from mutualrec.storage.sql import as_utc

# Openings listed per link; the count covers all of them.
OPENINGS_SHOWN = 100


def _entry(
    link: ShareLink,
    study_instance_uid: str,
    opening_count: int = 0,
    openings: tuple[Opening, ...] = (),
) -> LinkEntry:
    return LinkEntry(
        link_id=link.id,
        patient_key=link.patient_key,
        study_id=link.study_id,
        study_instance_uid=study_instance_uid,
        note=link.note,
        created_at=as_utc(link.created_at),
        expires_at=as_utc(link.expires_at),
        revoked_at=None if link.revoked_at is None else as_utc(link.revoked_at),
        opening_count=opening_count,
        openings=openings,
    )


def add_link(
    session: Session,
    *,
    link_id: str,
    token_sha256: str,
    patient_key: str,
    study_id: int,
    note: str,
    created_at: dt.datetime,
    expires_at: dt.datetime,
) -> None:
    """Record a new share link."""
    session.add(
        ShareLink(
            id=link_id,
            token_sha256=token_sha256,
            patient_key=patient_key,
            study_id=study_id,
            note=note,
            created_at=created_at,
            expires_at=expires_at,
            revoked_at=None,
        )
    )
    session.flush()


def link_by_token_hash(session: Session, token_sha256: str) -> LinkEntry | None:
    """The link whose token hashes to ``token_sha256``, whatever its state."""
    row = session.execute(
        select(ShareLink, Study.study_instance_uid)
        .join(Study, Study.id == ShareLink.study_id)
        .where(ShareLink.token_sha256 == token_sha256)
    ).one_or_none()
    return None if row is None else _entry(*row)


def patient_links(
    session: Session, patient_key: str, study_instance_uid: str = ""
) -> list[LinkEntry]:
    """The patient's links, newest first, with opening counts and the latest openings."""
    query = (
        select(ShareLink, Study.study_instance_uid)
        .join(Study, Study.id == ShareLink.study_id)
        .where(ShareLink.patient_key == patient_key)
        .order_by(ShareLink.created_at.desc(), ShareLink.id)
    )
    if study_instance_uid:
        query = query.where(Study.study_instance_uid == study_instance_uid)
    found = session.execute(query).all()
    if not found:
        return []
    ids = [link.id for link, _ in found]
    counts: dict[str, int] = {}
    for link_id, count in session.execute(
        select(ShareOpening.link_id, func.count())
        .where(ShareOpening.link_id.in_(ids))
        .group_by(ShareOpening.link_id)
    ):
        counts[link_id] = int(count)
    rank = (
        func.row_number()
        .over(partition_by=ShareOpening.link_id, order_by=ShareOpening.opened_at.desc())
        .label("rank")
    )
    ranked = (
        select(
            ShareOpening.link_id, ShareOpening.opened_at, ShareOpening.rpc, ShareOpening.peer, rank
        )
        .where(ShareOpening.link_id.in_(ids))
        .subquery()
    )
    latest: dict[str, list[Opening]] = defaultdict(list)
    for link_id, opened_at, rpc, peer, _rank in session.execute(
        select(ranked).where(ranked.c.rank <= OPENINGS_SHOWN).order_by(ranked.c.rank)
    ):
        latest[link_id].append(Opening(as_utc(opened_at), rpc, peer))
    return [
        _entry(link, uid, counts.get(link.id, 0), tuple(latest.get(link.id, ())))
        for link, uid in found
    ]


def revoke_link(
    session: Session, patient_key: str, link_id: str, now: dt.datetime
) -> LinkEntry | None:
    """Revoke the patient's link (a second revocation keeps the first time); None if the
    patient has no such link."""
    session.execute(
        update(ShareLink)
        .where(
            ShareLink.id == link_id,
            ShareLink.patient_key == patient_key,
            ShareLink.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    for link in patient_links(session, patient_key):
        if link.link_id == link_id:
            return link
    return None


def record_opening(session: Session, link_id: str, rpc: str, peer: str, now: dt.datetime) -> None:
    """Append one use of a share link."""
    session.add(ShareOpening(link_id=link_id, opened_at=now, rpc=rpc, peer=peer[:100]))
