"""Report-centred bundles as LIS export them: times, panels, value-less results, references.

Expected values are written by hand from the documents built here (tests/lis_docs.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mutualrec.identity import DocumentType, IdentityDocument
from mutualrec.ingest.fhir_submission import PreparedEntry, prepare_submission
from mutualrec.ingest.fhir_version import FhirVersion
from mutualrec.ingest.lab_ingest import EntryKind, PreparedBatch, prepare_batch
from mutualrec.matching.catalog import packaged_catalog
from mutualrec.matching.codes import items_for_lab_result
from tests.fhir_docs import OTHER_PATIENT_ID, PATIENT_ID, encode
from tests.lis_docs import (
    as_entry,
    lis_bundle,
    lis_patient,
    lis_report,
    lis_result,
)

CHINA = dt.timezone(dt.timedelta(hours=8))
RECEIVED = dt.datetime(2026, 11, 20, 12, 0, tzinfo=CHINA)
TAKEN = dt.datetime(2026, 11, 20, 7, 40, tzinfo=CHINA)
ISSUED = dt.datetime(2026, 11, 20, 10, 5, tzinfo=CHINA)
RESIDENT = IdentityDocument(DocumentType.RESIDENT_ID_CARD, PATIENT_ID)


def _prepare(document: dict[str, Any]) -> list[PreparedEntry]:
    return prepare_submission(encode(document), FhirVersion.R4, RECEIVED).entries


def _problems(prepared: PreparedEntry) -> set[tuple[str, str]]:
    return {(v.field, v.reason) for v in prepared.violations}


def _chemistry(
    report: dict[str, Any], *results: dict[str, Any], patient: bool = True
) -> dict[str, Any]:
    entries = [lis_patient()] if patient else []
    entries.append(as_entry(report, "urn:uuid:rpt-1"))
    entries += [as_entry(r, f"urn:uuid:res-{i}") for i, r in enumerate(results)]
    return lis_bundle(entries)


# --- 1. times inherited from the report ----------------------------------------------------------


def test_result_without_times_takes_the_reports_effective_and_issued() -> None:
    document = _chemistry(
        lis_report("R-1", "24323-8", ["urn:uuid:res-0"], effective=TAKEN, issued=ISSUED),
        lis_result("K-1", "2823-3", value=4.1, unit="mmol/L"),
    )
    prepared = _prepare(document)
    result = prepared[2].result
    assert prepared[2].violations == []
    assert result is not None
    assert result.effective_at == TAKEN
    assert result.issued_at == ISSUED
    assert (
        prepared[2].note == "effective[x] and issued inherited from the DiagnosticReport (entry[1])"
    )


def test_effective_period_start_of_the_report_is_inherited() -> None:
    report = lis_report("R-1", "24323-8", ["urn:uuid:res-0"], effective=None, issued=ISSUED)
    report["effectivePeriod"] = {"start": "2026-11-20T07:40:00+08:00"}
    prepared = _prepare(_chemistry(report, lis_result("K-1", "2823-3", value=4.1, unit="mmol/L")))
    result = prepared[2].result
    assert result is not None
    assert result.effective_at == TAKEN


def test_the_results_own_time_wins_and_nothing_is_said_inherited() -> None:
    own = dt.datetime(2026, 11, 20, 7, 0, tzinfo=CHINA)
    document = _chemistry(
        lis_report("R-1", "24323-8", ["urn:uuid:res-0"], effective=TAKEN, issued=ISSUED),
        lis_result(
            "K-1",
            "2823-3",
            value=4.1,
            unit="mmol/L",
            effectiveDateTime="2026-11-20T07:00:00+08:00",
        ),
    )
    prepared = _prepare(document)
    result = prepared[2].result
    assert result is not None
    assert result.effective_at == own
    assert prepared[2].note == "issued inherited from the DiagnosticReport (entry[1])"


def test_a_report_without_times_leaves_the_result_without_one() -> None:
    document = _chemistry(
        lis_report("R-1", "24323-8", ["urn:uuid:res-0"], effective=None, issued=None),
        lis_result("K-1", "2823-3", value=4.1, unit="mmol/L"),
    )
    assert _problems(_prepare(document)[2]) == {("entry[2].resource.effective[x]", "MISSING_FIELD")}


def test_a_result_no_report_reaches_inherits_nothing() -> None:
    document = _chemistry(
        lis_report("R-1", "24323-8", [], effective=TAKEN, issued=ISSUED),
        lis_result("K-1", "2823-3", value=4.1, unit="mmol/L"),
    )
    assert _problems(_prepare(document)[2]) == {("entry[2].resource.effective[x]", "MISSING_FIELD")}


def test_the_outcome_says_the_times_were_inherited() -> None:
    document = _chemistry(
        lis_report("R-1", "24323-8", ["urn:uuid:res-0"], effective=TAKEN, issued=ISSUED),
        lis_result("K-1", "2823-3", value=4.1, unit="mmol/L"),
    )
    batch = prepare_batch(encode(document), FhirVersion.R4, RECEIVED, b"k" * 32)
    assert isinstance(batch, PreparedBatch)
    assert [p.note for p in batch.pending] == [
        "effective[x] and issued inherited from the DiagnosticReport (entry[1])"
    ]
    assert {o.kind for o in batch.settled} == {EntryKind.CONTEXT}


# --- 2. panels ----------------------------------------------------------------------------------

CBC = [
    ("WBC", "6690-2", 6.2, "10*9/L"),
    ("RBC", "789-8", 4.6, "10*12/L"),
    ("HGB", "718-7", 138.0, "g/L"),
    ("HCT", "4544-3", 41.5, "%"),
    ("PLT", "777-3", 215.0, "10*9/L"),
]


def _panel_bundle(analytes: list[tuple[str, str, float, str]]) -> dict[str, Any]:
    """A report coded as a CBC whose one result is a grouping Observation with the analytes."""
    members = [f"urn:uuid:{name}" for name, _, _, _ in analytes]
    panel = lis_result("PANEL-1", "58410-2", hasMember=[{"reference": m} for m in members])
    entries = [
        lis_patient(),
        as_entry(
            lis_report("R-1", "58410-2", ["urn:uuid:panel"], effective=TAKEN, issued=ISSUED),
            "urn:uuid:rpt-1",
        ),
        as_entry(panel, "urn:uuid:panel"),
    ]
    entries += [
        as_entry(lis_result(name, code, value=value, unit=unit), url)
        for (name, code, value, unit), url in zip(analytes, members, strict=True)
    ]
    return lis_bundle(entries)


def _items(prepared: PreparedEntry) -> frozenset[str]:
    result = prepared.result
    assert result is not None
    local = [c.code for c in result.local_codes]
    return items_for_lab_result(result.loinc, local, {}, packaged_catalog(), result.groups)


def test_a_grouping_observation_is_accepted_without_a_value() -> None:
    prepared = _prepare(_panel_bundle(CBC))
    panel = prepared[2]
    assert panel.violations == []
    assert panel.result is not None
    assert panel.result.value.kind == "none"
    assert not panel.result.has_value
    assert [p.violations for p in prepared[3:]] == [[]] * 5


def test_members_know_their_groups_through_the_panel_and_the_report() -> None:
    prepared = _prepare(_panel_bundle(CBC))
    members = ("4544-3", "6690-2", "718-7", "777-3", "789-8")
    for entry in prepared[3:]:
        assert entry.result is not None
        # The report and the panel are both coded 58410-2: one group each, the same members.
        assert entry.result.groups == (("58410-2", members),)


def test_the_first_required_analyte_carries_the_panel_item() -> None:
    prepared = _prepare(_panel_bundle(CBC))
    assert [sorted(_items(p)) for p in prepared[3:]] == [["LAB-CBC"], [], [], [], []]
    # The grouping entry itself is no item: 58410-2 stands for a panel, not for one result.
    assert _items(prepared[2]) == frozenset()


def test_a_panel_missing_a_required_analyte_is_no_item() -> None:
    without_platelets = _prepare(_panel_bundle(CBC[:4]))
    assert [sorted(_items(p)) for p in without_platelets[3:]] == [[], [], [], []]


def test_a_member_without_a_value_does_not_count_as_held() -> None:
    document = _panel_bundle(CBC)
    platelets = document["entry"][-1]["resource"]
    del platelets["valueQuantity"]
    platelets["dataAbsentReason"] = {"text": "clotted specimen"}
    prepared = _prepare(document)
    assert prepared[-1].violations == []
    assert [sorted(_items(p)) for p in prepared[3:]] == [[], [], [], [], []]


def test_an_alternative_code_of_an_analyte_counts() -> None:
    # Platelets by any method (26515-7) instead of the automated count (777-3).
    prepared = _prepare(_panel_bundle([*CBC[:4], ("PLT", "26515-7", 215.0, "10*9/L")]))
    assert sorted(_items(prepared[3])) == ["LAB-CBC"]


def test_a_report_coded_as_a_panel_without_a_grouping_observation_counts() -> None:
    urls = [f"urn:uuid:res-{i}" for i in range(len(CBC))]
    report = lis_report("R-1", "57021-8", urls, effective=TAKEN, issued=ISSUED)
    document = _chemistry(report, *(lis_result(n, c, value=v, unit=u) for n, c, v, u in CBC))
    prepared = _prepare(document)
    assert [sorted(_items(p)) for p in prepared[2:]] == [["LAB-CBC"], [], [], [], []]


# --- 3. results without a value ----------------------------------------------------------------

SUSCEPTIBLE = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
            "code": "S",
        }
    ]
}
HAEMOLYSED = {"text": "specimen haemolysed"}


def test_a_susceptibility_told_by_its_interpretation_alone_is_accepted() -> None:
    document = _chemistry(
        lis_report("M-1", "18769-0", ["urn:uuid:res-0"], effective=TAKEN, issued=ISSUED),
        lis_result("AMX-1", "18862-3", interpretation=[SUSCEPTIBLE]),
    )
    prepared = _prepare(document)[2]
    assert prepared.violations == []
    assert prepared.result is not None
    assert prepared.result.interpretation == ("S",)
    assert not prepared.result.has_value


def test_a_result_with_a_data_absent_reason_is_accepted() -> None:
    document = _chemistry(
        lis_report("R-1", "24323-8", ["urn:uuid:res-0"], effective=TAKEN, issued=ISSUED),
        lis_result("K-1", "2823-3", dataAbsentReason=HAEMOLYSED),
    )
    prepared = _prepare(document)[2]
    assert prepared.violations == []
    assert prepared.result is not None
    assert prepared.result.status.value == "final"
    assert not prepared.result.has_value


def test_a_final_result_with_nothing_at_all_is_still_refused() -> None:
    document = _chemistry(
        lis_report("R-1", "24323-8", ["urn:uuid:res-0"], effective=TAKEN, issued=ISSUED),
        lis_result("K-1", "2823-3"),
    )
    assert _problems(_prepare(document)[2]) == {("entry[2].resource.value[x]", "MISSING_FIELD")}


# --- 4. references, FHIR R4 §2.36.4 ------------------------------------------------------------

SERVER_A = "https://lis.h500103001.example/fhir"
SERVER_B = "https://lis.h500106002.example/fhir"


def _restful(subject: str, patient_url: str, observation_url: str) -> dict[str, Any]:
    observation = lis_result(
        "K-1",
        "2823-3",
        value=4.1,
        unit="mmol/L",
        subject=subject,
        effectiveDateTime="2026-11-20T07:40:00+08:00",
    )
    return lis_bundle(
        [
            lis_patient(full_url=patient_url, resource_id="23"),
            as_entry(observation, observation_url),
        ]
    )


def test_a_relative_reference_resolves_against_the_entrys_own_server_base() -> None:
    prepared = _prepare(
        _restful("Patient/23", f"{SERVER_A}/Patient/23", f"{SERVER_A}/Observation/9")
    )
    assert prepared[1].violations == []
    assert prepared[1].patient == RESIDENT


def test_a_relative_reference_in_an_entry_of_another_server_is_not_this_patient() -> None:
    # The wrong-patient case: Patient/23 written at server B is not server A's Patient/23.
    prepared = _prepare(
        _restful("Patient/23", f"{SERVER_A}/Patient/23", f"{SERVER_B}/Observation/9")
    )
    assert prepared[1].result is None
    assert _problems(prepared[1]) == {
        ("entry[1].resource.subject.reference", "UNRESOLVED_REFERENCE")
    }


def test_an_absolute_reference_matches_a_full_url() -> None:
    prepared = _prepare(
        _restful(f"{SERVER_A}/Patient/23", f"{SERVER_A}/Patient/23", "urn:uuid:obs-1")
    )
    assert prepared[1].patient == RESIDENT


def test_an_absolute_reference_matching_no_full_url_resolves_to_nothing() -> None:
    # Only the end, Patient/23, is the same: another server's resource.
    prepared = _prepare(
        _restful(f"{SERVER_B}/Patient/23", f"{SERVER_A}/Patient/23", "urn:uuid:obs-1")
    )
    assert _problems(prepared[1]) == {
        ("entry[1].resource.subject.reference", "UNRESOLVED_REFERENCE")
    }


def test_an_absolute_reference_does_not_match_an_id_under_a_uuid() -> None:
    prepared = _prepare(_restful(f"{SERVER_A}/Patient/23", "urn:uuid:patient-x", "urn:uuid:o-1"))
    assert _problems(prepared[1]) == {
        ("entry[1].resource.subject.reference", "UNRESOLVED_REFERENCE")
    }


def _two_versions(subject: str, versions: tuple[str, str] = ("1", "2")) -> dict[str, Any]:
    """Two versions of Patient/45 under one fullUrl: version 1 holds the other patient's ID."""
    url = f"{SERVER_A}/Patient/45"
    old = lis_patient(full_url=url, number=OTHER_PATIENT_ID, resource_id="45")
    new = lis_patient(full_url=url, resource_id="45")
    old["resource"]["meta"] = {"versionId": versions[0]}
    new["resource"]["meta"] = {"versionId": versions[1]}
    observation = lis_result(
        "K-1",
        "2823-3",
        value=4.1,
        unit="mmol/L",
        subject=subject,
        effectiveDateTime="2026-11-20T07:40:00+08:00",
    )
    return lis_bundle([old, new, as_entry(observation, f"{SERVER_A}/Observation/9")])


def test_one_full_url_is_allowed_on_versions_with_different_version_ids() -> None:
    prepared = _prepare(_two_versions("Patient/45/_history/2"))
    assert [p.violations for p in prepared[:2]] == [[], []]


def test_a_versioned_reference_resolves_to_its_version() -> None:
    second = _prepare(_two_versions("Patient/45/_history/2"))
    first = _prepare(_two_versions(f"{SERVER_A}/Patient/45/_history/1"))
    assert second[2].patient == RESIDENT
    assert first[2].patient == IdentityDocument(DocumentType.RESIDENT_ID_CARD, OTHER_PATIENT_ID)


def test_an_unversioned_reference_to_several_versions_resolves_to_none() -> None:
    prepared = _prepare(_two_versions("Patient/45"))
    assert _problems(prepared[2]) == {
        ("entry[2].resource.subject.reference", "UNRESOLVED_REFERENCE")
    }


def test_a_versioned_reference_to_a_version_not_in_the_bundle_resolves_to_none() -> None:
    prepared = _prepare(_two_versions("Patient/45/_history/3"))
    assert _problems(prepared[2]) == {
        ("entry[2].resource.subject.reference", "UNRESOLVED_REFERENCE")
    }


def test_one_full_url_with_the_same_version_id_stays_a_duplicate() -> None:
    prepared = _prepare(_two_versions("Patient/45/_history/2", versions=("2", "2")))
    assert _problems(prepared[1]) == {("entry[1].fullUrl", "DUPLICATE_FULL_URL")}


# --- 7. entries that are not lab results --------------------------------------------------------


def test_other_fhir_resources_are_ignored_with_their_type() -> None:
    document = _chemistry(
        lis_report("R-1", "24323-8", ["urn:uuid:res-0"], effective=TAKEN, issued=ISSUED),
        lis_result("K-1", "2823-3", value=4.1, unit="mmol/L"),
    )
    document["entry"] += [
        as_entry({"resourceType": "Composition", "status": "final"}, "urn:uuid:c"),
        as_entry({"resourceType": "Practitioner", "id": "dr-1"}, "urn:uuid:dr"),
        as_entry({"resourceType": "MolecularSequence", "type": "dna"}, "urn:uuid:seq"),
    ]
    batch = prepare_batch(encode(document), FhirVersion.R4, RECEIVED, b"k" * 32)
    assert isinstance(batch, PreparedBatch)
    ignored = [(o.index, o.resource_type, o.kind) for o in batch.settled if o.index > 2]
    assert ignored == [
        (3, "Composition", EntryKind.IGNORED),
        (4, "Practitioner", EntryKind.IGNORED),
        (5, "MolecularSequence", EntryKind.IGNORED),
    ]
    assert batch.settled[-1].reason == "MolecularSequence is not part of a lab feed; left as sent"
    assert [p.index for p in batch.pending] == [2]


def test_a_transaction_with_other_resources_is_not_refused() -> None:
    document = _chemistry(
        lis_report("R-1", "24323-8", ["urn:uuid:res-0"], effective=TAKEN, issued=ISSUED),
        lis_result("K-1", "2823-3", value=4.1, unit="mmol/L"),
    )
    document["type"] = "transaction"
    document["entry"].append(as_entry({"resourceType": "Organization", "id": "o"}, "urn:uuid:o"))
    batch = prepare_batch(encode(document), FhirVersion.R4, RECEIVED, b"k" * 32)
    assert isinstance(batch, PreparedBatch)
    assert [p.index for p in batch.pending] == [2]


def test_a_type_fhir_does_not_define_is_still_rejected() -> None:
    document = _chemistry(
        lis_report("R-1", "24323-8", ["urn:uuid:res-0"], effective=TAKEN, issued=ISSUED),
        lis_result("K-1", "2823-3", value=4.1, unit="mmol/L"),
    )
    document["entry"].append(as_entry({"resourceType": "LabThing"}, "urn:uuid:x"))
    prepared = _prepare(document)
    assert _problems(prepared[3]) == {
        ("entry[3].resource.resourceType", "UNSUPPORTED_RESOURCE_TYPE")
    }
