"""From a submitted FHIR document to the lab results it carries, entry by entry.

Each Observation is validated, its subject resolved to an identity document (through a Patient
entry of the bundle or the subject's own identifier), its report and specimen looked up, and it
is normalized. Every entry ends as a result, as context (Patient, DiagnosticReport, Specimen),
or as violations; the caller decides what a rejected entry means for the rest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from mutualrec.identity import IdentityDocument
from mutualrec.ingest.fhir_document import INDEXED_TYPE, Entry, FhirDocument, read_document
from mutualrec.ingest.fhir_patient import identity_from_identifier, identity_from_identifiers
from mutualrec.ingest.fhir_validation import FhirVersion, validate_resource
from mutualrec.ingest.lab_result import (
    CLOCK_TOLERANCE,
    LabResult,
    ReportContext,
    normalize_observation,
    observation_identity,
    parse_fhir_time,
)
from mutualrec.violations import Violation


@dataclass
class PreparedEntry:
    """An entry of the document and what became of it before storage.

    ``identity`` is the Observation's identity within its institution, as far as it can be
    read, even when the entry is rejected.
    """

    entry: Entry
    violations: list[Violation] = field(default_factory=list)
    result: LabResult | None = None
    patient: IdentityDocument | None = None
    identity: str = ""

    @property
    def rejected(self) -> bool:
        """Whether the entry cannot be stored."""
        return bool(self.violations)


@dataclass(frozen=True, slots=True)
class PreparedSubmission:
    """The document's shell and every entry, prepared."""

    document: FhirDocument
    entries: list[PreparedEntry]


class _Bundle:
    """Reference resolution within one document: fullUrl or ``Type/id`` to entry."""

    def __init__(self, entries: list[PreparedEntry]) -> None:
        self.by_reference: dict[str, PreparedEntry] = {}
        for prepared in entries:
            entry = prepared.entry
            if entry.full_url:
                self.by_reference.setdefault(entry.full_url, prepared)
            resource_id = entry.resource.get("id")
            if isinstance(resource_id, str) and entry.resource_type:
                self.by_reference.setdefault(f"{entry.resource_type}/{resource_id}", prepared)

    def resolve(self, reference: str) -> PreparedEntry | None:
        found = self.by_reference.get(reference)
        if found is None and "/" in reference:
            # An absolute URL ending in Type/id names the same resource as the relative form.
            found = self.by_reference.get("/".join(reference.rsplit("/", 2)[-2:]))
        return found


def _reference(node: Any) -> str:
    if isinstance(node, dict) and isinstance(node.get("reference"), str):
        return str(node["reference"])
    return ""


def _prepare_patient(prepared: PreparedEntry) -> None:
    entry = prepared.entry
    found = identity_from_identifiers(entry.resource.get("identifier"), entry.field("identifier"))
    if isinstance(found, Violation):
        prepared.violations.append(found)
    elif found is None:
        prepared.violations.append(
            Violation(
                entry.field("identifier"),
                "the Patient has no identity document identifier (resident ID card, passport, "
                "...); the region cannot match patients by MRN or name",
                "MISSING_IDENTITY",
            )
        )
    else:
        prepared.patient = found


def _specimen_time(prepared: PreparedEntry) -> dt.datetime | None:
    collection = prepared.entry.resource.get("collection")
    if not isinstance(collection, dict):
        return None
    moment = collection.get("collectedDateTime")
    if moment is None and isinstance(collection.get("collectedPeriod"), dict):
        moment = collection["collectedPeriod"].get("start")
    try:
        return parse_fhir_time(moment) if isinstance(moment, str) else None
    except ValueError:
        return None


def _report_context(reports: list[PreparedEntry], bundle: _Bundle) -> dict[int, ReportContext]:
    """Per Observation entry index, the report that groups it; dangling results are flagged."""
    contexts: dict[int, ReportContext] = {}
    for report in reports:
        resource = report.entry.resource
        # Not the fullUrl: a LIS regenerates urn:uuid references on every send, and the report
        # reference is part of a result's content.
        identity = observation_identity(resource) or ""
        issued = resource.get("issued")
        try:
            issued_at = parse_fhir_time(issued) if isinstance(issued, str) else None
        except ValueError:
            issued_at = None
        for position, node in enumerate(resource.get("result", []) or []):
            target = bundle.resolve(_reference(node))
            if target is None or target.entry.resource_type != INDEXED_TYPE:
                report.violations.append(
                    Violation(
                        report.entry.field(f"result[{position}].reference"),
                        f"{_reference(node) or 'an empty reference'} resolves to no "
                        "Observation of this bundle",
                        "UNRESOLVED_REFERENCE",
                    )
                )
                continue
            contexts[target.entry.index] = ReportContext(identity, issued_at)
    return contexts


def _subject(prepared: PreparedEntry, bundle: _Bundle) -> IdentityDocument | Violation:
    entry = prepared.entry
    subject = entry.resource.get("subject")
    if not isinstance(subject, dict):
        return Violation(entry.field("subject"), "required, missing", "MISSING_FIELD")
    identifier = subject.get("identifier")
    reference = _reference(subject)
    if isinstance(identifier, dict):
        found = identity_from_identifier(identifier, entry.field("subject.identifier"))
        if found is not None:
            return found
        if not reference:
            return Violation(
                entry.field("subject.identifier.system"),
                "the subject's identifier is not an identity document the region knows",
                "MISSING_IDENTITY",
            )
        # An MRN beside a reference: the referenced Patient names the document.
    target = bundle.resolve(reference) if reference else None
    if target is None or target.entry.resource_type != "Patient":
        return Violation(
            entry.field("subject.reference"),
            f"{reference or 'an empty reference'} resolves to no Patient of this bundle; "
            "include the Patient or give subject.identifier with the identity document",
            "UNRESOLVED_REFERENCE",
        )
    if target.patient is None:
        return Violation(
            entry.field("subject.reference"),
            f"the Patient it refers to (entry[{target.entry.index}]) was rejected",
            "REJECTED_REFERENCE",
        )
    return target.patient


def _specimen(
    prepared: PreparedEntry, bundle: _Bundle
) -> tuple[dt.datetime | None, Violation | None]:
    reference = _reference(prepared.entry.resource.get("specimen"))
    if not reference:
        return None, None
    target = bundle.resolve(reference)
    if target is None or target.entry.resource_type != "Specimen":
        # A specimen known only to the LIS is fine; one pointing into the bundle must resolve.
        if reference.startswith(("urn:uuid:", "urn:oid:", "#")):
            return None, Violation(
                prepared.entry.field("specimen.reference"),
                f"{reference} resolves to no Specimen of this bundle",
                "UNRESOLVED_REFERENCE",
            )
        return None, None
    return _specimen_time(target), None


def prepare_submission(
    body: bytes,
    version: FhirVersion,
    received_at: dt.datetime,
    *,
    clock_skew: dt.timedelta = CLOCK_TOLERANCE,
) -> PreparedSubmission:
    """Read, validate, resolve and normalize every entry of ``body``.

    Raises :class:`~mutualrec.violations.Rejected` when the document as a whole is unreadable.
    """
    document = read_document(body)
    prepared = [
        PreparedEntry(
            entry,
            list(document.shell_violations.get(entry.index, [])),
            identity=(
                observation_identity(entry.resource) or ""
                if entry.resource_type == INDEXED_TYPE
                else ""
            ),
        )
        for entry in document.entries
    ]
    for item in prepared:
        if not item.rejected:
            item.violations.extend(
                validate_resource(
                    version, item.entry.resource_type, item.entry.resource, item.entry.path
                )
            )
    bundle = _Bundle(prepared)
    for item in prepared:
        if item.entry.resource_type == "Patient" and not item.rejected:
            _prepare_patient(item)
    reports = [
        p for p in prepared if p.entry.resource_type == "DiagnosticReport" and not p.rejected
    ]
    contexts = _report_context(reports, bundle)
    for item in prepared:
        if item.entry.resource_type != INDEXED_TYPE or item.rejected:
            continue
        subject = _subject(item, bundle)
        if isinstance(subject, Violation):
            item.violations.append(subject)
        collected_at, specimen_problem = _specimen(item, bundle)
        if specimen_problem is not None:
            item.violations.append(specimen_problem)
        context = contexts.get(item.entry.index, ReportContext())
        context = ReportContext(context.report_ref, context.report_issued, collected_at)
        normalized = normalize_observation(
            item.entry.resource, item.entry.field, context, received_at, clock_skew=clock_skew
        )
        if isinstance(normalized, list):
            item.violations.extend(normalized)
        elif not item.rejected:
            assert isinstance(subject, IdentityDocument)
            item.result = normalized
            item.patient = subject
    return PreparedSubmission(document, prepared)
