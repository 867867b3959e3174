"""The pure parts of a FHIR lab submission: a document read, validated and normalized into a
batch ready to store, and every entry's outcome.

A batch keeps its good entries; a transaction (and a single Observation) is refused whole when
any entry is rejected. Storing is :mod:`mutualrec.services.lab_submission`'s.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import operator
from dataclasses import dataclass, field, fields
from typing import Any

from mutualrec.identity import IdentityDocument, patient_key
from mutualrec.ingest.fhir_document import INDEXED_TYPE, BundleKind
from mutualrec.ingest.fhir_submission import PreparedEntry, prepare_submission
from mutualrec.ingest.fhir_version import FhirVersion
from mutualrec.ingest.lab_result import CLOCK_TOLERANCE, LabResult
from mutualrec.ingest.lab_versions import Change, HeldResult, Transition
from mutualrec.violations import Rejected, Violation


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
class PendingResult:
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

    def __reduce__(self) -> tuple[type[PendingResult], tuple[Any, ...]]:
        return PendingResult, _PENDING_STATE(self)


_PENDING_STATE = operator.attrgetter(*(f.name for f in fields(PendingResult)))


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A submission read, validated and normalized, ready to store.

    Plain picklable data without the JSON resources or identity numbers, so the CPU-heavy
    preparation can run in a worker process and hand over only what storage needs: the results
    to index, and the outcomes of the other entries (context, rejected), already decided.
    """

    kind: BundleKind
    settled: list[EntryOutcome]
    pending: list[PendingResult]
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
            refusal_summary(kind, len(rejected)), [v for p in rejected for v in p.violations]
        )
    settled: list[EntryOutcome] = []
    pending: list[PendingResult] = []
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
                PendingResult(
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


def decided_outcome(item: PendingResult, transition: Transition, held: HeldResult) -> EntryOutcome:
    """The outcome of an Observation whose version ``transition`` decided; ``held`` is the
    result as held after it (as before, when the change was refused)."""
    if transition.change is Change.REFUSED:
        violation = Violation(item.field("status"), transition.reason, transition.reason_code)
        return EntryOutcome(
            item.index,
            item.full_url,
            INDEXED_TYPE,
            item.result.identity,
            EntryKind.REJECTED,
            version=0,
            status=held.status.value,
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


def refusal_summary(kind: BundleKind, count: int) -> str:
    what = "the transaction" if kind is BundleKind.TRANSACTION else "the Observation"
    return f"{what} was not stored: {count} entr{'y' if count == 1 else 'ies'} rejected"


def outcomes_in_order(
    settled: list[EntryOutcome], decided: dict[int, EntryOutcome]
) -> list[EntryOutcome]:
    """Every entry's outcome in document order: each entry is either settled or decided."""
    outcomes = settled + list(decided.values())
    outcomes.sort(key=_INDEX)
    return outcomes


_INDEX = operator.attrgetter("index")
