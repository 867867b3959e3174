"""Report-centred lab feeds end to end over gRPC: SubmitObservations, then CheckOrder.

The bundles are shaped as a LIS exports them (tests/lis_docs.py); expected outcomes and verdicts
are worked out by hand from the catalog file.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from mutualrec.storage.models import LabResultVersion, RecognitionResult
from mutualrec.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    ingest_pb2,
    recognition_pb2,
    recognition_pb2_grpc,
)
from tests.conftest import RunningServer
from tests.fhir_docs import PATIENT_ID, submit
from tests.helpers import lab_issuer_and_asker
from tests.lis_docs import as_entry, lis_bundle, lis_patient, lis_report, lis_result

ISSUER = "H500103001"
ASKER = "H500106002"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))

# The five analytes LAB-CBC requires (catalog panel_requires), by their automated-count codes.
CBC_ANALYTES = [
    ("WBC", "6690-2", 6.2, "10*9/L"),
    ("RBC", "789-8", 4.6, "10*12/L"),
    ("HGB", "718-7", 138, "g/L"),
    ("HCT", "4544-3", 41.5, "%"),
    ("PLT", "777-3", 215, "10*9/L"),
]


def _setup(server: RunningServer) -> dict[str, str]:
    keys = lab_issuer_and_asker(server, ISSUER, ASKER)
    return keys


def _check(server: RunningServer, key: str, *codes: str) -> list[str]:
    return [recognition_pb2.Verdict.Name(line.verdict) for line in _lines(server, key, *codes)]


def _lines(server: RunningServer, key: str, *codes: str) -> list[recognition_pb2.CheckLine]:
    stub = recognition_pb2_grpc.RecognitionServiceStub(server.channel)
    response: recognition_pb2.CheckOrderResponse = stub.CheckOrder(
        recognition_pb2.CheckOrderRequest(
            patient=common_pb2.PatientIdentity(
                document_type=common_pb2.RESIDENT_ID_CARD, document_number=PATIENT_ID
            ),
            ordered_codes=list(codes),
            context=recognition_pb2.ClinicalContext(order_id="ORD-1", department="内科"),
        ),
        metadata=(("authorization", f"Bearer {key}"),),
        timeout=30,
    )
    return list(response.lines)


def _cbc_bundle(analytes: list[tuple[str, str, float, str]], number: str) -> dict[str, Any]:
    """A CBC report: the Patient, a DiagnosticReport coded 58410-2, results without times."""
    now = dt.datetime.now(SHANGHAI).replace(microsecond=0)
    urls = [f"urn:uuid:{number}-{name}" for name, _, _, _ in analytes]
    entries = [
        lis_patient(),
        as_entry(
            lis_report(
                number,
                "58410-2",
                urls,
                effective=now - dt.timedelta(hours=3),
                issued=now - dt.timedelta(hours=1),
            ),
            f"urn:uuid:{number}",
        ),
    ]
    entries += [
        as_entry(lis_result(f"{number}-{name}", code, value=value, unit=unit), url)
        for (name, code, value, unit), url in zip(analytes, urls, strict=True)
    ]
    return lis_bundle(entries)


def test_a_cbc_report_makes_the_cbc_recognizable(server: RunningServer) -> None:
    keys = _setup(server)
    assert _check(server, keys[ASKER], "LAB-CBC") == ["NO_RESULT"]

    response = submit(server.channel, keys[ISSUER], _cbc_bundle(CBC_ANALYTES, "CBC-1"))

    assert [e.outcome for e in response.entries] == [ingest_pb2.CONTEXT] * 2 + [
        ingest_pb2.CREATED
    ] * 5
    assert response.entries[2].reason == (
        "effective[x] and issued inherited from the DiagnosticReport (entry[1])"
    )
    # By item code and by either panel LOINC code.
    assert _check(server, keys[ASKER], "LAB-CBC", "58410-2", "57021-8") == ["RECOGNIZABLE"] * 3
    # The doctor sees the panel, not the white cell count that carries it.
    lab = _lines(server, keys[ASKER], "LAB-CBC")[0].result.lab
    assert (lab.loinc, lab.display, lab.value) == ("58410-2", "血细胞分析(血常规)", "5 results")


def test_a_cbc_report_missing_platelets_does_not_make_the_cbc(server: RunningServer) -> None:
    keys = _setup(server)

    response = submit(server.channel, keys[ISSUER], _cbc_bundle(CBC_ANALYTES[:4], "CBC-2"))

    assert response.counts.created == 4
    assert _check(server, keys[ASKER], "LAB-CBC") == ["NO_RESULT"]


def test_results_without_a_value_are_kept_with_their_status_and_never_recognized(
    server: RunningServer,
) -> None:
    keys = _setup(server)
    now = dt.datetime.now(SHANGHAI).replace(microsecond=0)
    susceptibility = lis_result(
        "AMX-1",
        "18862-3",
        interpretation=[
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": "S",
                    }
                ]
            }
        ],
    )
    haemolysed = lis_result("K-1", "2823-3", dataAbsentReason={"text": "specimen haemolysed"})
    document = lis_bundle(
        [
            lis_patient(),
            as_entry(
                lis_report(
                    "RPT-9",
                    "24323-8",
                    ["urn:uuid:amx", "urn:uuid:k"],
                    effective=now - dt.timedelta(hours=3),
                    issued=now - dt.timedelta(hours=1),
                ),
                "urn:uuid:rpt",
            ),
            as_entry(susceptibility, "urn:uuid:amx"),
            as_entry(haemolysed, "urn:uuid:k"),
        ]
    )

    response = submit(server.channel, keys[ISSUER], document)

    assert [e.outcome for e in response.entries[2:]] == [ingest_pb2.CREATED] * 2
    assert [e.status for e in response.entries[2:]] == ["final", "final"]
    with server.runtime.sessions() as session:
        rows = {r.loinc: r for r in session.scalars(select(LabResultVersion))}
        indexed = session.scalar(select(func.count()).select_from(RecognitionResult))
    assert {code: (r.status, r.value_kind, r.interpretation) for code, r in rows.items()} == {
        "18862-3": ("final", "none", "S"),
        "2823-3": ("final", "none", ""),
    }
    assert indexed == 0
    assert _check(server, keys[ASKER], "LAB-K") == ["NO_RESULT"]


def test_the_catalog_shows_specimen_variants_and_panel_analytes(server: RunningServer) -> None:
    keys = _setup(server)
    stub = catalog_pb2_grpc.CatalogServiceStub(server.channel)
    metadata = (("authorization", f"Bearer {keys[ASKER]}"),)

    def get(code: str) -> catalog_pb2.CatalogItem:
        item: catalog_pb2.CatalogItem = stub.GetItem(
            catalog_pb2.GetItemRequest(code=code), metadata=metadata, timeout=30
        )
        return item

    glucose = get("LAB-GLU")
    cbc = get("LAB-CBC")

    assert list(glucose.specimen_loinc) == ["2339-0", "15074-8", "41653-7", "14743-9"]
    assert list(glucose.panel_requires) == []
    assert list(cbc.loinc) == ["57021-8", "58410-2"]
    assert list(cbc.panel_requires) == [
        "6690-2|26464-8",
        "789-8|26453-1",
        "718-7|20509-6",
        "4544-3|20570-8",
        "777-3|26515-7",
    ]


def test_values_show_in_the_items_canonical_unit_beside_the_reported_one(
    server: RunningServer,
) -> None:
    keys = _setup(server)
    now = dt.datetime.now(SHANGHAI).replace(microsecond=0)
    document = lis_bundle(
        [
            lis_patient(),
            as_entry(
                lis_report(
                    "RPT-U",
                    "24323-8",
                    ["urn:uuid:glu", "urn:uuid:k"],
                    effective=now - dt.timedelta(hours=3),
                    issued=now - dt.timedelta(hours=1),
                ),
                "urn:uuid:rpt",
            ),
            as_entry(lis_result("GLU-1", "2345-7", value=98, unit="mg/dL"), "urn:uuid:glu"),
            # Potassium by mass: the catalog gives no molar mass for it, so it stays as sent.
            as_entry(lis_result("K-1", "2823-3", value=16, unit="mg/dL"), "urn:uuid:k"),
        ]
    )
    assert submit(server.channel, keys[ISSUER], document).counts.created == 2

    glucose, potassium = (
        line.result.lab for line in _lines(server, keys[ASKER], "LAB-GLU", "LAB-K")
    )

    assert (glucose.value, glucose.unit) == ("98", "mg/dL")
    assert (glucose.canonical_value, glucose.canonical_unit) == ("5.44", "mmol/L")
    assert glucose.unit_note == "converted from 98 mg/dL"
    assert (potassium.value, potassium.unit) == ("16", "mg/dL")
    assert (potassium.canonical_value, potassium.canonical_unit) == ("", "mmol/L")
    assert potassium.unit_note == "mg/dL cannot be converted to mmol/L: shown as reported"
