"""Small hand-written FHIR documents for tests, built so each test can change one thing."""

from __future__ import annotations

import copy
import json
from typing import Any

import grpc

from mutualrec.client.upload import auth_metadata
from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc

RESIDENT_ID_SYSTEM = "https://fhir.mutualrec.org/sid/resident-id-card"
LIS = "urn:mutualrec:lis:H500103001"
# A resident ID with a valid check digit (the manifest's CT patient).
PATIENT_ID = "50010319680315109X"
OTHER_PATIENT_ID = "500106195511021028"


def patient(full_url: str = "urn:uuid:patient-1", number: str = PATIENT_ID) -> dict[str, Any]:
    """A Patient entry identified by a resident ID card."""
    return {
        "fullUrl": full_url,
        "resource": {
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [{"system": RESIDENT_ID_SYSTEM, "value": number}],
        },
        "request": {"method": "POST", "url": "Patient"},
    }


def observation(
    number: str,
    *,
    loinc: str = "2823-3",
    value: float | str = 4.1,
    unit: str = "mmol/L",
    status: str = "final",
    subject: str = "urn:uuid:patient-1",
    issued: str = "2026-11-20T10:12:00+08:00",
) -> dict[str, Any]:
    """An Observation resource (not an entry) with a LOINC-coded quantity."""
    return {
        "resourceType": "Observation",
        "identifier": [{"system": LIS, "value": number}],
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}], "text": "钾"},
        "subject": {"reference": subject},
        "effectiveDateTime": "2026-11-20T08:00:00+08:00",
        "issued": issued,
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
        "referenceRange": [
            {
                "low": {"value": 3.5, "system": "http://unitsofmeasure.org", "code": "mmol/L"},
                "high": {"value": 5.3, "system": "http://unitsofmeasure.org", "code": "mmol/L"},
            }
        ],
    }


def entry(resource: dict[str, Any], full_url: str) -> dict[str, Any]:
    """A bundle entry holding ``resource``."""
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def bundle(
    observations: list[dict[str, Any]], kind: str = "batch", with_patient: bool = True
) -> dict[str, Any]:
    """A bundle of the Patient followed by ``observations``."""
    entries = [patient()] if with_patient else []
    entries += [entry(o, f"urn:uuid:obs-{i}") for i, o in enumerate(observations)]
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def modified(document: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``document`` with top-level keys replaced."""
    result = copy.deepcopy(document)
    result.update(changes)
    return result


def encode(document: dict[str, Any]) -> bytes:
    """The document as compact UTF-8 JSON."""
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def submit(
    channel: grpc.Channel,
    key: str | None,
    document: dict[str, Any] | bytes,
    version: int = ingest_pb2.FHIR_R4,
) -> ingest_pb2.SubmitObservationsResponse:
    """Call SubmitObservations with ``document``."""
    body = document if isinstance(document, bytes) else encode(document)
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    response: ingest_pb2.SubmitObservationsResponse = stub.SubmitObservations(
        ingest_pb2.SubmitObservationsRequest(body=body, fhir_version=version),
        metadata=auth_metadata(key) if key else None,
        timeout=60,
    )
    return response
