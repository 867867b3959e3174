"""Translation between SubmitObservations messages and the lab ingest domain."""

from __future__ import annotations

from collections import Counter

from mutualrec.api.status import violations_to_proto
from mutualrec.ingest.fhir_version import FhirVersion
from mutualrec.ingest.lab_ingest import EntryKind, SubmissionResult
from mutualrec.v1 import ingest_pb2

FHIR_VERSIONS = {
    ingest_pb2.FHIR_VERSION_UNSPECIFIED: FhirVersion.R4,
    ingest_pb2.FHIR_R4: FhirVersion.R4,
    ingest_pb2.FHIR_R5: FhirVersion.R5,
}

_KINDS = {
    EntryKind.CREATED: ingest_pb2.CREATED,
    EntryKind.UPDATED_NEW_VERSION: ingest_pb2.UPDATED_NEW_VERSION,
    EntryKind.UNCHANGED: ingest_pb2.UNCHANGED,
    EntryKind.WITHDRAWN: ingest_pb2.WITHDRAWN,
    EntryKind.REJECTED: ingest_pb2.ENTRY_REJECTED,
    EntryKind.CONTEXT: ingest_pb2.CONTEXT,
    EntryKind.IGNORED: ingest_pb2.IGNORED,
}


def submission_response(result: SubmissionResult) -> ingest_pb2.SubmitObservationsResponse:
    """The reply to a stored submission: one outcome per entry and their counts."""
    counts = Counter(o.kind for o in result.outcomes)
    response = ingest_pb2.SubmitObservationsResponse(
        bundle_type=result.bundle_kind.value,
        counts=ingest_pb2.SubmitCounts(
            created=counts[EntryKind.CREATED],
            updated_new_version=counts[EntryKind.UPDATED_NEW_VERSION],
            unchanged=counts[EntryKind.UNCHANGED],
            withdrawn=counts[EntryKind.WITHDRAWN],
            rejected=counts[EntryKind.REJECTED],
            context=counts[EntryKind.CONTEXT],
            ignored=counts[EntryKind.IGNORED],
        ),
        document_sha256=result.document_sha256,
    )
    # Built in place: a list of messages given to the constructor is copied once more.
    add = response.entries.add
    for outcome in result.outcomes:
        entry = add(
            index=outcome.index,
            full_url=outcome.full_url,
            resource_type=outcome.resource_type,
            identity=outcome.identity,
            outcome=_KINDS[outcome.kind],
            version=outcome.version,
            status=outcome.status,
            reason=outcome.reason,
        )
        if outcome.violations:
            entry.violations.extend(violations_to_proto(outcome.violations))
    return response
