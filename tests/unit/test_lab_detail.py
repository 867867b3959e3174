"""lab_detail: the JSON a doctor sees of a recognized lab result, written without json.dumps."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from mutualrec.ingest.lab_result import Coding, LabResult, LabValue
from mutualrec.matching.facts import ResultStatus
from mutualrec.recognition.result_items import lab_detail

WHEN = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)


def _result(value: LabValue, **changes: object) -> LabResult:
    fields: dict[str, object] = {
        "identity": "identifier|urn:lis|R1",
        "status": ResultStatus.FINAL,
        "loinc": ("2823-3",),
        "local_codes": (),
        "code_text": "钾",
        "value": value,
        "reference_low": Decimal("3.5"),
        "reference_high": Decimal("5.3"),
        "reference_text": "",
        "interpretation": ("N",),
        "specimen_collected_at": None,
        "effective_at": WHEN,
        "issued_at": None,
        "report_ref": "",
    }
    fields.update(changes)
    return LabResult(**fields)  # type: ignore[arg-type]


def _expected(result: LabResult) -> str:
    value = result.value
    shown = str(value.number) if value.number is not None else value.text
    if value.kind == "Range":
        shown = f"{value.low or ''}-{value.high or ''}"
    if result.reference_low is None and result.reference_high is None:
        range_ = result.reference_text
    else:
        low = "" if result.reference_low is None else str(result.reference_low)
        high = "" if result.reference_high is None else str(result.reference_high)
        range_ = f"{low}-{high}"
    return json.dumps(
        {
            "loinc": result.loinc[0] if result.loinc else "",
            "display": result.code_text,
            "value": shown,
            "unit": value.unit,
            "range": range_,
            "interpretation": ";".join(result.interpretation),
        },
        ensure_ascii=False,
    )


RESULTS = [
    _result(LabValue("Quantity", number=Decimal("4.10"), unit="mmol/L")),
    _result(LabValue("Range", unit="mg/L", low=Decimal(1), high=None)),
    _result(
        LabValue("CodeableConcept", code=Coding("http://snomed.info/sct", "112144000"), text="A"),
        loinc=(),
        reference_low=None,
        reference_high=None,
        reference_text='normal: "<5"',
    ),
    _result(LabValue("string", text='he said "hi"\\ \n\t\x01 \u2028 é'), interpretation=("H", "A")),
    _result(LabValue("none"), code_text="", interpretation=()),
]


@pytest.mark.parametrize("result", RESULTS)
def test_detail_is_what_json_dumps_writes(result: LabResult) -> None:
    assert lab_detail(result) == _expected(result)
    assert json.loads(lab_detail(result))["display"] == result.code_text
