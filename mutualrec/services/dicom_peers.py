"""Who may send over DICOM: administrators register hospital PACS by calling AE title (and
optionally address); the C-STORE door asks which institution an association speaks for."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from mutualrec.storage import dicom_peers
from mutualrec.storage.institutions import UnknownInstitution
from mutualrec.violations import Conflict, NotFound, Rejected

# PS3.5 6.2, AE: at most 16 characters of the default repertoire, no backslash, no control
# characters; leading and trailing spaces are not significant.
AE_TITLE_MAX = 16


@dataclass(frozen=True, slots=True)
class DicomPeer:
    """A registered sender: its AE title, the institution it speaks for, and the one address
    it must call from (empty: any)."""

    ae_title: str
    institution_code: str
    address: str


@dataclass(frozen=True, slots=True)
class DicomCaller:
    """The institution an accepted association speaks for."""

    institution_id: int
    institution_code: str
    ae_title: str


def ae_title(text: str, field: str = "ae_title") -> str:
    """``text`` as an AE title (trimmed); :class:`Rejected` when it cannot be one."""
    title = text.strip()
    if not title or len(title) > AE_TITLE_MAX:
        raise Rejected.one(
            "not an AE title", field, f"an AE title has 1 to {AE_TITLE_MAX} characters", "BAD_AE"
        )
    if not title.isascii() or "\\" in title or any(not c.isprintable() for c in title):
        raise Rejected.one(
            "not an AE title",
            field,
            "an AE title has printable ASCII characters and no backslash",
            "BAD_AE",
        )
    return title


def _address(text: str) -> str:
    if not text.strip():
        return ""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise Rejected.one(
            "not an IP address",
            "address",
            f"{text[:64]!r} is not an IPv4 or IPv6 address",
            "BAD_IP",
        ) from None


class DicomPeers:
    """Registering, listing and removing DICOM peers, and recognizing a calling one."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, institution_code: str, title: str, address: str = "") -> DicomPeer:
        """Register ``title`` for the institution: :class:`Conflict` when it is taken,
        :class:`NotFound` for an unknown institution, :class:`Rejected` for a malformed title
        or address."""
        title = ae_title(title)
        where = _address(address)
        with self._sessions.begin() as session:
            try:
                added = dicom_peers.add_peer(session, institution_code.strip(), title, where)
            except UnknownInstitution as unknown:
                raise NotFound(str(unknown)) from None
            except dicom_peers.DuplicatePeer as taken:
                raise Conflict(str(taken)) from None
        return DicomPeer(added.ae_title, added.institution_code, added.address)

    def list(self) -> list[DicomPeer]:
        """Every registered peer, by AE title."""
        with self._sessions() as session:
            return [
                DicomPeer(p.ae_title, p.institution_code, p.address)
                for p in dicom_peers.list_peers(session)
            ]

    def remove(self, title: str) -> bool:
        """Forget ``title``; whether it was registered. Associations already accepted go on."""
        with self._sessions.begin() as session:
            return dicom_peers.remove_peer(session, ae_title(title))

    def caller(self, calling_ae_title: str, address: str) -> DicomCaller | None:
        """The institution an association from ``address`` calling as ``calling_ae_title``
        speaks for; None when the title is not registered or the address is not its own."""
        title = calling_ae_title.strip()
        if not title or len(title) > AE_TITLE_MAX:
            return None
        with self._sessions() as session:
            peer = dicom_peers.find_peer(session, title)
        if peer is None:
            return None
        if peer.address and peer.address != _normalized(address):
            return None
        return DicomCaller(peer.institution_id, peer.institution_code, peer.ae_title)


def _normalized(address: str) -> str:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    # An IPv4 peer reaching a dual-stack socket shows as ::ffff:a.b.c.d.
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)
