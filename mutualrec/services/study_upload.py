"""Study upload: a hospital's PACS sends a study instance by instance; each is validated,
stored and indexed, and the study's recognition rows kept up to date.

Instances are stored in batches: each one's blob is written, then one durability barrier
(``ObjectStore.sync``) makes the whole batch's blobs durable, then the batch's index rows are
committed, and only then are their outcomes sent. A crash before the barrier may leave empty or
torn blobs under their keys, but no index row points at them (a sweep removes them, and a later
upload of the same instance writes its blob afresh); an acknowledged instance is on disk and in
the index.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from mutualrec.identity import patient_key
from mutualrec.ingest.dicom_header import DicomHeader, attribute
from mutualrec.ingest.dicom_limits import HeaderLimits
from mutualrec.ingest.study_records import CurrentInstance, StudyOverview
from mutualrec.ingest.study_upload import (
    InstanceOutcome,
    OutcomeKind,
    PendingInstance,
    UploadScope,
    incomplete_outcome,
    instance_outcome,
    parse_declaration,
    read_instance,
    rejected_outcome,
)
from mutualrec.matching.catalog import Catalog
from mutualrec.security.api_keys import Principal
from mutualrec.security.audit import touched
from mutualrec.services.outage import STORAGE_FAILURES, is_unstorable, unavailable_on_outage
from mutualrec.services.result_indexing import (
    ResultIndexing,
    adopt_unlinked,
    index_study,
    refresh_study_detail,
)
from mutualrec.storage import imaging_index as index
from mutualrec.storage.keys import instance_key
from mutualrec.storage.objects import ObjectStore
from mutualrec.violations import NotFound, Rejected

P = ParamSpec("P")
T = TypeVar("T")

# Instances received whole and waiting to be stored, per upload: bounds memory to a few
# instances' buffers while letting reception run ahead of storage.
PIPELINE_DEPTH = 4
# Index rows are committed in batches: one transaction (and one WAL flush) per batch instead of
# per instance. A batch is committed when this many wait, when the stream has nothing more ready,
# and always before the reply, so no instance is acknowledged before its rows are durable.
MAX_BATCH = 64


@dataclass(frozen=True, slots=True)
class UploadHeader:
    """What the first message of an upload declares, as sent."""

    document_type: str
    document_number: str
    issuing_country: str
    accession_number: str
    performed_item_code: str
    # The study every instance must be of (STOW-RS to /studies/{study}); empty: the first's.
    study_instance_uid: str = ""


@dataclass(frozen=True, slots=True)
class Chunk:
    """A part of an instance's bytes; the last part of an instance ends it."""

    source_name: str
    data: bytes
    end_of_instance: bool


@dataclass(frozen=True, slots=True)
class UploadCounts:
    """How many instances had each outcome."""

    stored: int
    duplicate_identical: int
    new_version: int
    rejected: int

    @classmethod
    def of(cls, outcomes: list[InstanceOutcome]) -> UploadCounts:
        """The counts of ``outcomes``."""

        def count(kind: OutcomeKind) -> int:
            return sum(1 for o in outcomes if o.kind is kind)

        return cls(
            stored=count(OutcomeKind.STORED),
            duplicate_identical=count(OutcomeKind.DUPLICATE_IDENTICAL),
            new_version=count(OutcomeKind.NEW_VERSION),
            rejected=count(OutcomeKind.REJECTED),
        )


@dataclass(frozen=True, slots=True)
class UploadResult:
    """Every instance's outcome in the order sent, their counts, and the study as now held
    (None unless held for this institution and the declared patient)."""

    outcomes: list[InstanceOutcome]
    counts: UploadCounts
    study: StudyOverview | None


@dataclass(frozen=True, slots=True)
class StudyStatus:
    """A study of the caller's institution and the current version of each of its instances."""

    study: StudyOverview
    instances: list[CurrentInstance]


@dataclass(frozen=True, slots=True)
class UploadLimits:
    """What an upload may be, from the settings."""

    patient_key_secret: bytes
    max_instance_bytes: int
    max_chunk_bytes: int
    header_limits: HeaderLimits


class StudyUploads:
    """The study upload use case, built once per server.

    An upload is a stream: :meth:`upload` is a coroutine that overlaps receiving with storing.
    Header walks run on their own few threads, storage work on the storage threads.
    """

    def __init__(
        self,
        *,
        store: ObjectStore,
        sessions: sessionmaker[Session],
        indexing: ResultIndexing,
        limits: UploadLimits,
        blocking: Executor,
        headers: Executor,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.indexing = indexing
        self.limits = limits
        self.blocking = blocking
        self.headers = headers

    async def _run(
        self, executor: Executor, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, functools.partial(fn, *args, **kwargs))

    async def upload(
        self, header: UploadHeader, chunks: AsyncIterator[Chunk], principal: Principal
    ) -> UploadResult:
        """Receive a study instance by instance; one outcome per instance.

        ``chunks`` may raise a :class:`DomainError` (a malformed stream): the instances received
        whole before it are stored all the same. Raises :class:`Rejected` (a bad header, no
        instance) and :class:`Unavailable`.
        """
        institution_id = principal.institution_id
        assert institution_id is not None  # only institutions are authorized to upload
        upload = await self._begin(header, institution_id)
        touched(upload.patient_key, "upload of imaging study")
        # Receiving, reading headers and storing overlap: while a storage thread writes and
        # indexes instance N, a header thread reads N+1's header and this coroutine receives
        # N+2. The bounded queue is the backpressure that keeps memory flat however large the
        # study.
        ready: asyncio.Queue[_Received | None] = asyncio.Queue(maxsize=PIPELINE_DEPTH)
        storing = asyncio.create_task(self._store_instances(upload, ready))
        with unavailable_on_outage(
            "storage is unavailable",
            "instances acknowledged by GetStudyStatus are kept, send the rest again later",
        ):
            try:
                await self._receive(chunks, upload, ready, storing)
            finally:
                # Whatever ended the stream, the instances received whole are stored and indexed
                # before the call ends; shielded so a client's cancel cannot interrupt a commit.
                await asyncio.shield(self._finish_storing(ready, storing))
        if not upload.outcomes:
            raise Rejected.one(
                "the upload contains no instance",
                "chunk",
                "send each instance as chunks after the header",
                "EMPTY_UPLOAD",
            )
        overview = await self._run(self.blocking, upload.overview)
        outcomes = upload.outcomes
        counts = UploadCounts.of(outcomes)
        # The declared patient's trail says what was kept under their name: an upload refused
        # (another patient's study, say) is not an upload of theirs.
        touched(
            upload.patient_key,
            f"{counts.stored + counts.new_version} instances stored, {counts.rejected} rejected",
        )
        return UploadResult(outcomes, counts, overview)

    async def _begin(self, header: UploadHeader, institution_id: int) -> UploadSession:
        declaration = parse_declaration(
            header.document_type,
            header.document_number,
            header.issuing_country,
            header.accession_number,
            header.performed_item_code,
        )
        # Read now, not inside a batch's transaction: on SQLite a second connection would wait
        # for the write lock that very transaction holds.
        catalog = await self._run(self.blocking, self.indexing.catalog)
        return UploadSession(
            store=self.store,
            sessions=self.sessions,
            patient_key=patient_key(declaration.patient, self.limits.patient_key_secret),
            institution_id=institution_id,
            accession_number=declaration.accession_number,
            performed_item_code=declaration.performed_item_code,
            limits=self.limits,
            catalog=catalog,
            study_instance_uid=header.study_instance_uid or None,
        )

    async def _receive(
        self,
        chunks: AsyncIterator[Chunk],
        upload: UploadSession,
        ready: asyncio.Queue[_Received | None],
        storing: asyncio.Task[None],
    ) -> None:
        """Reassemble instances from chunks and hand each complete one to the storing task,
        its header read already started."""
        pending: PendingInstance | None = None
        max_chunk = self.limits.max_chunk_bytes
        try:
            async for chunk in chunks:
                if storing.done():
                    break  # storage failed; the caller reports it
                if pending is None:
                    pending = upload.begin_instance(chunk.source_name)
                pending.write(chunk.data, max_chunk)
                if chunk.end_of_instance:
                    finished, pending = pending, None
                    header = asyncio.ensure_future(self._run(self.headers, upload.read, finished))
                    await ready.put(_Received(finished, header))
        except BaseException:
            # Cancelled or refused: the partial instance is dropped, never stored.
            if pending is not None:
                pending.close()
            raise
        if pending is not None:
            upload.abandon(
                pending,
                f"the stream ended after {pending.size} bytes of this instance, before a chunk "
                "with end_of_instance",
            )

    async def _store_instances(
        self, upload: UploadSession, ready: asyncio.Queue[_Received | None]
    ) -> None:
        """Validate and store instances in arrival order; commit when nothing else is ready.

        After a storage failure the rest of the queue is only drained (so the receiver never
        blocks on a full queue) and the failure is raised at the end.
        """
        failure: BaseException | None = None
        while (received := await ready.get()) is not None:
            pending = received.pending
            if failure is not None:
                # Its header read may still be under way: let it end before freeing the bytes.
                await asyncio.gather(received.header, return_exceptions=True)
                pending.close()
                continue
            try:
                header = await received.header
                if header is not None:
                    await self._run(self.blocking, upload.finish, pending, header)
                if ready.empty() or upload.batch_full:
                    await self._run(self.blocking, upload.commit)
            except STORAGE_FAILURES as exc:
                failure = exc
        if failure is not None:
            raise failure
        await self._run(self.blocking, upload.commit)

    @staticmethod
    async def _finish_storing(
        ready: asyncio.Queue[_Received | None], storing: asyncio.Task[None]
    ) -> None:
        if not storing.done():
            await ready.put(None)
        await storing

    def status(self, study_instance_uid: str, principal: Principal) -> StudyStatus:
        """The instances held for a study of the caller's institution (blocking).

        Another institution's study answers the same as a missing one (:class:`NotFound`):
        the existence of a patient's study is not disclosed.
        """
        uid = study_instance_uid.strip()
        if not uid:
            raise Rejected.one(
                "study_instance_uid is required", "study_instance_uid", "missing", "MISSING_FIELD"
            )
        with self.sessions() as session:
            overview = None
            if index.study_owner(session, uid) == principal.institution_id:
                overview = index.study_overview(session, uid)
            if overview is None:
                raise NotFound(f"no study {uid} of this institution")
            return StudyStatus(overview, index.current_instances(session, uid))


@dataclass(frozen=True, slots=True)
class _Received:
    """An instance received whole, and the read of its header (on the header threads)."""

    pending: PendingInstance
    header: asyncio.Future[DicomHeader | None]


@dataclass
class _Ensured:
    """Rows this upload has already committed, so later instances skip re-checking them."""

    study_id: int | None = None
    series_ids: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Indexed:
    """What one upload's staged instances became in a transaction not yet committed."""

    study_id: int
    ensured: _Ensured
    outcomes: list[InstanceOutcome]
    # The first versions it added (new SOP Instance UIDs) and their bytes.
    added_instances: int
    added_bytes: int
    # Whether it added a new version of an instance held before: the bytes the study counts
    # then lose the older version's, read by a full recount.
    new_version: bool
    # Whether what the study's recognition rows derive from may have changed: the upload's first
    # batch (the study, its patient or an adoption just written) or a series new to the upload.
    reindex: bool


def _refresh_study(
    session: Session, study_instance_uid: str, catalog: Catalog, batches: list[_Indexed]
) -> None:
    """The study's counts and recognition rows after ``batches`` (all of this study), in the
    transaction of its instances: they commit with them or not at all, so no interruption can
    leave a held study unrecognized.

    What a full recount and re-index would give, at a cost that does not grow with the study in
    the common case (a later batch of first versions in series already seen): the counts are
    incremented and only the detail (instance count) of the recognition rows is rewritten.
    """
    study_id = batches[0].study_id
    added = sum(batch.added_instances for batch in batches)
    new_version = any(batch.new_version for batch in batches)
    reindex = any(batch.reindex for batch in batches)
    if new_version:
        index.refresh_study_counts(session, study_id)
    elif added or reindex:
        index.add_to_study_counts(
            session, study_id, added, sum(batch.added_bytes for batch in batches)
        )
    if reindex:
        index_study(session, study_instance_uid, catalog)
    elif added or new_version:
        refresh_study_detail(session, study_instance_uid)


def commit_together(uploads: list[UploadSession]) -> list[BaseException | None]:
    """Index the staged instances of several uploads (C-STORE associations, say) in one
    transaction, each study's counts and recognition rows refreshed once: one commit (one WAL
    flush) and one durability barrier for them all. Blocking.

    Returns, per upload, None once its instances are committed and their outcomes recorded, or
    what failed it. A conflict or a value the index refuses sinks only its own upload: the
    uploads are then committed one by one. Raises what fails the shared commit otherwise (an
    outage): then no instance of any of them is indexed.
    """
    batches = [(upload, upload._staged) for upload in uploads if upload._staged]
    failures: list[BaseException | None] = [None] * len(uploads)
    if not batches:
        return failures
    for upload, _ in batches:
        upload._staged = []
    # Study by study in one order, so two such transactions lock studies in the same order.
    batches.sort(key=lambda batch: batch[1][0].header.study_instance_uid)
    first = batches[0][0]
    # The blobs must be durable before rows point at them: one barrier for the whole batch.
    first.store.sync()
    try:
        with first.sessions.begin() as session:
            indexed = [
                (upload, upload._index_staged(session, staged)) for upload, staged in batches
            ]
            # Each study once, with every batch of it (the first upload's catalog).
            studies: dict[int, tuple[str, Catalog, list[_Indexed]]] = {}
            for (upload, staged), (_, done) in zip(batches, indexed, strict=True):
                uid = staged[0].header.study_instance_uid
                studies.setdefault(done.study_id, (uid, upload.catalog, []))[2].append(done)
            for uid, catalog, done_batches in studies.values():
                _refresh_study(session, uid, catalog, done_batches)
    except (index.IndexConflict, *STORAGE_FAILURES) as failure:
        if not isinstance(failure, index.IndexConflict) and not is_unstorable(failure):
            raise
        for upload, staged in batches:
            try:
                upload._commit_staged(staged)
            except STORAGE_FAILURES as alone:
                failures[uploads.index(upload)] = alone
        return failures
    for upload, done in indexed:
        upload._accept(done)
    return failures


@dataclass(frozen=True, slots=True)
class _Staged:
    """An instance whose blob is written and whose index rows wait for the batch commit."""

    position: int
    source_name: str
    header: DicomHeader
    record: index.InstanceRecord


class UploadSession:
    """The server side of one upload stream.

    :meth:`read` parses an instance's header (CPU only), :meth:`finish` validates it and writes
    its blob; :meth:`commit` indexes the staged instances in one transaction, with the study's
    recognition rows. All are blocking and must be called one at a time (the service runs them
    in order on worker threads while it receives the next instance).
    """

    def __init__(
        self,
        *,
        store: ObjectStore,
        sessions: sessionmaker[Session],
        patient_key: str,
        institution_id: int,
        accession_number: str,
        performed_item_code: str,
        limits: UploadLimits,
        catalog: Catalog,
        unlinked: bool = False,
        study_instance_uid: str | None = None,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.institution_id = institution_id
        # What the sender declared of the whole study (UploadStudy's header; C-STORE: nothing).
        self.accession_number = accession_number
        self.performed_item_code = performed_item_code
        self.patient_key = patient_key
        # C-STORE of a patient not yet known: ``patient_key`` is the holding key of the
        # institution's PatientID and the study is recorded as held unlinked.
        self.unlinked = unlinked
        self.limits = limits
        # What the study's recognition rows are derived under, read once before any batch.
        self.catalog = catalog
        self._outcomes: dict[int, InstanceOutcome] = {}
        self._received = 0
        self._staged: list[_Staged] = []
        # The first valid instance fixes the study and the hospital's PatientID of the upload.
        # (Fixed ahead when the sender named the study.)
        self.scope = UploadScope(study_instance_uid)
        self._ensured = _Ensured()
        # Whether the region held no such study when this upload's first instance arrived.
        self._study_was_new: bool | None = None

    @property
    def outcomes(self) -> list[InstanceOutcome]:
        """Outcomes of the instances decided so far, in the order they were sent."""
        return [self._outcomes[i] for i in sorted(self._outcomes)]

    def outcome(self, position: int) -> InstanceOutcome | None:
        """The outcome of the instance at ``position``, once decided."""
        return self._outcomes.get(position)

    @property
    def batch_full(self) -> bool:
        """Whether the staged instances should be committed now."""
        return len(self._staged) >= MAX_BATCH

    def begin_instance(self, source_name: str) -> PendingInstance:
        """Start receiving the next instance."""
        self._received += 1
        return PendingInstance(self._received - 1, source_name, self.limits.max_instance_bytes)

    def abandon(self, pending: PendingInstance, reason: str) -> None:
        """Record an instance that cannot complete (the stream ended inside it)."""
        pending.close()
        self._record(incomplete_outcome(pending, reason))

    def read(self, pending: PendingInstance) -> DicomHeader | None:
        """The header of a completely received instance; None when it is rejected (recorded,
        and the instance dropped). Touches no storage: it runs on the header workers."""
        try:
            return read_instance(pending, self.limits.header_limits)
        except Rejected as rejection:
            self._record(
                rejected_outcome(
                    pending.index,
                    pending.source_name,
                    rejection,
                    pending.size,
                    pending.sha256 if pending.problem is None else "",
                )
            )
            pending.close()
            return None
        except BaseException:
            pending.close()
            raise

    def finish(self, pending: PendingInstance, header: DicomHeader) -> None:
        """Validate an instance whose header :meth:`read` parsed and write its blob, or reject
        it."""
        try:
            self.scope.admit(header)
            self._stage(pending, header)
        except Rejected as rejection:
            self._record(
                rejected_outcome(
                    pending.index,
                    pending.source_name,
                    rejection,
                    pending.size,
                    pending.sha256,
                    header,
                )
            )
        finally:
            pending.close()

    def _record(self, outcome: InstanceOutcome) -> None:
        self._outcomes[outcome.index] = outcome

    def _stage(self, pending: PendingInstance, header: DicomHeader) -> None:
        sha256 = pending.sha256
        held: list[index.HeldVersion] = []
        # A study new to the region when the upload began (the common case) holds no instance
        # to check against: no session to open for it.
        if self._study_was_new is not True:
            with self.sessions() as session:
                held = self._precheck(session, header)
        duplicate = next((v for v in held if v.sha256 == sha256), None)
        if duplicate is not None:
            self._record(
                instance_outcome(
                    pending.index,
                    pending.source_name,
                    header,
                    pending.size,
                    sha256,
                    OutcomeKind.DUPLICATE_IDENTICAL,
                    duplicate.version,
                )
            )
            return
        key = instance_key(
            header.study_instance_uid, header.series_instance_uid, header.sop_instance_uid, sha256
        )
        self.store.put(key, pending.spool, pending.size)
        record = index.InstanceRecord(
            sop_instance_uid=header.sop_instance_uid,
            sop_class_uid=header.sop_class_uid,
            instance_number=header.instance_number,
            transfer_syntax_uid=header.transfer_syntax_uid,
            size_bytes=pending.size,
            sha256=sha256,
            object_key=key,
            institution_id=self.institution_id,
        )
        self._staged.append(_Staged(pending.index, pending.source_name, header, record))

    def commit(self) -> None:
        """Index every staged instance in one transaction and record their outcomes."""
        staged, self._staged = self._staged, []
        if not staged:
            return
        # The blobs (bytes and directory entries) must be durable before rows point at them:
        # one barrier for the batch instead of an fsync per instance.
        self.store.sync()
        self._commit_staged(staged)

    def _commit_staged(self, staged: list[_Staged]) -> None:
        try:
            self._commit_batch(staged)
        except index.IndexConflict:
            # A conflict raced past the pre-check (another upload claimed a UID meanwhile): find
            # which instance it concerns by committing one at a time.
            for one in staged:
                try:
                    self._commit_batch([one])
                except index.IndexConflict as conflict:
                    self._drop_unreferenced_blob(one.record.object_key)
                    self._record(
                        rejected_outcome(
                            one.position,
                            one.source_name,
                            Rejected.one(str(conflict), conflict.field, str(conflict), "CONFLICT"),
                            one.record.size_bytes,
                            one.record.sha256,
                            one.header,
                        )
                    )

    def _commit_batch(self, staged: list[_Staged]) -> None:
        with self.sessions.begin() as session:
            indexed = self._index_staged(session, staged)
            _refresh_study(session, staged[0].header.study_instance_uid, self.catalog, [indexed])
        self._accept(indexed)

    def _index_staged(self, session: Session, staged: list[_Staged]) -> _Indexed:
        """Insert the rows of ``staged`` in ``session``'s transaction (the study locked); the
        study's counts and recognition rows are left to the caller, once per study."""
        ensured = _Ensured(self._ensured.study_id, dict(self._ensured.series_ids))
        outcomes: list[InstanceOutcome] = []
        series_ids = [self._ensure_rows(session, item.header, ensured) for item in staged]
        # A series another upload created is new to this one too: re-indexing then is only
        # redundant, while a series this upload creates always re-indexes the study.
        reindex = self._ensured.study_id is None or len(ensured.series_ids) > len(
            self._ensured.series_ids
        )
        added_instances = added_bytes = 0
        new_version = False
        assert ensured.study_id is not None
        index.lock_study(session, ensured.study_id)
        # Same-SOP instances within one batch must go the slow way, in order.
        seen: set[str] = set()
        fast = []
        for series_id, item in zip(series_ids, staged, strict=True):
            if item.record.sop_instance_uid not in seen:
                seen.add(item.record.sop_instance_uid)
                fast.append((series_id, item.record))
        inserted = index.add_first_versions(session, fast)
        for series_id, item in zip(series_ids, staged, strict=True):
            record = item.record
            if (record.sop_instance_uid, record.sha256) in inserted:
                inserted.discard((record.sop_instance_uid, record.sha256))
                version, created = 1, True
            else:
                version, created = index.add_instance_version(session, series_id, record)
            if not created:
                kind = OutcomeKind.DUPLICATE_IDENTICAL
            elif version == 1:
                kind = OutcomeKind.STORED
                added_instances += 1
                added_bytes += record.size_bytes
            else:
                kind = OutcomeKind.NEW_VERSION
                new_version = True
            outcomes.append(
                instance_outcome(
                    item.position,
                    item.source_name,
                    item.header,
                    record.size_bytes,
                    record.sha256,
                    kind,
                    version,
                )
            )
        return _Indexed(
            ensured.study_id,
            ensured,
            outcomes,
            added_instances,
            added_bytes,
            new_version,
            reindex,
        )

    def _accept(self, indexed: _Indexed) -> None:
        """Record what a committed transaction indexed: only committed rows may be skipped by
        later instances."""
        self._ensured = indexed.ensured
        for outcome in indexed.outcomes:
            self._record(outcome)

    def _drop_unreferenced_blob(self, key: str) -> None:
        with self.sessions() as session:
            if not index.object_referenced(session, key):
                self.store.delete(key)

    def _precheck(self, session: Session, header: DicomHeader) -> list[index.HeldVersion]:
        """Read-only conflict checks, before any byte is written to the store.

        Not called for a study the region did not hold when the upload began: no instance can
        be a duplicate then, and a SOP Instance UID held in another study is still caught when
        the batch is committed.
        """
        if self._ensured.study_id is None:
            holder = index.study_holder(session, header.study_instance_uid)
            if self._study_was_new is None:
                self._study_was_new = holder is None
            if holder is not None and holder[0] != self.institution_id:
                raise Rejected.one(
                    "the study belongs to another institution",
                    attribute("StudyInstanceUID"),
                    "this Study Instance UID is held for another institution",
                    "CONFLICT",
                )
            if holder is not None and holder[1] not in (
                self.patient_key,
                # Held unlinked under this PatientID: linking the PatientID adopts it.
                index.holding_key(self.institution_id, header.patient_id),
            ):
                # Checked before the duplicate test: identical bytes re-sent under another
                # patient are a wrong identity, not a harmless retry.
                raise Rejected.one(
                    "the study is held for another patient",
                    "header.patient",
                    "this study is held for another patient than the one the header declares",
                    "OTHER_PATIENT",
                )
        held = index.held_versions(session, header.sop_instance_uid)
        if held and held[0].series_instance_uid != header.series_instance_uid:
            # The holding series is not named: it may be another institution's.
            raise Rejected.one(
                "the SOP Instance UID is held in another series",
                attribute("SOPInstanceUID"),
                "this SOP Instance UID is held in another series",
                "CONFLICT",
            )
        return held

    def _ensure_rows(self, session: Session, header: DicomHeader, ensured: _Ensured) -> int:
        """The series id of the instance, creating patient, study and series rows on first sight."""
        if ensured.study_id is None:
            if self.unlinked:
                # The holding key's patient row only: the PatientID stays unlinked.
                index.link_patient(session, self.institution_id, "", self.patient_key)
            else:
                index.link_patient(
                    session, self.institution_id, header.patient_id, self.patient_key
                )
                adopt_unlinked(
                    session, self.institution_id, header.patient_id, self.patient_key, self.catalog
                )
            ensured.study_id = index.ensure_study(
                session,
                index.StudyRecord(
                    study_instance_uid=header.study_instance_uid,
                    patient_key=self.patient_key,
                    institution_id=self.institution_id,
                    accession_number=self.accession_number or header.accession_number,
                    study_date=header.study_date,
                    date_source=header.date_source,
                    study_time=header.study_time,
                    description=header.study_description,
                    performed_item_code=self.performed_item_code,
                ),
            )
            if self.unlinked:
                linked = index.hold_unlinked(
                    session, ensured.study_id, self.institution_id, header.patient_id
                )
                if linked is not None:
                    # LinkPatient committed since this instance was resolved: the patient's.
                    adopt_unlinked(
                        session, self.institution_id, header.patient_id, linked, self.catalog
                    )
        series_id = ensured.series_ids.get(header.series_instance_uid)
        if series_id is None:
            series_id = index.ensure_series(
                session,
                ensured.study_id,
                index.SeriesRecord(
                    series_instance_uid=header.series_instance_uid,
                    modality=header.modality,
                    body_part_examined=header.body_part_examined,
                    body_part=header.body_part,
                    contrast_agent=header.contrast_agent,
                    contrast=header.contrast,
                    series_number=header.series_number,
                    description=header.series_description,
                ),
            )
            ensured.series_ids[header.series_instance_uid] = series_id
        return series_id

    def overview(self) -> StudyOverview | None:
        """The study as the region holds it now (blocking); None unless it is held for this
        institution and the declared patient: the reply never describes someone else's study."""
        uid = self.scope.study_instance_uid
        if uid is None:
            return None
        with self.sessions() as session:
            holder = index.study_holder(session, uid)
            if holder != (self.institution_id, self.patient_key):
                return None
            return index.study_overview(session, uid)
