"""From a submitted FHIR document to the lab results it carries, entry by entry.

Each Observation is validated, its subject resolved to an identity document (through a Patient
entry of the bundle or the subject's own identifier), its report and specimen looked up, and it
is normalized. Every entry ends as a result, as context (Patient, DiagnosticReport, Specimen),
or as violations; the caller decides what a rejected entry means for the rest.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from typing import Any

from mutualrec.identity import IdentityDocument
from mutualrec.ingest.fhir_document import INDEXED_TYPE, Entry, FhirDocument, read_document
from mutualrec.ingest.fhir_patient import identity_from_identifier, identity_from_identifiers
from mutualrec.ingest.fhir_version import FhirVersion
from mutualrec.ingest.lab_result import (
    CLOCK_TOLERANCE,
    LOINC_SYSTEM,
    LabResult,
    ReportContext,
    inherited_fields,
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
    # What the outcome tells the LIS about an accepted entry, e.g. times taken from its report.
    note: str = ""
    # A FHIR resource that is not part of a lab feed: left alone, neither stored nor rejected.
    ignored: bool = False

    @property
    def rejected(self) -> bool:
        """Whether the entry cannot be stored."""
        return bool(self.violations)


@dataclass(frozen=True, slots=True)
class PreparedSubmission:
    """The document's shell and every entry, prepared."""

    document: FhirDocument
    entries: list[PreparedEntry]


# A RESTful fullUrl: [base]/[type]/[id], optionally /_history/[version] (FHIR R4 §2.36.4).
_RESTFUL_URL = re.compile(
    r"^(?P<base>https?://.+)/[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?$"
)
# An absolute reference starts with a URI scheme (http:, https:, urn:).
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HISTORY = "/_history/"


def _version_id(prepared: PreparedEntry) -> str:
    meta = prepared.entry.resource.get("meta")
    version = meta.get("versionId") if isinstance(meta, dict) else None
    return version if isinstance(version, str) else ""


def _server_base(full_url: str) -> str:
    match = _RESTFUL_URL.match(full_url)
    return match.group("base") if match else ""


class _Bundle:
    """Reference resolution within one document, as FHIR R4 §2.36.4 says.

    A versioned reference drops its version to find the entries and then matches
    ``meta.versionId``. An absolute reference matches a fullUrl. A relative one, in an entry whose
    fullUrl is RESTful, is made absolute against that fullUrl's server base, so ``Patient/23``
    written at one server never names another server's Patient/23; in an entry without a server
    base (a ``urn:uuid:`` or no fullUrl), it names an entry without one by ``Type/id``. A
    reference that names several entries (versions of one resource) without saying which
    resolves to none.
    """

    def __init__(self, entries: list[PreparedEntry]) -> None:
        self.by_full_url: dict[str, list[PreparedEntry]] = {}
        self.by_local_id: dict[str, list[PreparedEntry]] = {}
        for prepared in entries:
            entry = prepared.entry
            if entry.full_url:
                self.by_full_url.setdefault(entry.full_url, []).append(prepared)
            resource_id = entry.resource.get("id")
            if (
                isinstance(resource_id, str)
                and entry.resource_type
                and not _server_base(entry.full_url)
            ):
                self.by_local_id.setdefault(f"{entry.resource_type}/{resource_id}", []).append(
                    prepared
                )

    def resolve(self, reference: str, referrer: Entry) -> PreparedEntry | None:
        """The entry ``reference``, written in ``referrer``, names; None when it names none."""
        version = ""
        if _HISTORY in reference:
            reference, version = reference.split(_HISTORY, 1)
        if _ABSOLUTE.match(reference):
            candidates = self.by_full_url.get(reference, [])
        elif base := _server_base(referrer.full_url):
            candidates = self.by_full_url.get(f"{base}/{reference}", [])
        else:
            candidates = self.by_local_id.get(reference, [])
        if version:
            versioned = [c for c in candidates if _version_id(c) == version]
            # An entry that gives no version is the version referred to when it is the only one.
            if versioned or len(candidates) != 1 or _version_id(candidates[0]):
                candidates = versioned
        return candidates[0] if len(candidates) == 1 else None


def _allow_versions_of_one_full_url(prepared: list[PreparedEntry]) -> None:
    """Drop the shell's duplicate-fullUrl violation where the entries are versions of one
    resource: FHIR allows one fullUrl on several entries whose meta.versionId differ."""
    by_url: dict[str, list[PreparedEntry]] = {}
    for item in prepared:
        if item.entry.full_url:
            by_url.setdefault(item.entry.full_url, []).append(item)
    for group in by_url.values():
        versions = [_version_id(item) for item in group]
        if len(group) < 2 or "" in versions or len(set(versions)) != len(versions):
            continue
        for item in group:
            item.violations = [v for v in item.violations if v.reason != "DUPLICATE_FULL_URL"]


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


def _time_of(node: Any) -> dt.datetime | None:
    # The report's times were validated with the report; a bad one is the report's violation.
    try:
        return parse_fhir_time(node) if isinstance(node, str) else None
    except ValueError:
        return None


def _report_effective(resource: dict[str, Any]) -> dt.datetime | None:
    period = resource.get("effectivePeriod")
    start = period.get("start") if isinstance(period, dict) else None
    return _time_of(resource.get("effectiveDateTime")) or _time_of(start)


def _report_context(reports: list[PreparedEntry], bundle: _Bundle) -> dict[int, ReportContext]:
    """Per Observation entry index, the report that groups it; dangling results are flagged."""
    contexts: dict[int, ReportContext] = {}
    for report in reports:
        resource = report.entry.resource
        # Not the fullUrl: a LIS regenerates urn:uuid references on every send, and the report
        # reference is part of a result's content.
        identity = observation_identity(resource) or ""
        issued_at = _time_of(resource.get("issued"))
        effective_at = _report_effective(resource)
        for position, node in enumerate(resource.get("result", []) or []):
            target = bundle.resolve(_reference(node), report.entry)
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
            context = ReportContext(
                identity, issued_at, report_effective=effective_at, report_index=report.entry.index
            )
            contexts[target.entry.index] = context
            # A panel's members belong to the report as much as the panel does.
            for member in _panel_members(target, bundle):
                contexts.setdefault(member.entry.index, context)
    return contexts


def _panel_members(panel: PreparedEntry, bundle: _Bundle) -> list[PreparedEntry]:
    """The Observations a grouping Observation holds, through nested panels too."""
    found: list[PreparedEntry] = []
    seen = {panel.entry.index}
    pending = [panel]
    while pending:
        node = pending.pop()
        for reference in _member_references(node.entry.resource):
            target = bundle.resolve(reference, node.entry)
            if target is None or target.entry.index in seen:
                continue
            seen.add(target.entry.index)
            if target.entry.resource_type == INDEXED_TYPE:
                found.append(target)
                pending.append(target)
    return found


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
    target = bundle.resolve(reference, entry) if reference else None
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
    target = bundle.resolve(reference, prepared.entry)
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


def _group_codes(resource: dict[str, Any]) -> list[str]:
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    return [
        c["code"]
        for c in codings or []
        if isinstance(c, dict)
        and c.get("system") == LOINC_SYSTEM
        and isinstance(c.get("code"), str)
    ]


def _member_references(resource: dict[str, Any]) -> list[str]:
    element = "result" if resource.get("resourceType") == "DiagnosticReport" else "hasMember"
    nodes = resource.get(element)
    return [_reference(node) for node in nodes or [] if _reference(node)]


def _attach_groups(prepared: list[PreparedEntry], bundle: _Bundle) -> None:
    """Tell each result which groups of the bundle hold it, and what else they hold.

    A group is a DiagnosticReport or a grouping Observation (``hasMember``); a group within a
    group counts for the outer one too. Only members accepted with a value count as held.
    """
    groups = [
        p
        for p in prepared
        if not p.rejected
        and (
            p.entry.resource_type == "DiagnosticReport"
            or (p.result is not None and p.entry.resource.get("hasMember"))
        )
    ]
    memberships: dict[int, list[tuple[str, tuple[str, ...]]]] = {}
    for group in groups:
        codes = _group_codes(group.entry.resource)
        if not codes:
            continue
        held = _held_members(group, bundle)
        loinc = tuple(sorted({code for p in held for code in (p.result.loinc if p.result else ())}))
        for member in held:
            memberships.setdefault(member.entry.index, []).extend((c, loinc) for c in codes)
    for item in prepared:
        found = memberships.get(item.entry.index)
        if found and item.result is not None:
            item.result = replace(item.result, groups=tuple(sorted(set(found))))


def _held_members(group: PreparedEntry, bundle: _Bundle) -> list[PreparedEntry]:
    held = [
        member
        for member in _panel_members(group, bundle)
        if member.result is not None and member.result.has_value
    ]
    return sorted(held, key=lambda p: p.entry.index)


def _ignore_other_resources(prepared: PreparedEntry, version: FhirVersion) -> None:
    """Mark an entry holding a FHIR resource of a type a lab feed does not carry as ignored.

    The shell refuses such an entry (UNSUPPORTED_RESOURCE_TYPE); but a LIS exporting a report
    sends a Composition, Practitioners, an Organization with it, and they are no error. A type
    FHIR does not define is still refused.
    """
    from mutualrec.ingest.fhir_validation import is_fhir_resource_type  # see prepare_submission

    reasons = {v.reason for v in prepared.violations}
    if reasons != {"UNSUPPORTED_RESOURCE_TYPE"} or not is_fhir_resource_type(
        version, prepared.entry.resource_type
    ):
        return
    prepared.violations = []
    prepared.ignored = True
    prepared.note = f"{prepared.entry.resource_type} is not part of a lab feed; left as sent"


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
    # Imported with the first document (in a parse worker), not with this module: pydantic and
    # its core are about 15 MiB that a server process importing the lab services never uses.
    from mutualrec.ingest.fhir_validation import validate_resource

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
    _allow_versions_of_one_full_url(prepared)
    for item in prepared:
        _ignore_other_resources(item, version)
    for item in prepared:
        if not item.rejected and not item.ignored:
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
        context = replace(
            contexts.get(item.entry.index, ReportContext()), specimen_collected_at=collected_at
        )
        normalized = normalize_observation(
            item.entry.resource, item.entry.field, context, received_at, clock_skew=clock_skew
        )
        if isinstance(normalized, list):
            item.violations.extend(normalized)
        elif not item.rejected:
            assert isinstance(subject, IdentityDocument)
            item.result = normalized
            item.patient = subject
            inherited = inherited_fields(item.entry.resource, context)
            if inherited:
                item.note = (
                    f"{' and '.join(inherited)} inherited from the DiagnosticReport "
                    f"(entry[{context.report_index}])"
                )
    _attach_groups(prepared, bundle)
    return PreparedSubmission(document, prepared)
