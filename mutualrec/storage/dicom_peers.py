"""The registered DICOM peers: calling AE titles of hospital PACS and the institution each names."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mutualrec.storage.institutions import find_institution
from mutualrec.storage.models import DicomPeer, Institution


class DuplicatePeer(Exception):
    """The AE title is registered already."""


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """A registered peer as the index holds it."""

    ae_title: str
    institution_id: int
    institution_code: str
    # Empty: any address.
    address: str


def add_peer(session: Session, institution_code: str, ae_title: str, address: str) -> PeerRecord:
    """Register ``ae_title`` for the institution; :class:`DuplicatePeer` when it is taken,
    :class:`~mutualrec.storage.institutions.UnknownInstitution` for an unknown code."""
    institution = find_institution(session, institution_code)
    try:
        with session.begin_nested():
            session.add(
                DicomPeer(ae_title=ae_title, institution_id=institution.id, address=address)
            )
    except IntegrityError:
        raise DuplicatePeer(f"AE title {ae_title!r} is registered already") from None
    return PeerRecord(ae_title, institution.id, institution.code, address)


def list_peers(session: Session) -> list[PeerRecord]:
    """Every registered peer, by AE title."""
    rows = session.execute(
        select(DicomPeer.ae_title, DicomPeer.institution_id, Institution.code, DicomPeer.address)
        .join(Institution, Institution.id == DicomPeer.institution_id)
        .order_by(DicomPeer.ae_title)
    )
    return [PeerRecord(*row) for row in rows]


def remove_peer(session: Session, ae_title: str) -> bool:
    """Forget ``ae_title``; whether it was registered."""
    removed = session.execute(delete(DicomPeer).where(DicomPeer.ae_title == ae_title))
    return bool(removed.rowcount)  # type: ignore[attr-defined]


def find_peer(session: Session, ae_title: str) -> PeerRecord | None:
    """The peer registered under ``ae_title``, if any."""
    row = session.execute(
        select(DicomPeer.ae_title, DicomPeer.institution_id, Institution.code, DicomPeer.address)
        .join(Institution, Institution.id == DicomPeer.institution_id)
        .where(DicomPeer.ae_title == ae_title)
    ).first()
    return None if row is None else PeerRecord(*row)
