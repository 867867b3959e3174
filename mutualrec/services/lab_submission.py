"""Lab submission: a hospital's LIS sends a FHIR document; its results are kept and indexed.

One unit of work per document: the original is written to the object store first, under its
SHA-256, byte for byte; then one index transaction decides and records every entry's version
and the recognition rows of each result's newest version. A crash in between leaves at most an
unreferenced document, never an index row without its original.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import io
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from mutualrec.ingest.fhir_document import BundleKind
from mutualrec.ingest.fhir_version import FhirVersion
from mutualrec.ingest.lab_ingest import (
    EntryKind,
    EntryOutcome,
    PendingResult,
    PreparedBatch,
    Refusal,
    SubmissionResult,
    decided_outcome,
    outcomes_in_order,
    prepare_batch,
    refusal_summary,
)
from mutualrec.ingest.lab_versions import Change, HeldResult, decide_transition
from mutualrec.matching.facts import ResultStatus
from mutualrec.matching.indexed_results import ResultItems
from mutualrec.recognition.result_items import lab_items, lab_ref
from mutualrec.security.api_keys import Principal
from mutualrec.security.audit import touched
from mutualrec.services.outage import unavailable_on_outage
from mutualrec.services.result_indexing import DetailOf, ItemsOf, ResultIndexing, index_lab_results
from mutualrec.storage import lab_index
from mutualrec.storage.keys import document_key
from mutualrec.storage.objects import ObjectNotFound, ObjectStore
from mutualrec.violations import Conflict, Rejected, TooLarge

# Deadlocks and serialization failures are retried; a fresh transaction decides again.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
_ATTEMPTS = 3


class SubmissionRefused(Conflict):
    """An all-or-nothing submission whose valid entries ask for a refused status change.

    The document is fine; the results the region holds forbid it. Nothing of it was stored.
    """


@dataclass(frozen=True, slots=True)
class LabSubmissionRequest:
    """A FHIR document as sent; ``fhir_version`` None when the sender named one this service
    does not know."""

    body: bytes
    fhir_version: FhirVersion | None


@dataclass(frozen=True, slots=True)
class SubmissionLimits:
    """What a submission may be, from the settings."""

    max_bytes: int
    patient_key_secret: bytes
    clock_skew: dt.timedelta


class LabSubmissions:
    """The lab submission use case, built once per server.

    Async because one submission spans three places: the document is parsed on the CPU
    workers, the audit trail is told whose results came in on the caller's own task (where the
    call's audit record lives), and the index is written on the storage threads.
    """

    def __init__(
        self,
        *,
        store: ObjectStore,
        sessions: Callable[[], Session],
        indexing: ResultIndexing,
        limits: SubmissionLimits,
        blocking: Executor,
        cpu: Executor,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.indexing = indexing
        self.limits = limits
        self.blocking = blocking
        self.cpu = cpu

    async def submit(self, request: LabSubmissionRequest, principal: Principal) -> SubmissionResult:
        """Store the lab results of ``request``; one outcome per entry.

        Raises :class:`TooLarge`, :class:`Rejected` (the document, or an all-or-nothing one
        with a rejected entry), :class:`SubmissionRefused` and :class:`Unavailable`.
        """
        institution_id = principal.institution_id
        assert institution_id is not None  # only institutions are authorized to submit
        # The cut-off for "in the future" is when the region received the document.
        received_at = dt.datetime.now(dt.UTC)
        limit = self.limits.max_bytes
        if len(request.body) > limit:
            raise TooLarge.one(
                f"the document has {len(request.body)} bytes, more than {limit}",
                "body",
                f"at most {limit} bytes; split the results into several bundles",
                "DOCUMENT_TOO_LARGE",
            )
        if request.fhir_version is None:
            raise Rejected.one(
                "unknown FHIR version",
                "fhir_version",
                "use FHIR_R4 or FHIR_R5",
                "UNKNOWN_FHIR_VERSION",
            )
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(
            self.cpu,
            functools.partial(
                prepare_batch,
                request.body,
                request.fhir_version,
                received_at,
                self.limits.patient_key_secret,
                clock_skew=self.limits.clock_skew,
            ),
        )
        if isinstance(prepared, Refusal):
            raise Rejected(prepared.summary, prepared.violations)
        observations = Counter(pending.patient_key for pending in prepared.pending)
        for key, count in observations.items():
            touched(key, f"{count} lab observations submitted")
        return await loop.run_in_executor(
            self.blocking,
            functools.partial(self._store, institution_id, prepared, request.body),
        )

    def _store(self, institution_id: int, batch: PreparedBatch, body: bytes) -> SubmissionResult:
        items_of, detail_of = self.indexing.lab_mappers(institution_id)
        writer = _LabWriter(self.store, self.sessions, institution_id, items_of, detail_of)
        with unavailable_on_outage(
            "storage is unavailable", "nothing of this document was indexed, send it again later"
        ):
            return writer.write(batch, body)


@dataclass
class _State:
    """A result's state as this transaction evolves it."""

    lab_result_id: int
    held: HeldResult
    stored_version: int


class _LabWriter:
    """Stores one prepared submission: the document, then its results in one transaction."""

    def __init__(
        self,
        store: ObjectStore,
        sessions: Callable[[], Session],
        institution_id: int,
        items_of: ItemsOf,
        detail_of: DetailOf,
    ) -> None:
        """``items_of`` names the catalog items a result is, for the recognition index;
        ``detail_of`` is what a doctor sees of it as one item."""
        self.store = store
        self.sessions = sessions
        self.institution_id = institution_id
        self.items_of = items_of
        self.detail_of = detail_of

    def write(self, batch: PreparedBatch, body: bytes) -> SubmissionResult:
        """Keep ``body`` and index the batch prepared from it.

        Raises :class:`SubmissionRefused` when an all-or-nothing submission meets a refused
        status change; nothing of it remains then.
        """
        decided: dict[int, EntryOutcome] = {}
        if batch.pending:
            key = document_key(batch.document_sha256)
            created_blob = self._keep_document(key, body)
            try:
                decided = self._index(batch.pending, key, batch.received_at, batch.kind)
            except SubmissionRefused:
                if created_blob:
                    self.store.delete(key)
                raise
        return SubmissionResult(
            batch.kind, outcomes_in_order(batch.settled, decided), batch.document_sha256
        )

    def _keep_document(self, key: str, body: bytes) -> bool:
        """Store the document; True when the store did not hold it before.

        Bytes already held are written again all the same: the fresh write time is what keeps
        ``mutualrec admin sweep`` (which spares recent objects) from removing a blob that this
        submission is about to reference, should an earlier submission have left it orphaned.
        """
        try:
            self.store.stat(key)
            held = True
        except ObjectNotFound:
            held = False
        self.store.put(key, io.BytesIO(body), len(body))
        self.store.sync()
        return not held

    def _index(
        self, pending: list[PendingResult], key: str, received_at: dt.datetime, kind: BundleKind
    ) -> dict[int, EntryOutcome]:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self.sessions() as session, session.begin():
                    return self._decide_and_write(session, pending, key, received_at, kind)
            except DBAPIError as exc:
                sqlstate = getattr(exc.orig, "sqlstate", None)
                if sqlstate not in _RETRYABLE_SQLSTATES or attempt == _ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _decide_and_write(
        self,
        session: Session,
        pending: list[PendingResult],
        key: str,
        received_at: dt.datetime,
        kind: BundleKind,
    ) -> dict[int, EntryOutcome]:
        lab_index.ensure_patients(session, (p.patient_key for p in pending))
        first: dict[str, PendingResult] = {}
        for item in pending:
            first.setdefault(item.result.identity, item)
        created = lab_index.create_results(
            session,
            self.institution_id,
            [
                lab_index.NewResult(
                    identity, item.patient_key, item.result.status.value, item.sha256
                )
                for identity, item in first.items()
            ],
            received_at,
        )
        held = lab_index.lock_held(session, self.institution_id, set(first) - set(created))
        digests = lab_index.version_digests(
            session,
            (
                (held[p.result.identity].lab_result_id, p.sha256)
                for p in pending
                if p.result.identity in held and p.sha256 != held[p.result.identity].content_sha256
            ),
        )
        held_refs = {lab_ref(row.lab_result_id) for row in held.values()}
        states: dict[str, _State] = {}
        for identity, row in held.items():
            known = {sha: v for (i, sha), v in digests.items() if i == row.lab_result_id}
            known[row.content_sha256] = row.version
            states[identity] = _State(
                row.lab_result_id,
                HeldResult(
                    row.version,
                    ResultStatus(row.status),
                    row.content_sha256,
                    row.patient_key,
                    known,
                ),
                row.version,
            )
        versions: list[lab_index.NewVersion] = []
        # The recognition rows of each result's newest version; written with the versions.
        recognized: dict[int, ResultItems] = {}
        decided: dict[int, EntryOutcome] = {}
        for item in pending:
            identity = item.result.identity
            if identity in created and identity not in states:
                transition = decide_transition(
                    None, item.result.status, item.sha256, item.patient_key
                )
                states[identity] = _State(
                    created[identity],
                    HeldResult(1, item.result.status, item.sha256, item.patient_key, {}),
                    1,
                )
            else:
                transition = decide_transition(
                    states[identity].held, item.result.status, item.sha256, item.patient_key
                )
            state = states[identity]
            if transition.change in (Change.CREATED, Change.NEW_VERSION, Change.WITHDRAWN):
                versions.append(lab_index.NewVersion(state.lab_result_id, transition.version, item))
                state.held = HeldResult(
                    transition.version,
                    item.result.status,
                    item.sha256,
                    item.patient_key,
                    {**state.held.versions_by_sha256, item.sha256: transition.version},
                )
                recognized[state.lab_result_id] = lab_items(
                    state.lab_result_id,
                    item.result,
                    item.patient_key,
                    transition.version,
                    self.institution_id,
                    self.items_of(item.result),
                    self.detail_of,
                )
            decided[item.index] = decided_outcome(item, transition, state.held)
        refused = [o for o in decided.values() if o.kind is EntryKind.REJECTED]
        if kind.all_or_nothing and refused:
            raise SubmissionRefused(
                refusal_summary(kind, len(refused)),
                [v for o in refused for v in o.violations],
            )
        lab_index.add_versions(session, versions, self.institution_id, key, received_at)
        index_lab_results(session, list(recognized.values()), held_refs)
        lab_index.set_current(
            session,
            [
                (s.lab_result_id, s.held.version, s.held.status.value, s.held.content_sha256)
                for s in states.values()
                if s.held.version != s.stored_version
            ],
            received_at,
        )
        return decided
