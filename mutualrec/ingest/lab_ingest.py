"""One unit of work per submitted FHIR document: keep the original, index its results.

The document is written to the object store first, under its SHA-256, byte for byte; then one
index transaction decides and records every entry's version. A crash in between leaves at most
an unreferenced document, never an index row without its original. A batch keeps its good
entries; a transaction (and a single Observation) is refused whole when any entry is rejected.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import io
import operator
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from mutualrec.identity import IdentityDocument, patient_key
from mutualrec.ingest.fhir_document import INDEXED_TYPE, BundleKind
from mutualrec.ingest.fhir_submission import PreparedEntry, prepare_submission
from mutualrec.ingest.fhir_validation import FhirVersion
from mutualrec.ingest.lab_result import CLOCK_TOLERANCE, LabResult, groups_text
from mutualrec.ingest.lab_versions import Change, HeldResult, Transition, decide_transition
from mutualrec.matching.facts import ResultStatus
from mutualrec.recognition.result_items import lab_ref, lab_rows
from mutualrec.storage import lab_index, recognition_index
from mutualrec.storage.objects import ObjectNotFound, ObjectStore
from mutualrec.violations import Rejected, Violation

# Deadlocks and serialization failures are retried; a fresh transaction decides again.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
_ATTEMPTS = 3


class EntryKind(enum.Enum):
    """What became of one entry of a submitted document."""

    CREATED = "created"
    UPDATED_NEW_VERSION = "updated-new-version"
    UNCHANGED = "unchanged"
    WITHDRAWN = "withdrawn"
    REJECTED = "rejected"
    CONTEXT = "context"
    IGNORED = "ignored"


_KIND_OF_CHANGE = {
    Change.CREATED: EntryKind.CREATED,
    Change.NEW_VERSION: EntryKind.UPDATED_NEW_VERSION,
    Change.UNCHANGED: EntryKind.UNCHANGED,
    Change.WITHDRAWN: EntryKind.WITHDRAWN,
    Change.REFUSED: EntryKind.REJECTED,
}


@dataclass(frozen=True, slots=True)
class EntryOutcome:
    """The outcome of one entry, as reported back to the LIS."""

    index: int
    full_url: str
    resource_type: str
    identity: str
    kind: EntryKind
    version: int = 0
    status: str = ""
    reason: str = ""
    violations: list[Violation] = field(default_factory=list)

    def __reduce__(self) -> tuple[type[EntryOutcome], tuple[Any, ...]]:
        # Positional arguments: dataclasses' pickling of slotted classes walks fields() per object.
        return EntryOutcome, _OUTCOME_STATE(self)


_OUTCOME_STATE = operator.attrgetter(*(f.name for f in fields(EntryOutcome)))


@dataclass(frozen=True, slots=True)
class SubmissionResult:
    """Every entry's outcome and the name the original document is kept under."""

    bundle_kind: BundleKind
    outcomes: list[EntryOutcome]
    document_sha256: str


class SubmissionRefused(Rejected):
    """An all-or-nothing submission whose valid entries ask for a refused status change.

    The document is fine; the results the region holds forbid it. Nothing of it was stored.
    """


def document_key(sha256: str) -> str:
    """Where the original document with this digest is kept."""
    return f"fhir/{sha256}.json"


def _rejected_outcome(prepared: PreparedEntry) -> EntryOutcome:
    first = prepared.violations[0]
    more = len(prepared.violations) - 1
    reason = f"{first.field}: {first.description}" + (f" (and {more} more)" if more else "")
    entry = prepared.entry
    return EntryOutcome(
        entry.index,
        entry.full_url,
        entry.resource_type,
        prepared.identity,
        EntryKind.REJECTED,
        reason=reason,
        violations=list(prepared.violations),
    )


def _context_outcome(prepared: PreparedEntry) -> EntryOutcome:
    entry = prepared.entry
    kind = EntryKind.IGNORED if prepared.ignored else EntryKind.CONTEXT
    return EntryOutcome(
        entry.index, entry.full_url, entry.resource_type, "", kind, reason=prepared.note
    )


@dataclass(frozen=True, slots=True)
class _Pending:
    """An Observation ready to index: its entry, result, patient key and content digest."""

    index: int
    full_url: str
    path: str
    result: LabResult
    patient_key: str
    sha256: str
    note: str = ""

    def field(self, name: str) -> str:
        """The document path of ``name`` within the Observation."""
        return f"{self.path}.{name}" if self.path else name

    def __reduce__(self) -> tuple[type[_Pending], tuple[Any, ...]]:
        return _Pending, _PENDING_STATE(self)


_PENDING_STATE = operator.attrgetter(*(f.name for f in fields(_Pending)))


@dataclass
class _State:
    """A result's state as this transaction evolves it."""

    lab_result_id: int
    held: HeldResult
    stored_version: int


def _text(number: Decimal | None) -> str | None:
    return None if number is None else str(number)


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    # Stored in UTC: SQLite keeps a datetime's wall-clock digits and drops its offset.
    return None if moment is None else moment.astimezone(dt.UTC)


def _version_row(
    pending: _Pending,
    lab_result_id: int,
    version: int,
    institution_id: int,
    key: str,
    received_at: dt.datetime,
) -> tuple[Any, ...]:
    """The values of a version row, in the order of :data:`lab_index.VERSION_COLUMNS`."""
    result = pending.result
    value = result.value
    local = result.local_codes[0] if result.local_codes else None
    code = value.code
    return (
        lab_result_id,
        version,
        pending.sha256,
        result.status.value,
        institution_id,
        pending.patient_key,
        result.loinc[0] if result.loinc else "",
        ";".join(result.loinc[1:]),
        local.system if local else "",
        local.code if local else "",
        result.code_text[:200],
        value.kind,
        _text(value.number),
        value.unit,
        value.text[:1000],
        code.system if code else "",
        code.code if code else "",
        _text(value.low),
        _text(value.high),
        _text(result.reference_low),
        _text(result.reference_high),
        result.reference_text[:200],
        ";".join(result.interpretation)[:64],
        _utc(result.specimen_collected_at),
        _utc(result.effective_at),
        _utc(result.issued_at),
        _utc(result.report_time),
        result.report_ref[:300],
        key,
        pending.index,
        received_at,
        groups_text(result.groups),
    )


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A submission read, validated and normalized, ready to store.

    Plain picklable data without the JSON resources or identity numbers, so the CPU-heavy
    preparation can run in a worker process and hand over only what storage needs: the results
    to index, and the outcomes of the other entries (context, rejected), already decided.
    """

    kind: BundleKind
    settled: list[EntryOutcome]
    pending: list[_Pending]
    document_sha256: str
    received_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a submission was refused whole before storage (a value, to cross processes)."""

    summary: str
    violations: list[Violation]


def prepare_batch(
    body: bytes,
    version: FhirVersion,
    received_at: dt.datetime,
    patient_key_secret: bytes,
    *,
    clock_skew: dt.timedelta = CLOCK_TOLERANCE,
) -> PreparedBatch | Refusal:
    """Read, validate and normalize ``body``; key its patients and digest its results."""
    try:
        submission = prepare_submission(body, version, received_at, clock_skew=clock_skew)
    except Rejected as rejection:
        return Refusal(rejection.summary, rejection.violations)
    kind = submission.document.kind
    rejected = [p for p in submission.entries if p.rejected]
    if kind.all_or_nothing and rejected:
        return Refusal(
            _refusal_summary(kind, len(rejected)), [v for p in rejected for v in p.violations]
        )
    settled: list[EntryOutcome] = []
    pending: list[_Pending] = []
    # One key per patient (a patient has many results): an HMAC each, and one string to pickle.
    keys: dict[IdentityDocument, str] = {}
    for prepared in submission.entries:
        entry = prepared.entry
        if prepared.rejected:
            settled.append(_rejected_outcome(prepared))
        elif prepared.result is None or prepared.patient is None:
            settled.append(_context_outcome(prepared))
        else:
            key = keys.get(prepared.patient)
            if key is None:
                key = keys[prepared.patient] = patient_key(prepared.patient, patient_key_secret)
            pending.append(
                _Pending(
                    entry.index,
                    entry.full_url,
                    entry.path,
                    prepared.result,
                    key,
                    prepared.result.content_sha256(key),
                    prepared.note,
                )
            )
    return PreparedBatch(kind, settled, pending, hashlib.sha256(body).hexdigest(), received_at)


class LabSubmission:
    """Stores one prepared submission: the document, then its results in one transaction."""

    def __init__(
        self,
        *,
        store: ObjectStore,
        sessions: Callable[[], Session],
        institution_id: int,
        items_of: Callable[[LabResult], frozenset[str]],
        detail_of: Callable[[LabResult, str], str] | None = None,
    ) -> None:
        """``items_of`` names the catalog items a result is, for the recognition index;
        ``detail_of`` is what a doctor sees of it as one item (default: as reported)."""
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
            batch.kind, _outcomes(batch.settled, decided), batch.document_sha256
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
        self, pending: list[_Pending], key: str, received_at: dt.datetime, kind: BundleKind
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
        pending: list[_Pending],
        key: str,
        received_at: dt.datetime,
        kind: BundleKind,
    ) -> dict[int, EntryOutcome]:
        lab_index.ensure_patients(session, (p.patient_key for p in pending))
        first: dict[str, _Pending] = {}
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
        held_ids = {row.lab_result_id for row in held.values()}
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
        rows: list[tuple[Any, ...]] = []
        # The recognition rows of each result's newest version; written with the versions.
        recognized: dict[str, list[dict[str, Any]]] = {}
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
                rows.append(
                    _version_row(
                        item,
                        state.lab_result_id,
                        transition.version,
                        self.institution_id,
                        key,
                        received_at,
                    )
                )
                state.held = HeldResult(
                    transition.version,
                    item.result.status,
                    item.sha256,
                    item.patient_key,
                    {**state.held.versions_by_sha256, item.sha256: transition.version},
                )
                recognized[lab_ref(state.lab_result_id)] = lab_rows(
                    state.lab_result_id,
                    item.result,
                    item.patient_key,
                    transition.version,
                    self.institution_id,
                    self.items_of(item.result),
                    self.detail_of,
                )
            decided[item.index] = _decided_outcome(item, transition, state)
        refused = [o for o in decided.values() if o.kind is EntryKind.REJECTED]
        if kind.all_or_nothing and refused:
            raise SubmissionRefused(
                _refusal_summary(kind, len(refused)),
                [v for o in refused for v in o.violations],
            )
        lab_index.add_versions(session, rows)
        recognition_index.upsert_results(
            session, [row for item_rows in recognized.values() for row in item_rows]
        )
        updated = {ref for ref in recognized if int(ref.removeprefix("lab:")) in held_ids}
        recognition_index.drop_stale_items(
            session, {ref: [r["item_code"] for r in recognized[ref]] for ref in updated}
        )
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


def _decided_outcome(item: _Pending, transition: Transition, state: _State) -> EntryOutcome:
    if transition.change is Change.REFUSED:
        violation = Violation(item.field("status"), transition.reason, transition.reason_code)
        return EntryOutcome(
            item.index,
            item.full_url,
            INDEXED_TYPE,
            item.result.identity,
            EntryKind.REJECTED,
            version=0,
            status=state.held.status.value,
            reason=transition.reason,
            violations=[violation],
        )
    return EntryOutcome(
        item.index,
        item.full_url,
        INDEXED_TYPE,
        item.result.identity,
        _KIND_OF_CHANGE[transition.change],
        version=transition.version,
        # The digest covers the status, so the version held has the submitted status.
        status=item.result.status.value,
        reason=item.note,
    )


def _refusal_summary(kind: BundleKind, count: int) -> str:
    what = "the transaction" if kind is BundleKind.TRANSACTION else "the Observation"
    return f"{what} was not stored: {count} entr{'y' if count == 1 else 'ies'} rejected"


def _outcomes(settled: list[EntryOutcome], decided: dict[int, EntryOutcome]) -> list[EntryOutcome]:
    """Every entry's outcome in document order: each entry is either settled or decided."""
    outcomes = settled + list(decided.values())
    outcomes.sort(key=_INDEX)
    return outcomes


_INDEX = operator.attrgetter("index")
