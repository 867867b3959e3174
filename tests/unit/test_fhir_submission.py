"""From a submitted document to prepared entries: subjects, reports and specimens resolved.

The documents are built with tests/fhir_docs.py; expected values are read from them by hand.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from mutualrec.identity import DocumentType, IdentityDocument
from mutualrec.ingest.fhir_submission import PreparedEntry, prepare_submission
from mutualrec.ingest.fhir_version import FhirVersion
from mutualrec.ingest.lab_result import LabResult
from mutualrec.violations import Rejected
from tests.fhir_docs import (
    OTHER_PATIENT_ID,
    PATIENT_ID,
    RESIDENT_ID_SYSTEM,
    bundle,
    encode,
    entry,
    observation,
    patient,
)

CHINA = dt.timezone(dt.timedelta(hours=8))
RECEIVED = dt.datetime(2026, 11, 20, 12, 0, tzinfo=CHINA)
PASSPORT_CHN = "https://fhir.mutualrec.org/sid/passport/CHN"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
# The OID of the Chinese resident ID card: not a system the region names, but typed NNCHN.
CHINA_ID_OID = "urn:oid:2.16.156.10011.1.3"
# PATIENT_ID ends in the check character X; 0 there breaks the check digit.
BAD_CHECK_DIGIT = PATIENT_ID[:-1] + "0"
REPORT_SYSTEM = "urn:mutualrec:lis-report:H500103001"
RESIDENT = IdentityDocument(DocumentType.RESIDENT_ID_CARD, PATIENT_ID)


def _prepare(
    document: dict[str, Any], version: FhirVersion = FhirVersion.R4
) -> list[PreparedEntry]:
    return prepare_submission(encode(document), version, RECEIVED).entries


def _problems(prepared: PreparedEntry) -> set[tuple[str, str]]:
    return {(v.field, v.reason) for v in prepared.violations}


def _accepted(prepared: PreparedEntry) -> PreparedEntry:
    assert prepared.violations == [], prepared.violations
    assert prepared.result is not None
    return prepared


def _result(prepared: PreparedEntry) -> LabResult:
    """The normalized result of an entry that must be accepted."""
    result = _accepted(prepared).result
    assert result is not None
    return result


def _with_subject(subject: dict[str, Any], **changes: Any) -> dict[str, Any]:
    resource = observation("R1", **changes)
    resource["subject"] = subject
    return resource


def _patient_with(identifiers: list[dict[str, Any]]) -> dict[str, Any]:
    result = patient()
    result["resource"]["identifier"] = identifiers
    return result


def _report(
    results: list[str],
    full_url: str = "urn:uuid:report-1",
    identifier: str | None = "RPT-1",
    **changes: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]},
        "subject": {"reference": "urn:uuid:patient-1"},
        "issued": "2026-11-20T10:30:00+08:00",
        "result": [{"reference": r} for r in results],
    }
    if identifier is not None:
        resource["identifier"] = [{"system": REPORT_SYSTEM, "value": identifier}]
    resource.update(changes)
    return entry(resource, full_url)


def _specimen(full_url: str, collection: dict[str, Any]) -> dict[str, Any]:
    return entry({"resourceType": "Specimen", "id": "s1", "collection": collection}, full_url)


def _without_issued(number: str, **changes: Any) -> dict[str, Any]:
    resource = observation(number, **changes)
    del resource["issued"]
    return resource


# --- subject -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        "urn:uuid:patient-1",  # the Patient entry's fullUrl
        "Patient/p1",  # relative, by the Patient's id
    ],
    ids=["full-url", "relative"],
)
def test_subject_reference_resolves_to_the_bundles_patient(reference: str) -> None:
    prepared = _prepare(bundle([observation("R1", subject=reference)]))
    assert prepared[0].patient == RESIDENT
    assert _accepted(prepared[1]).patient == RESIDENT


@pytest.mark.parametrize("version", [FhirVersion.R4, FhirVersion.R5])
def test_both_releases_resolve_the_same_bundle(version: FhirVersion) -> None:
    prepared = _prepare(bundle([observation("R1")]), version)
    assert _accepted(prepared[1]).patient == RESIDENT


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        ({"system": RESIDENT_ID_SYSTEM, "value": PATIENT_ID}, RESIDENT),
        ({"system": RESIDENT_ID_SYSTEM, "value": PATIENT_ID.lower()}, RESIDENT),
        (
            {"system": PASSPORT_CHN, "value": "E12345678"},
            IdentityDocument(DocumentType.PASSPORT, "E12345678", "CHN"),
        ),
        (
            {
                "type": {"coding": [{"system": V2_0203, "code": "NNCHN"}]},
                "system": CHINA_ID_OID,
                "value": OTHER_PATIENT_ID,
            },
            IdentityDocument(DocumentType.RESIDENT_ID_CARD, OTHER_PATIENT_ID),
        ),
    ],
    ids=["resident-id-card", "lower-case-x", "passport", "typed-nnchn"],
)
def test_subject_identifier_names_the_patient(
    identifier: dict[str, Any], expected: IdentityDocument
) -> None:
    document = bundle([_with_subject({"identifier": identifier})], with_patient=False)
    [prepared] = _prepare(document)
    assert _accepted(prepared).patient == expected


def test_single_observation_with_subject_identifier() -> None:
    resource = _with_subject({"identifier": {"system": RESIDENT_ID_SYSTEM, "value": PATIENT_ID}})
    [prepared] = _prepare(resource)
    assert _accepted(prepared).patient == RESIDENT
    assert prepared.identity == "identifier|urn:mutualrec:lis:H500103001|R1"


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        (
            {"system": "urn:mrn:H500103001", "value": "0012345"},
            ("entry[0].resource.subject.identifier.system", "MISSING_IDENTITY"),
        ),
        (
            {"system": RESIDENT_ID_SYSTEM, "value": BAD_CHECK_DIGIT},
            ("entry[0].resource.subject.identifier.value", "INVALID_IDENTITY"),
        ),
        (
            {"type": {"coding": [{"system": V2_0203, "code": "NNCHN"}]}, "value": BAD_CHECK_DIGIT},
            ("entry[0].resource.subject.identifier.value", "INVALID_IDENTITY"),
        ),
        (
            {"system": RESIDENT_ID_SYSTEM},
            ("entry[0].resource.subject.identifier.value", "MISSING_FIELD"),
        ),
        (
            {"system": "https://fhir.mutualrec.org/sid/passport/", "value": "E12345678"},
            ("entry[0].resource.subject.identifier.system", "INVALID_IDENTITY"),
        ),
    ],
    ids=["mrn", "bad-check-digit", "typed-bad-check-digit", "no-number", "passport-no-country"],
)
def test_subject_identifier_that_names_no_one(
    identifier: dict[str, Any], expected: tuple[str, str]
) -> None:
    document = bundle([_with_subject({"identifier": identifier})], with_patient=False)
    [prepared] = _prepare(document)
    assert _problems(prepared) == {expected}
    assert prepared.result is None
    assert prepared.patient is None


@pytest.mark.parametrize(
    "reference",
    ["urn:uuid:nobody", "Patient/p2", "https://his.example/fhir/Patient/p2", "urn:uuid:obs-0"],
    ids=["unknown-urn", "unknown-relative", "unknown-absolute", "not-a-patient"],
)
def test_unresolvable_subject_is_flagged(reference: str) -> None:
    prepared = _prepare(bundle([observation("R1", subject=reference)]))
    assert _problems(prepared[1]) == {
        ("entry[1].resource.subject.reference", "UNRESOLVED_REFERENCE")
    }
    assert prepared[1].result is None


def test_observation_without_subject_is_flagged() -> None:
    resource = observation("R1")
    del resource["subject"]
    prepared = _prepare(bundle([resource]))
    assert _problems(prepared[1]) == {("entry[1].resource.subject", "MISSING_FIELD")}


def test_subject_reference_with_an_mrn_identifier_still_resolves() -> None:
    subject = {
        "reference": "urn:uuid:patient-1",
        "identifier": {"system": "urn:mrn:H500103001", "value": "0012345"},
    }
    prepared = _prepare(bundle([_with_subject(subject)]))
    assert _accepted(prepared[1]).patient == RESIDENT


# --- the Patient entry ---------------------------------------------------------------------------


def test_patient_with_only_an_mrn_is_refused_with_its_observations() -> None:
    mrn_only = _patient_with([{"system": "urn:mrn:H500103001", "value": "0012345"}])
    document = bundle([observation("R1")], with_patient=False)
    document["entry"].insert(0, mrn_only)
    prepared = _prepare(document)
    assert _problems(prepared[0]) == {("entry[0].resource.identifier", "MISSING_IDENTITY")}
    assert _problems(prepared[1]) == {("entry[1].resource.subject.reference", "REJECTED_REFERENCE")}
    assert "entry[0]" in prepared[1].violations[0].description
    assert prepared[1].result is None


def test_patient_with_invalid_resident_id_rejects_its_observations() -> None:
    document = bundle([observation("R1"), observation("R2")], with_patient=False)
    document["entry"].insert(0, patient(number=BAD_CHECK_DIGIT))
    prepared = _prepare(document)
    assert _problems(prepared[0]) == {("entry[0].resource.identifier[0].value", "INVALID_IDENTITY")}
    assert prepared[0].patient is None
    for index in (1, 2):
        assert _problems(prepared[index]) == {
            (f"entry[{index}].resource.subject.reference", "REJECTED_REFERENCE")
        }
        assert prepared[index].result is None
    # The identity is still read, so the caller can say which results were refused.
    assert prepared[2].identity == "identifier|urn:mutualrec:lis:H500103001|R2"


def test_patient_identity_document_after_an_mrn_is_found() -> None:
    both = _patient_with(
        [
            {"system": "urn:mrn:H500103001", "value": "0012345"},
            {"system": PASSPORT_CHN, "value": "E12345678"},
        ]
    )
    document = bundle([observation("R1")], with_patient=False)
    document["entry"].insert(0, both)
    prepared = _prepare(document)
    passport = IdentityDocument(DocumentType.PASSPORT, "E12345678", "CHN")
    assert prepared[0].patient == passport
    assert _accepted(prepared[1]).patient == passport


def test_patient_failing_validation_rejects_its_observations() -> None:
    document = bundle([observation("R1")])
    document["entry"][0]["resource"]["colour"] = "blue"
    prepared = _prepare(document)
    assert _problems(prepared[0]) == {("entry[0].resource.colour", "UNKNOWN_ELEMENT")}
    assert _problems(prepared[1]) == {("entry[1].resource.subject.reference", "REJECTED_REFERENCE")}


# --- validation and the shell --------------------------------------------------------------------


def test_invalid_observation_is_not_normalized() -> None:
    resource = observation("R1")
    resource["valueQuantity"]["colour"] = "blue"
    prepared = _prepare(bundle([resource, observation("R2")]))
    assert _problems(prepared[1]) == {("entry[1].resource.valueQuantity.colour", "UNKNOWN_ELEMENT")}
    assert prepared[1].result is None
    assert _result(prepared[2]).identity.endswith("|R2")


def test_normalizer_violations_are_addressed_in_the_bundle() -> None:
    prepared = _prepare(bundle([observation("R1", loinc="2823"), observation("R2")]))
    assert _problems(prepared[1]) == {("entry[1].resource.code.coding[0].code", "INVALID_CODE")}


def test_duplicate_full_url_entry_is_rejected_and_the_first_kept() -> None:
    document = bundle([observation("R1"), observation("R2")])
    document["entry"][2]["fullUrl"] = "urn:uuid:obs-0"
    prepared = _prepare(document)
    assert _accepted(prepared[1]).identity.endswith("|R1")
    assert _problems(prepared[2]) == {("entry[2].fullUrl", "DUPLICATE_FULL_URL")}
    assert prepared[2].result is None


def test_unreadable_document_is_rejected_whole() -> None:
    with pytest.raises(Rejected):
        prepare_submission(
            b'{"resourceType": "Bundle", "type": "collection"}', FhirVersion.R4, RECEIVED
        )


def test_entry_with_an_empty_resource_is_rejected_not_a_crash() -> None:
    document = bundle([observation("R1")])
    document["entry"].append({"fullUrl": "urn:uuid:empty", "resource": {}})
    prepared = _prepare(document)
    assert prepared[2].rejected
    assert _accepted(prepared[1]).patient == RESIDENT


# --- DiagnosticReport ----------------------------------------------------------------------------


def test_report_groups_its_observations() -> None:
    document = bundle([_without_issued("R1"), observation("R2"), observation("R3")])
    document["entry"].append(_report(["urn:uuid:obs-0", "urn:uuid:obs-1"]))
    prepared = _prepare(document)
    grouped = f"identifier|{REPORT_SYSTEM}|RPT-1"
    first, second, third = (_result(prepared[i]) for i in (1, 2, 3))
    assert (first.report_ref, second.report_ref, third.report_ref) == (grouped, grouped, "")
    # R1 has no issued of its own: the report's. R2 keeps its own.
    assert first.issued_at == dt.datetime(2026, 11, 20, 10, 30, tzinfo=CHINA)
    assert second.issued_at == dt.datetime(2026, 11, 20, 10, 12, tzinfo=CHINA)
    assert third.issued_at == dt.datetime(2026, 11, 20, 10, 12, tzinfo=CHINA)
    assert prepared[4].violations == []
    assert prepared[4].result is None


def test_report_without_identifier_is_named_by_its_id() -> None:
    document = bundle([observation("R1")])
    document["entry"].append(_report(["urn:uuid:obs-0"], identifier=None, id="rep-77"))
    result = _result(_prepare(document)[1])
    assert result.report_ref == "id|rep-77"


@pytest.mark.parametrize(
    "node",
    [
        {"reference": "urn:uuid:nothing"},
        {"reference": "Observation/unknown"},
        {"reference": "urn:uuid:patient-1"},
        {"display": "钾"},
    ],
    ids=["unknown-urn", "unknown-relative", "a-patient", "display-only"],
)
def test_report_result_resolving_to_no_observation_is_flagged_on_the_report(
    node: dict[str, Any],
) -> None:
    document = bundle([_without_issued("R1")])
    report = _report(["urn:uuid:obs-0"])
    report["resource"]["result"].append(node)
    document["entry"].append(report)
    prepared = _prepare(document)
    assert _problems(prepared[2]) == {
        ("entry[2].resource.result[1].reference", "UNRESOLVED_REFERENCE")
    }
    # The result that does resolve is grouped all the same.
    result = _result(prepared[1])
    assert result.report_ref == f"identifier|{REPORT_SYSTEM}|RPT-1"


def test_report_result_by_relative_reference() -> None:
    resource = observation("R1")
    resource["id"] = "o1"
    document = bundle([resource])
    document["entry"].append(_report(["Observation/o1"]))
    result = _result(_prepare(document)[1])
    assert result.report_ref == f"identifier|{REPORT_SYSTEM}|RPT-1"


def test_digest_ignores_regenerated_report_full_url() -> None:
    digests = []
    for report_url in ("urn:uuid:0b7c9f5e-report-first", "urn:uuid:5d21a4c8-report-again"):
        document = bundle([observation("R1")])
        document["entry"].append(_report(["urn:uuid:obs-0"], report_url, identifier=None))
        result = _result(_prepare(document)[1])
        digests.append(result.content_sha256("patient-a"))
    assert digests[0] == digests[1]


def test_digest_ignores_regenerated_full_urls_of_patient_and_observation() -> None:
    first = bundle([observation("R1")])
    again = copy.deepcopy(first)
    again["entry"][0]["fullUrl"] = "urn:uuid:9f1e-patient"
    again["entry"][1]["fullUrl"] = "urn:uuid:9f1e-observation"
    again["entry"][1]["resource"]["subject"]["reference"] = "urn:uuid:9f1e-patient"
    digests = []
    for document in (first, again):
        result = _result(_prepare(document)[1])
        digests.append(result.content_sha256("patient-a"))
    assert digests[0] == digests[1]


# --- Specimen ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "collection",
    [
        {"collectedDateTime": "2026-11-20T07:45:00+08:00"},
        {
            "collectedPeriod": {
                "start": "2026-11-20T07:45:00+08:00",
                "end": "2026-11-20T07:50:00+08:00",
            }
        },
        {"collectedDateTime": "2026-11-19T23:45:00Z"},
    ],
    ids=["date-time", "period-start", "utc"],
)
def test_specimen_collection_time_is_picked_up(collection: dict[str, Any]) -> None:
    resource = observation("R1")
    resource["specimen"] = {"reference": "urn:uuid:specimen-1"}
    document = bundle([resource])
    document["entry"].append(_specimen("urn:uuid:specimen-1", collection))
    result = _result(_prepare(document)[1])
    assert result.specimen_collected_at == dt.datetime(2026, 11, 20, 7, 45, tzinfo=CHINA)


def test_specimen_without_collection_time_gives_none() -> None:
    resource = observation("R1")
    resource["specimen"] = {"reference": "Specimen/s1"}
    document = bundle([resource])
    document["entry"].append(_specimen("urn:uuid:specimen-1", {"quantity": {"value": 5}}))
    result = _result(_prepare(document)[1])
    assert result.specimen_collected_at is None


@pytest.mark.parametrize("reference", ["Specimen/123", "https://lis.example/fhir/Specimen/123"])
def test_specimen_outside_the_bundle_is_accepted_without_a_time(reference: str) -> None:
    resource = observation("R1")
    resource["specimen"] = {"reference": reference}
    result = _result(_prepare(bundle([resource]))[1])
    assert result.specimen_collected_at is None


@pytest.mark.parametrize(
    "reference",
    ["urn:uuid:specimen-missing", "urn:oid:1.2.3.4", "#contained-specimen", "urn:uuid:patient-1"],
    ids=["unknown-urn-uuid", "unknown-urn-oid", "contained", "a-patient"],
)
def test_bundle_local_specimen_reference_must_resolve(reference: str) -> None:
    resource = observation("R1")
    resource["specimen"] = {"reference": reference}
    prepared = _prepare(bundle([resource]))
    assert _problems(prepared[1]) == {
        ("entry[1].resource.specimen.reference", "UNRESOLVED_REFERENCE")
    }
    assert prepared[1].result is None
