"""Report-centred FHIR bundles shaped the way a LIS exports them, for tests.

A DiagnosticReport carries the times; its results often carry none of their own. Every builder
takes its times as arguments, so a test can place them relative to its own clock.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.fhir_docs import PATIENT_ID, RESIDENT_ID_SYSTEM

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
LIS_RESULT = "urn:mutualrec:lis-result:H500103001"
LIS_REPORT = "urn:mutualrec:lis-report:H500103001"
PATIENT_URL = "urn:uuid:lis-patient-1"


def fhir_time(moment: dt.datetime) -> str:
    """``moment`` as a FHIR dateTime with seconds and its offset."""
    return moment.isoformat(timespec="seconds")


def lis_patient(
    full_url: str = PATIENT_URL, number: str = PATIENT_ID, resource_id: str = "p1"
) -> dict[str, Any]:
    """A Patient entry identified by a resident ID card (an MRN beside it, as LIS send)."""
    return {
        "fullUrl": full_url,
        "resource": {
            "resourceType": "Patient",
            "id": resource_id,
            "identifier": [
                {"system": "urn:mutualrec:mrn:H500103001", "value": "MRN-0042"},
                {"system": RESIDENT_ID_SYSTEM, "value": number},
            ],
        },
    }


def lis_result(
    number: str,
    loinc: str,
    *,
    value: float | None = None,
    unit: str = "",
    status: str = "final",
    subject: str = PATIENT_URL,
    display: str = "",
    **elements: Any,
) -> dict[str, Any]:
    """A result Observation without times of its own; ``elements`` are added as given."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": LIS_RESULT, "value": number}],
        "status": status,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display or loinc}]},
        "subject": {"reference": subject},
    }
    if value is not None:
        resource["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    resource.update(elements)
    return resource


def lis_report(
    number: str,
    loinc: str,
    results: list[str],
    *,
    effective: dt.datetime | None,
    issued: dt.datetime | None,
    status: str = "final",
    subject: str = PATIENT_URL,
    **elements: Any,
) -> dict[str, Any]:
    """A DiagnosticReport grouping ``results`` (references), timed by ``effective``/``issued``."""
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": LIS_REPORT, "value": number}],
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": subject},
        "result": [{"reference": r} for r in results],
    }
    if effective is not None:
        resource["effectiveDateTime"] = fhir_time(effective)
    if issued is not None:
        resource["issued"] = fhir_time(issued)
    resource.update(elements)
    return resource


def as_entry(resource: dict[str, Any], full_url: str) -> dict[str, Any]:
    """A bundle entry holding ``resource``."""
    return {"fullUrl": full_url, "resource": resource}


def lis_bundle(entries: list[dict[str, Any]], kind: str = "batch") -> dict[str, Any]:
    """A Bundle of ``entries`` as they are."""
    return {"resourceType": "Bundle", "type": kind, "entry": entries}
