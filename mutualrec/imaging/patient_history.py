"""What a patient, or a doctor holding their share link, may see of the imaging history.

Every read goes through :meth:`PatientHistory.find_study`, which answers "not found" alike for a
study that does not exist and for one that is not the viewer's: existence is never revealed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from mutualrec.imaging.history import HistoryQuery, ItemValidity, validity
from mutualrec.imaging.records import HistoryCursor, InstanceFile, SeriesEntry, StudyEntry
from mutualrec.imaging.sharing import LinkEntry, ShareRequest, new_link_id
from mutualrec.imaging.thumbnail_cache import Renderer, representative, thumbnail_for
from mutualrec.imaging.thumbnails import Thumbnail, render_thumbnail
from mutualrec.matching.catalog import Catalog
from mutualrec.security.patient_tokens import new_share_token
from mutualrec.storage import audit_log, history_index, share_index
from mutualrec.storage.audit_log import Access
from mutualrec.storage.db import reads_without_transaction
from mutualrec.storage.objects import ObjectStore


class StudyNotFound(LookupError):
    """No such study for this viewer (it may exist for someone else: that is not said)."""


# A hospital opens another hospital's study only while a check it made recognized that very study
# (a RECOGNIZABLE line citing it): as long as the doctor may still record a decision on that line.
RECENT_CHECK = dt.timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who reads: a patient, a share link of theirs limited to one study, or a hospital whose
    check within :data:`RECENT_CHECK` recognized the study (``patient_key`` empty: the study
    names the patient)."""

    patient_key: str
    shared_study_id: int | None = None
    share_link_id: str | None = None
    # The caller's network address, recorded with every use of a share link.
    peer: str = ""
    checking_institution_id: int | None = None


@dataclass(frozen=True, slots=True)
class ListedStudy:
    """A study of the history with what it is worth for recognition."""

    entry: StudyEntry
    recognition: list[ItemValidity]


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of a history, and where the next one starts (None on the last)."""

    studies: list[ListedStudy]
    next_cursor: HistoryCursor | None


@dataclass(frozen=True, slots=True)
class CreatedLink:
    """A new share link and its token, which is shown this once."""

    link: LinkEntry
    token: str


class PatientHistory:
    """Blocking reads and writes of imaging history; the gRPC layer runs them on worker threads."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: ObjectStore,
        catalog: Callable[[], Catalog],
        scratch: Path,
        render: Renderer = render_thumbnail,
        *,
        share_token_secret: bytes,
    ) -> None:
        self._sessions = sessions
        self._share_token_secret = share_token_secret
        self._store = store
        self._catalog = catalog
        self._scratch = scratch
        self._render = render

    def _listed(self, entry: StudyEntry, now: dt.datetime) -> ListedStudy:
        return ListedStudy(entry, validity(entry.items, self._catalog(), now))

    def list_studies(self, patient_key: str, query: HistoryQuery, now: dt.datetime) -> HistoryPage:
        """A page of the patient's studies, newest first."""
        with self._sessions() as session:
            reads_without_transaction(session)
            entries = history_index.patient_studies(
                session, patient_key, query.history_filter, query.after, query.page_size + 1
            )
        more = len(entries) > query.page_size
        entries = entries[: query.page_size]
        last = entries[-1] if more else None
        cursor = HistoryCursor(last.started_at, last.study_id) if last is not None else None
        return HistoryPage([self._listed(e, now) for e in entries], cursor)

    def _find(
        self, session: Session, viewer: Viewer, study_instance_uid: str, rpc: str
    ) -> StudyEntry:
        if viewer.checking_institution_id is not None:
            since = dt.datetime.now(dt.UTC) - RECENT_CHECK
            checked = history_index.study_checked_by(
                session, study_instance_uid, viewer.checking_institution_id, since
            )
            if checked is None:
                raise StudyNotFound(study_instance_uid)
            return checked
        if viewer.shared_study_id is not None:
            entry = history_index.study_by_id(session, viewer.shared_study_id)
            if entry is None or study_instance_uid not in ("", entry.study_instance_uid):
                raise StudyNotFound(study_instance_uid)
            assert viewer.share_link_id is not None
            share_index.record_opening(
                session, viewer.share_link_id, rpc, viewer.peer, dt.datetime.now(dt.UTC)
            )
            return entry
        found = history_index.patient_study(session, viewer.patient_key, study_instance_uid)
        if found is None:
            raise StudyNotFound(study_instance_uid)
        return found

    def find_study(self, viewer: Viewer, study_instance_uid: str, rpc: str) -> StudyEntry:
        """The viewer's study; a share link's use is recorded. Raises :class:`StudyNotFound`."""
        with self._sessions.begin() as session:
            return self._find(session, viewer, study_instance_uid, rpc)

    def patient_of(self, study_instance_uid: str) -> str | None:
        """The patient key of a study whoever may read it (for the audit of a refused read);
        None if the region holds no such study."""
        if not study_instance_uid or "\x00" in study_instance_uid:
            return None  # no study has such a UID, and PostgreSQL refuses NUL in a query
        with self._sessions() as session:
            reads_without_transaction(session)
            return history_index.study_patient(session, study_instance_uid)

    def study(
        self, viewer: Viewer, study_instance_uid: str, now: dt.datetime
    ) -> tuple[ListedStudy, list[SeriesEntry]]:
        """A study and its series (GetStudy)."""
        with self._sessions.begin() as session:
            entry = self._find(session, viewer, study_instance_uid, "GetStudy")
            series = history_index.study_series(session, entry.study_id)
        return self._listed(entry, now), series

    def thumbnail(
        self, viewer: Viewer, study_instance_uid: str, series_instance_uid: str
    ) -> tuple[Thumbnail, str]:
        """The thumbnail of one series of the viewer's study, and the instance it shows."""
        with self._sessions.begin() as session:
            entry = self._find(session, viewer, study_instance_uid, "GetThumbnail")
            files = history_index.current_files(session, entry.study_id, series_instance_uid)
        if not files:
            raise StudyNotFound(series_instance_uid)
        shown = representative(files)
        thumbnail = thumbnail_for(self._store, shown, self._scratch, self._render)
        return thumbnail, shown.sop_instance_uid

    def files(
        self, viewer: Viewer, study_instance_uid: str, series_instance_uid: str
    ) -> list[InstanceFile]:
        """The current files of the viewer's study, or of one of its series (DownloadStudy)."""
        with self._sessions.begin() as session:
            entry = self._find(session, viewer, study_instance_uid, "DownloadStudy")
            files = history_index.current_files(session, entry.study_id, series_instance_uid)
        if not files:
            raise StudyNotFound(series_instance_uid or study_instance_uid)
        return files

    def read(self, instance: InstanceFile) -> Iterator[bytes]:
        """The bytes of one file, in chunks of at most 1 MiB."""
        return self._store.open(instance.object_key)

    def create_link(
        self, patient_key: str, study_instance_uid: str, request: ShareRequest, now: dt.datetime
    ) -> CreatedLink:
        """A new share link to one of the patient's studies."""
        issued = new_share_token(self._share_token_secret)
        link_id = new_link_id()
        with self._sessions.begin() as session:
            entry = self._find(session, Viewer(patient_key), study_instance_uid, "")
            share_index.add_link(
                session,
                link_id=link_id,
                token_sha256=issued.token_sha256,
                patient_key=patient_key,
                study_id=entry.study_id,
                note=request.note,
                created_at=now,
                expires_at=request.expires_at,
            )
        links = self.links(patient_key, study_instance_uid)
        return CreatedLink(next(link for link in links if link.link_id == link_id), issued.token)

    def links(self, patient_key: str, study_instance_uid: str = "") -> list[LinkEntry]:
        """The patient's share links, newest first."""
        with self._sessions() as session:
            return share_index.patient_links(session, patient_key, study_instance_uid)

    def revoke_link(self, patient_key: str, link_id: str, now: dt.datetime) -> LinkEntry | None:
        """Revoke one of the patient's links; None if they have no such link."""
        with self._sessions.begin() as session:
            return share_index.revoke_link(session, patient_key, link_id, now)

    def accesses(
        self, patient_key: str, limit: int, before_id: int | None
    ) -> list[tuple[int, Access]]:
        """Entries of the audit trail about the patient, newest first."""
        with self._sessions() as session:
            return audit_log.accesses(session, patient_key, limit, before_id)
