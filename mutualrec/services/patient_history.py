"""What a patient, a doctor holding their share link, or a hospital whose check recognized a
study may see of the imaging history: studies, series, thumbnails, files, and who accessed it.

Every study read goes through one lookup, which answers "not found" alike for a study that
does not exist and for one that is not the viewer's: existence is never revealed. Every read
names, in the call's audit record, the patient whose data it touched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from mutualrec.imaging.history import ItemValidity, check_query, encode_cursor, validity
from mutualrec.imaging.records import (
    HistoryCursor,
    HistoryFilter,
    InstanceFile,
    SeriesEntry,
    StudyEntry,
)
from mutualrec.imaging.thumbnails import Thumbnail, render_thumbnail
from mutualrec.imaging.viewer import RECENT_CHECK, Viewer, own_patient_key, viewer_of
from mutualrec.matching.catalog import Catalog
from mutualrec.security.api_keys import Principal
from mutualrec.security.audit import touched
from mutualrec.security.cursors import InvalidCursor, open_cursor, sign_cursor
from mutualrec.services.audit import AuditWriter
from mutualrec.services.thumbnail_cache import Renderer, representative, thumbnail_for
from mutualrec.storage import audit_log, history_index, share_index
from mutualrec.storage.audit_log import Access
from mutualrec.storage.db import reads_without_transaction
from mutualrec.storage.objects import ObjectCorrupt, ObjectNotFound, ObjectStore, ObjectStoreError
from mutualrec.violations import DataLost, NotFound, Rejected, Unavailable, Violation

ACCESS_PAGE = 50
MAX_ACCESS_PAGE = 100
_ACCESS_AUDIENCE = "mutualrec:access-page"
# How long ListAccesses waits for the audit entries already queued (the caller's own earlier
# calls among them) to be committed before it reads.
_AUDIT_FLUSH_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class StudiesRequest:
    """A page of the patient's studies, narrowed as asked (empty fields do not narrow)."""

    page_size: int = 0
    page_token: str = ""
    modality: str = ""
    from_date: str = ""
    to_date: str = ""
    institution_code: str = ""


@dataclass(frozen=True, slots=True)
class StudyRequest:
    """One study (empty for a share link's own study), or one of its series. ``peer`` is the
    caller's network address, recorded with a share link's use."""

    study_instance_uid: str
    series_instance_uid: str = ""
    peer: str = ""


@dataclass(frozen=True, slots=True)
class AccessesRequest:
    """A page of the audit trail about the patient."""

    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True, slots=True)
class ListedStudy:
    """A study of the history with what it is worth for recognition."""

    entry: StudyEntry
    recognition: list[ItemValidity]


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of a history, and the token of the next one ("" on the last)."""

    studies: list[ListedStudy]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class StudyView:
    """A study and its series."""

    study: ListedStudy
    series: list[SeriesEntry]


@dataclass(frozen=True, slots=True)
class ShownThumbnail:
    """A series' thumbnail and the instance it shows."""

    thumbnail: Thumbnail
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class AccessPage:
    """Entries of the audit trail about the patient, newest first, and the next page's token
    ("" on the last)."""

    accesses: list[Access]
    next_page_token: str


class PatientHistory:
    """Blocking reads of imaging history; doors run them on worker threads (in the call's
    context, which carries its audit record)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: ObjectStore,
        catalog: Callable[[], Catalog],
        audit: AuditWriter,
        scratch: Path,
        render: Renderer = render_thumbnail,
        *,
        token_secret: bytes,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._catalog = catalog
        self._audit = audit
        self._scratch = scratch
        self._render = render
        # Signs page tokens, so a patient pages only through their own history.
        self._token_secret = token_secret

    def _listed(self, entry: StudyEntry, now: dt.datetime) -> ListedStudy:
        return ListedStudy(entry, validity(entry.items, self._catalog(), now))

    def list_studies(self, principal: Principal, request: StudiesRequest) -> HistoryPage:
        """A page of the patient's studies, newest first; :class:`Rejected` naming every bad
        field."""
        patient_key = own_patient_key(principal)
        touched(patient_key, "list of studies")
        query = check_query(
            self._token_secret,
            patient_key,
            page_size=request.page_size,
            page_token=request.page_token,
            modality=request.modality,
            from_date=request.from_date,
            to_date=request.to_date,
            institution_code=request.institution_code,
        )
        now = dt.datetime.now(dt.UTC)
        with self._sessions() as session:
            reads_without_transaction(session)
            entries = history_index.patient_studies(
                session, patient_key, query.history_filter, query.after, query.page_size + 1
            )
        more = len(entries) > query.page_size
        entries = entries[: query.page_size]
        token = ""
        if more:
            last = entries[-1]
            token = encode_cursor(
                self._token_secret,
                patient_key,
                query.history_filter,
                HistoryCursor(last.started_at, last.study_id),
            )
        return HistoryPage([self._listed(e, now) for e in entries], token)

    def _find(
        self, session: Session, viewer: Viewer, study_instance_uid: str, rpc: str, missing: str
    ) -> StudyEntry:
        """The viewer's study (a share link's use is recorded under ``rpc``); raises
        :class:`NotFound` saying ``missing``."""
        if viewer.checking_institution_id is not None:
            if viewer.checked_study_uid not in (None, study_instance_uid):
                raise NotFound(missing)  # a study link opens its own study, no other
            since = dt.datetime.now(dt.UTC) - RECENT_CHECK
            checked = history_index.study_checked_by(
                session, study_instance_uid, viewer.checking_institution_id, since, viewer.check_id
            )
            if checked is None:
                raise NotFound(missing)
            return checked
        if viewer.shared_study_id is not None:
            entry = history_index.study_by_id(session, viewer.shared_study_id)
            if entry is None or study_instance_uid not in ("", entry.study_instance_uid):
                raise NotFound(missing)
            assert viewer.share_link_id is not None
            share_index.record_opening(
                session, viewer.share_link_id, rpc, viewer.peer, dt.datetime.now(dt.UTC)
            )
            return entry
        found = history_index.patient_study(session, viewer.patient_key, study_instance_uid)
        if found is None:
            raise NotFound(missing)
        return found

    def _audit_read(self, viewer: Viewer, study_instance_uid: str, what: str) -> None:
        """Name the patient whose study the call reads in its audit entries. A hospital names
        no patient in its request: the study does, if the hospital may open it at all."""
        if viewer.checking_institution_id is None:
            touched(viewer.patient_key, what)
            return
        try:
            with self._sessions.begin() as session:
                entry = self._find(session, viewer, study_instance_uid, "audit", "")
        except NotFound:
            # A refused attempt on a study that exists is the patient's business too: it is
            # recorded against them (the call's outcome says NOT_FOUND); the caller learns
            # nothing more than for a study that does not exist.
            patient = self._patient_of(study_instance_uid)
            if patient is not None:
                touched(
                    patient, f"{what} (refused: no recent check of this institution recognized it)"
                )
            return
        touched(entry.patient_key, what)

    def _patient_of(self, study_instance_uid: str) -> str | None:
        """The patient key of a study whoever may read it; None if the region holds none."""
        if not study_instance_uid or "\x00" in study_instance_uid:
            return None  # no study has such a UID, and PostgreSQL refuses NUL in a query
        with self._sessions() as session:
            reads_without_transaction(session)
            return history_index.study_patient(session, study_instance_uid)

    def study(self, principal: Principal, request: StudyRequest) -> StudyView:
        """One study of the viewer's (or the shared study) with its series."""
        viewer = viewer_of(principal, request.peer)
        uid = viewer.study_uid(request.study_instance_uid)
        self._audit_read(viewer, uid, f"study {uid or '(shared)'}")
        if not uid and viewer.shared_study_id is None:
            raise Rejected("study_instance_uid is empty", [])
        now = dt.datetime.now(dt.UTC)
        with self._sessions.begin() as session:
            entry = self._find(session, viewer, uid, "GetStudy", "no such study")
            series = history_index.study_series(session, entry.study_id)
        return StudyView(self._listed(entry, now), series)

    def thumbnail(self, principal: Principal, request: StudyRequest) -> ShownThumbnail:
        """The thumbnail of one series of the viewer's study, rendered on first request and
        kept in the object store."""
        viewer = viewer_of(principal, request.peer)
        uid, series_uid = viewer.study_uid(request.study_instance_uid), request.series_instance_uid
        self._audit_read(
            viewer, uid, f"thumbnail of series {series_uid} of study {uid or '(shared)'}"
        )
        if not series_uid:
            raise Rejected("series_instance_uid is empty", [])
        missing = "no such study or series"
        with self._sessions.begin() as session:
            entry = self._find(session, viewer, uid, "GetThumbnail", missing)
            files = history_index.current_files(session, entry.study_id, series_uid)
        if not files:
            raise NotFound(missing)
        shown = representative(files)
        try:
            thumbnail = thumbnail_for(self._store, shown, self._scratch, self._render)
        except (ObjectNotFound, ObjectStoreError) as failure:
            raise Unavailable("the object store could not be read; retry") from failure
        return ShownThumbnail(thumbnail, shown.sop_instance_uid)

    def files(self, principal: Principal, request: StudyRequest) -> list[InstanceFile]:
        """The current files of the viewer's study, or of one of its series; read each with
        :meth:`read`."""
        viewer = viewer_of(principal, request.peer)
        uid = viewer.study_uid(request.study_instance_uid)
        self._audit_read(viewer, uid, f"files of study {uid or '(shared)'}")
        if not uid and viewer.shared_study_id is None:
            raise Rejected("study_instance_uid is empty", [])
        missing = "no such study or series"
        with self._sessions.begin() as session:
            entry = self._find(session, viewer, uid, "DownloadStudy", missing)
            files = history_index.current_files(
                session, entry.study_id, request.series_instance_uid
            )
        if not files:
            raise NotFound(missing)
        return files

    def open_study(
        self, principal: Principal, study_instance_uid: str, peer: str, rpc: str, what: str
    ) -> StudyEntry:
        """The viewer's study with that UID, its read audited as ``what`` (a share link's use
        recorded under ``rpc``); :class:`NotFound` alike for a study that does not exist and
        for one that is not the viewer's."""
        viewer = viewer_of(principal, peer)
        self._audit_read(viewer, study_instance_uid, what)
        if not study_instance_uid:
            raise NotFound("no such study")
        with self._sessions.begin() as session:
            return self._find(session, viewer, study_instance_uid, rpc, "no such study")

    def readable_studies(self, principal: Principal, peer: str, limit: int) -> list[StudyEntry]:
        """Up to ``limit`` studies the viewer may read, newest first: a patient's own, a share
        link's or a study link's one, a hospital's recognized by its checks of the last
        :data:`RECENT_CHECK`.
        Not audited: the caller audits what it shows of them."""
        viewer = viewer_of(principal, peer)
        with self._sessions.begin() as session:
            if viewer.checked_study_uid is not None:
                # A doctor's study link: its check's one study, never the hospital's others.
                try:
                    uid = viewer.checked_study_uid
                    return [self._find(session, viewer, uid, "DICOMweb search", "no such study")]
                except NotFound:
                    return []
            if viewer.checking_institution_id is not None:
                since = dt.datetime.now(dt.UTC) - RECENT_CHECK
                return history_index.studies_checked_by(
                    session, viewer.checking_institution_id, since, limit
                )
            if viewer.shared_study_id is not None:
                return [self._find(session, viewer, "", "DICOMweb search", "no such study")]
            return history_index.patient_studies(
                session, viewer.patient_key, HistoryFilter(), None, limit
            )

    def study_files(self, study_id: int, series_instance_uid: str = "") -> list[InstanceFile]:
        """The current files of a study already opened with :meth:`open_study` or listed by
        :meth:`readable_studies` (or of one of its series)."""
        with self._sessions() as session:
            reads_without_transaction(session)
            return history_index.current_files(session, study_id, series_instance_uid)

    def read(self, instance: InstanceFile) -> Iterator[bytes]:
        """The bytes of one file as stored, in chunks of at most 1 MiB, checked against its
        SHA-256 at the end: :class:`DataLost` when they differ (or the store finds them
        damaged), :class:`Unavailable` when the store cannot be read."""
        uid = instance.sop_instance_uid
        digest = hashlib.sha256()
        try:
            for block in self._store.open(instance.object_key):
                digest.update(block)
                yield block
        except ObjectCorrupt as failure:
            raise DataLost(f"instance {uid} is damaged in the object store") from failure
        except (ObjectNotFound, ObjectStoreError) as failure:
            raise Unavailable(f"instance {uid} could not be read; retry") from failure
        if digest.hexdigest() != instance.sha256:
            raise DataLost(f"instance {uid} is damaged in the object store")

    def accesses(self, principal: Principal, request: AccessesRequest) -> AccessPage:
        """Who read or wrote the patient's data, from the audit trail, newest first."""
        patient_key = own_patient_key(principal)
        touched(patient_key, "list of accesses")
        page_size = request.page_size or ACCESS_PAGE
        before_id = None
        problems = []
        if not 1 <= page_size <= MAX_ACCESS_PAGE:
            problems.append(
                Violation(
                    "page_size", f"1 to {MAX_ACCESS_PAGE} (0 for {ACCESS_PAGE})", "OUT_OF_RANGE"
                )
            )
        if request.page_token:
            try:
                before_id = int(
                    open_cursor(
                        self._token_secret, _ACCESS_AUDIENCE, patient_key, "", request.page_token
                    )
                )
            except (InvalidCursor, TypeError, ValueError) as exc:
                reason = str(exc) if isinstance(exc, InvalidCursor) else "malformed page token"
                problems.append(Violation("page_token", reason, "INVALID_PAGE_TOKEN"))
        if problems:
            raise Rejected("the request is invalid", problems)
        # What this patient's own earlier calls queued is committed before it is read.
        self._audit.flush(_AUDIT_FLUSH_SECONDS)
        with self._sessions() as session:
            rows = audit_log.accesses(session, patient_key, page_size + 1, before_id)
        more = len(rows) > page_size
        rows = rows[:page_size]
        token = ""
        if more:
            token = sign_cursor(self._token_secret, _ACCESS_AUDIENCE, patient_key, "", rows[-1][0])
        return AccessPage([access for _row_id, access in rows], token)
