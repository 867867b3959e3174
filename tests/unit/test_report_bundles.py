"""Report-centred bundles as LIS export them: times, panels, value-less results, references.

Expected values are written by hand from the documents built here (tests/lis_docs.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mutualrec.identity import DocumentType, IdentityDocument
from mutualrec.ingest.fhir_submission import PreparedEntry, prepare_submission
from mutualrec.ingest.fhir_validation import FhirVersion
from mutualrec.ingest.lab_ingest import EntryKind, PreparedBatch, prepare_batch
from tests.fhir_docs import PATIENT_ID, encode
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
