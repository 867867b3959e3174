"""C-STORE: a hospital PACS pushes instances one by one over a DICOM association.

The same rules and the same path as UploadStudy (:mod:`mutualrec.services.study_upload`):
each instance is read, validated, written and indexed by an :class:`UploadSession`, one per
study (and patient) the association carries, so an association is one upload session per study.
What differs is who the patient is: C-STORE has no header declaring an identity document, so
it is resolved per instance (:meth:`DicomAssociation.store`).

Every instance is committed before its outcome is returned: the door sends the C-STORE response
(which a PACS takes as "safely stored") only then. A PACS waits for each response before sending
the next instance, so one association has nothing to batch; but the instances that several
associations have in flight at once are committed together (:class:`GroupCommit`): one
directory sync, one transaction, each study's counts and recognition rows refreshed once, then
every waiting handler gets its instance's outcome. An association that ends early keeps every
instance already answered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TypeVar

from mutualrec.identity import patient_key
from mutualrec.ingest.dicom_header import DicomHeader, attribute
from mutualrec.ingest.dicom_identity import identity_of_instance
from mutualrec.ingest.study_upload import (
    InstanceOutcome,
    PendingInstance,
    read_instance,
    rejected_outcome,
)
from mutualrec.security.audit import touched
from mutualrec.services.dicom_peers import DicomCaller
from mutualrec.services.outage import STORAGE_FAILURES, is_unstorable, unavailable_on_outage
from mutualrec.services.study_upload import StudyUploads, UploadSession, commit_together
from mutualrec.storage import imaging_index as index
from mutualrec.violations import Rejected

T = TypeVar("T")

# The reason code of an instance whose patient cannot be resolved.
PATIENT_NOT_IDENTIFIED = "PATIENT_NOT_IDENTIFIED"
# How an instance's bytes are fed to the spool: as UploadStudy's chunks would be.
_SLICE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """What became of one C-STORE instance; ``held_unlinked`` when its patient is not known yet
    and its study is held unlinked under the hospital's PatientID."""

    outcome: InstanceOutcome
    held_unlinked: bool = False


@dataclass(frozen=True, slots=True)
class _Whose:
    """Whose an instance is: a patient's key, or the holding key of an unlinked PatientID."""

    patient_key: str
    unlinked: bool


@dataclass(eq=False)
class _Waiting:
    """An upload session whose staged instance waits for a group commit."""

    upload: UploadSession
    done: bool = False
    failure: BaseException | None = None


@dataclass
class GroupCommit:
    """Commits what the associations' handlers staged, together (group commit).

    A handler calls :meth:`commit` and blocks. When no commit runs, it leads: it commits every
    session waiting at that moment (its own included) in one transaction, on the storage
    threads; those that arrive meanwhile wait and the next leader commits them all. So a batch
    closes as soon as the previous commit ends: one association alone waits for nothing, and
    several share each commit instead of queueing for the study's lock one by one.
    """

    storage_threads: Executor
    _queue: list[_Waiting] = field(default_factory=list)
    _busy: bool = False
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def commit(self, upload: UploadSession) -> None:
        """Index ``upload``'s staged instances (and whatever else waits); once this returns
        they are durable and their outcomes recorded. Raises what failed their commit: a
        failed shared commit fails every session in it."""
        waiting = _Waiting(upload)
        with self._changed:
            self._queue.append(waiting)
            while not waiting.done and self._busy:
                self._changed.wait()
            # Not done yet and no commit running: this handler commits what waits, its own too.
            leading = not waiting.done
            if leading:
                self._busy = True
                batch, self._queue = self._queue, []
        if leading:
            try:
                self._commit(batch)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()
        if waiting.failure is not None:
            raise waiting.failure

    def _commit(self, batch: list[_Waiting]) -> None:
        failures: list[BaseException | None]
        try:
            failures = self.storage_threads.submit(
                commit_together, [waiting.upload for waiting in batch]
            ).result()
        except BaseException as shared:
            failures = [shared] * len(batch)
        for waiting, failure in zip(batch, failures, strict=True):
            waiting.failure = failure
            waiting.done = True


class DicomStorage:
    """The C-STORE use case, built once per server over the study upload service."""

    def __init__(self, uploads: StudyUploads) -> None:
        self.uploads = uploads
        self.group = GroupCommit(uploads.blocking)

    def open(self, caller: DicomCaller, study_instance_uid: str = "") -> DicomAssociation:
        """The storage side of one accepted association of ``caller`` (``study_instance_uid``:
        the one study its instances must be of, when the sender named it)."""
        return DicomAssociation(self.uploads, caller, self.group, study_instance_uid)


class DicomAssociation:
    """What one association has stored so far. :meth:`store` is blocking and called one
    instance at a time (pynetdicom serves an association's requests in order, on its thread)."""

    def __init__(
        self,
        uploads: StudyUploads,
        caller: DicomCaller,
        group: GroupCommit,
        study_instance_uid: str = "",
    ) -> None:
        self._uploads = uploads
        self.caller = caller
        self._group = group
        self._study_instance_uid = study_instance_uid or None
        self._received = 0
        # PatientIDs found linked, and to whom: a link is never undone nor changed, so later
        # instances skip the lookup. (An unlinked one is looked up again: it may be linked
        # meanwhile.)
        self._links: dict[str, str] = {}
        # One session per (study, patient): a study's rows are ensured once per association.
        self._sessions: dict[tuple[str, str], UploadSession] = {}

    @staticmethod
    def _on(pool: Executor, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` on the upload service's header or storage threads and wait: the same
        bounded threads (and database pool) as UploadStudy, however many associations."""
        return pool.submit(fn, *args).result()

    def store(self, data: bytes, source_name: str) -> StoredInstance:
        """Validate, write and index one instance (a Part 10 file's bytes); its outcome once it
        is durable. Raises :class:`~mutualrec.violations.Unavailable` when storage fails."""
        pending = self.begin_instance(source_name)
        for start in range(0, len(data), _SLICE):
            pending.write(data[start : start + _SLICE], _SLICE)
        return self.store_pending(pending)

    def begin_instance(self, source_name: str) -> PendingInstance:
        """A new instance to receive (STOW-RS spools each part into one as it streams)."""
        position = self._received
        self._received += 1
        return PendingInstance(position, source_name, self._uploads.limits.max_instance_bytes)

    def store_pending(self, pending: PendingInstance) -> StoredInstance:
        """:meth:`store` of an instance received whole into ``pending`` (closed here)."""
        position, source_name = pending.index, pending.source_name
        header: DicomHeader | None = None
        try:
            header, whose = self._on(self._uploads.headers, self._read, pending)
        except Rejected as rejection:
            sha256 = pending.sha256 if pending.problem is None else ""
            pending.close()
            return StoredInstance(
                rejected_outcome(position, source_name, rejection, pending.size, sha256, header)
            )
        except BaseException:
            pending.close()
            raise
        if not whose.unlinked:
            touched(whose.patient_key, f"C-STORE from {self.caller.ae_title}")
        with unavailable_on_outage(
            "storage is unavailable",
            "instances already answered with success are kept, send this one again later",
        ):
            try:
                session = self._session(header, whose)
                self._on(self._uploads.blocking, session.finish, pending, header)
                self._group.commit(session)
            except STORAGE_FAILURES as failure:
                if not is_unstorable(failure):
                    raise
                return StoredInstance(
                    rejected_outcome(
                        position,
                        source_name,
                        Rejected.one(
                            "the index refuses a value of this instance",
                            "instance",
                            str(failure.__class__.__name__),
                            "UNSTORABLE",
                        ),
                        pending.size,
                        pending.sha256,
                        header,
                    )
                )
        outcome = session.outcome(position)
        assert outcome is not None  # finish and commit decide every instance they are given
        return StoredInstance(outcome, whose.unlinked)

    def _read(self, pending: PendingInstance) -> tuple[DicomHeader, _Whose]:
        """The instance's header and whose it is (one trip to the header threads)."""
        header = read_instance(pending, self._uploads.limits.header_limits)
        return header, self._patient_key(pending, header)

    def _patient_key(self, pending: PendingInstance, header: DicomHeader) -> _Whose:
        """Whose instance this is: an identity document in OtherPatientIDsSequence, else the
        hospital's PatientID as linked by an earlier upload or LinkPatient, else nobody's yet:
        held unlinked under the PatientID (an empty one cannot be linked later: refused)."""
        document = identity_of_instance(pending.spool)
        if document is not None:
            return _Whose(patient_key(document, self._uploads.limits.patient_key_secret), False)
        linked = self._links.get(header.patient_id)
        if linked is None:
            with self._uploads.sessions() as db:
                linked = index.linked_patient(db, self.caller.institution_id, header.patient_id)
        if linked is not None:
            self._links[header.patient_id] = linked
            return _Whose(linked, False)
        if header.patient_id:
            return _Whose(index.holding_key(self.caller.institution_id, header.patient_id), True)
        raise Rejected.one(
            "the patient cannot be identified",
            attribute("PatientID"),
            "an empty PatientID cannot be linked to a patient and OtherPatientIDsSequence "
            "holds no identity document: send the hospital's PatientID, or the document in "
            "OtherPatientIDsSequence",
            PATIENT_NOT_IDENTIFIED,
        )

    def _session(self, header: DicomHeader, whose: _Whose) -> UploadSession:
        scope = (header.study_instance_uid, whose.patient_key)
        session = self._sessions.get(scope)
        if session is None:
            session = UploadSession(
                store=self._uploads.store,
                sessions=self._uploads.sessions,
                patient_key=whose.patient_key,
                institution_id=self.caller.institution_id,
                accession_number="",
                performed_item_code="",
                limits=self._uploads.limits,
                catalog=self._on(self._uploads.blocking, self._uploads.indexing.catalog),
                unlinked=whose.unlinked,
                study_instance_uid=self._study_instance_uid,
            )
            self._sessions[scope] = session
        return session
