"""Normalizing one FHIR Observation into a LabResult (mutualrec/ingest/lab_result.py).

Every expected value is read by hand from the JSON: from the HL7 examples in tests/fixtures/fhir
(see its README) or from the documents built here with tests/fhir_docs.py.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mutualrec.ingest.fhir_document import parse_json
from mutualrec.ingest.lab_result import (
    Coding,
    LabResult,
    LabValue,
    ReportContext,
    normalize_observation,
    parse_fhir_time,
)
from mutualrec.matching.facts import ResultStatus
from mutualrec.matching.ucum import is_ucum
from mutualrec.violations import Violation
from tests.fhir_docs import encode, observation

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fhir"
ALL_EXAMPLES = sorted(FIXTURES.glob("hl7-r*/Observation-*.json"))
UTC = dt.UTC
CHINA = dt.timezone(dt.timedelta(hours=8))
PLUS_1 = dt.timezone(dt.timedelta(hours=1))
SHANGHAI = ZoneInfo("Asia/Shanghai")
RECEIVED = dt.datetime(2026, 11, 20, 12, 0, tzinfo=CHINA)
BMC = "http://www.bmc.nl/zorgportal/identifiers/observations"
SNOMED = "http://snomed.info/sct"

KNOWN_REASONS = {"MISSING_FIELD", "INVALID_VALUE", "INVALID_CODE", "NOT_UCUM", "FUTURE_TIME"}
# Required elements the normalizer may report although the resource does not have them.
REQUIRED_FIELDS = {"identifier", "status", "code", "code.coding", "effective[x]", "value[x]"}
_PATH_PART = re.compile(r"^([A-Za-z]+)((?:\[\d+\])*)$")


def _example(release: str, name: str) -> dict[str, Any]:
    resource = parse_json((FIXTURES / f"hl7-{release}" / f"Observation-{name}.json").read_bytes())
    assert isinstance(resource, dict)
    return resource


def _normalize(
    resource: dict[str, Any],
    context: ReportContext | None = None,
    received_at: dt.datetime = RECEIVED,
    path: Callable[[str], str] = lambda name: name,
) -> LabResult | list[Violation]:
    return normalize_observation(resource, path, context or ReportContext(), received_at)


def _result(resource: dict[str, Any], context: ReportContext | None = None) -> LabResult:
    result = _normalize(resource, context)
    assert isinstance(result, LabResult), result
    return result


def _problems(resource: dict[str, Any], **kwargs: Any) -> set[tuple[str, str]]:
    result = _normalize(resource, **kwargs)
    assert isinstance(result, list), result
    return {(v.field, v.reason) for v in result}


def _obs(**changes: Any) -> dict[str, Any]:
    """tests/fhir_docs.observation("R1"), read back as the server reads it (Decimal values)."""
    resource = parse_json(encode(observation("R1", **changes)))
    assert isinstance(resource, dict)
    return resource


def _element_exists(resource: dict[str, Any], path: str) -> bool:
    node: Any = resource
    for part in path.split("."):
        match = _PATH_PART.match(part)
        if match is None or not isinstance(node, dict) or match[1] not in node:
            return False
        node = node[match[1]]
        for index in re.findall(r"\[(\d+)\]", match[2]):
            if not isinstance(node, list) or int(index) >= len(node):
                return False
            node = node[int(index)]
    return True


# --- every HL7 example ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=lambda p: f"{p.parent.name}-{p.stem[12:]}")
def test_every_example_normalizes_or_names_what_is_missing(path: Path) -> None:
    resource = parse_json(path.read_bytes())
    result = _normalize(resource)
    if isinstance(result, LabResult):
        assert result.identity == f"id|{resource['id']}" or result.identity.startswith(
            "identifier|"
        )
        assert result.report_time <= RECEIVED
        return
    assert result, "violations, when returned, are never an empty list"
    for violation in result:
        assert violation.reason in KNOWN_REASONS, violation
        assert violation.field in REQUIRED_FIELDS or _element_exists(resource, violation.field), (
            violation
        )
        assert violation.description


def test_violation_paths_are_prefixed_by_the_callers_path() -> None:
    resource = _example("r4", "f001")
    del resource["effectivePeriod"]
    resource["valueQuantity"]["code"] = "mmol/litre"
    found = _normalize(resource, path=lambda name: f"entry[4].resource.{name}")
    assert isinstance(found, list)
    assert {(v.field, v.reason) for v in found} == {
        ("entry[4].resource.effective[x]", "MISSING_FIELD"),
        ("entry[4].resource.valueQuantity.code", "NOT_UCUM"),
    }


# --- hand-checked examples -----------------------------------------------------------------------


def _bmc(number: str, loinc: str, value: str, unit: str, **rest: Any) -> LabResult:
    """The Bronovo lab results f001-f005: BMC identifier, LOINC, a UCUM quantity, issued."""
    fields: dict[str, Any] = {
        "identity": f"identifier|{BMC}|{number}",
        "status": ResultStatus.FINAL,
        "loinc": (loinc,),
        "local_codes": (),
        "code_text": "",
        "value": LabValue("Quantity", number=Decimal(value), unit=unit),
        "reference_low": None,
        "reference_high": None,
        "reference_text": "",
        "interpretation": (),
        "specimen_collected_at": None,
        "effective_at": dt.datetime(2013, 4, 2, 10, 30, 10, tzinfo=PLUS_1),
        "issued_at": dt.datetime(2013, 4, 3, 15, 30, 10, tzinfo=PLUS_1),
        "report_ref": "",
    }
    fields.update(rest)
    return LabResult(**fields)


F001 = _bmc(
    "6323",
    "15074-8",
    "6.3",
    "mmol/L",
    reference_low=Decimal("3.1"),
    reference_high=Decimal("6.2"),
    interpretation=("H",),
    effective_at=dt.datetime(2013, 4, 2, 9, 30, 10, tzinfo=PLUS_1),
)
F004_RANGE_TEXT = (
    " 12-14 y Male: 4.4 - 5.2  x  10^12/L ; 12-14 y Female: 4.2 - 4.8  x  10^12/L ;"
    " 15-17 y Male: 4.6 - 5.4  x  10^12/L ; 15-17 y Female: 4.2 - 4.8  x  10^12/L ;"
    " 18-64 y Male: 4.6 - 5.4  x  10^12/L ; 18-64 y Female: 4.0 - 4.8  x  10^12/L ;"
    " 65-74 y Male: 4.3 - 5.3  x  10^12/L ; 65-74 y Female: 4.1 - 4.9  x  10^12/L       "
)
F004 = _bmc(
    "6326", "789-8", "4.12", "10*12/L", reference_text=F004_RANGE_TEXT, interpretation=("L",)
)
BLOOD_GROUP = LabResult(
    identity="id|bloodgroup",
    status=ResultStatus.FINAL,
    loinc=("883-9",),
    local_codes=(),
    code_text="Blood Group",
    value=LabValue(
        "CodeableConcept", code=Coding(SNOMED, "112144000", "Blood group A (finding)"), text="A"
    ),
    reference_low=None,
    reference_high=None,
    reference_text="",
    interpretation=(),
    specimen_collected_at=None,
    effective_at=dt.datetime(2018, 3, 11, 16, 7, 54, tzinfo=UTC),
    issued_at=None,
    report_ref="",
)

HAND_CHECKED = [
    pytest.param("r4", "f001", F001, id="r4-f001-glucose"),
    pytest.param(
        "r4",
        "f002",
        _bmc(
            "6324",
            "11555-0",
            "12.6",
            "mmol/L",
            reference_low=Decimal("7.1"),
            reference_high=Decimal("11.2"),
            interpretation=("H",),
        ),
        id="r4-f002-base-excess-period-start",
    ),
    pytest.param(
        "r4",
        "f003",
        _bmc(
            "6325",
            "11557-6",
            "6.2",
            "kPa",
            reference_low=Decimal("4.8"),
            reference_high=Decimal("6.0"),
            interpretation=("H",),
        ),
        id="r4-f003-pco2-kpa",
    ),
    pytest.param("r4", "f004", F004, id="r4-f004-erythrocytes-range-text"),
    pytest.param(
        "r4",
        "f005",
        _bmc(
            "6327",
            "718-7",
            "7.2",
            "g/dL",
            reference_low=Decimal("7.5"),
            reference_high=Decimal("10"),
            interpretation=("L",),
            effective_at=dt.datetime(2013, 4, 5, 10, 30, 10, tzinfo=PLUS_1),
            issued_at=dt.datetime(2013, 4, 5, 15, 30, 10, tzinfo=PLUS_1),
        ),
        id="r4-f005-hemoglobin",
    ),
    pytest.param("r4", "bloodgroup", BLOOD_GROUP, id="r4-bloodgroup-codeableconcept"),
    pytest.param(
        "r4",
        "trachcare",
        LabResult(
            identity="id|trachcare",
            status=ResultStatus.FINAL,
            loinc=(),
            local_codes=(Coding(SNOMED, "410211008", "Tracheostomy care assessment (procedure)"),),
            code_text="",
            value=LabValue(
                "string", text="Mother is trained to change her child's tracheostomy tube"
            ),
            reference_low=None,
            reference_high=None,
            reference_text="",
            interpretation=(),
            specimen_collected_at=None,
            effective_at=dt.datetime(2018, 3, 11, 16, 7, 54, tzinfo=UTC),
            issued_at=None,
            report_ref="",
        ),
        id="r4-trachcare-string",
    ),
    pytest.param(
        "r4",
        "example",
        LabResult(
            identity="id|example",
            status=ResultStatus.FINAL,
            loinc=("29463-7", "3141-9"),
            local_codes=(
                Coding(SNOMED, "27113001", "Body weight"),
                Coding("http://acme.org/devices/clinical-codes", "body-weight", "Body Weight"),
            ),
            code_text="",
            value=LabValue("Quantity", number=Decimal(185), unit="[lb_av]"),
            reference_low=None,
            reference_high=None,
            reference_text="",
            interpretation=(),
            specimen_collected_at=None,
            # effectiveDateTime "2016-03-28": a date, the local day in Chongqing.
            effective_at=dt.datetime(2016, 3, 28, tzinfo=SHANGHAI),
            issued_at=None,
            report_ref="",
        ),
        id="r4-example-date-only",
    ),
    # R5 f001 differs from R4 by effectiveDateTime instead of effectivePeriod.start.
    pytest.param("r5", "f001", F001, id="r5-f001-glucose"),
    pytest.param(
        "r5",
        "f004",
        _bmc(
            "6326",
            "789-8",
            "4.12",
            "10*12/L",
            reference_text=F004_RANGE_TEXT.strip(),  # R5 wrote the text without the blanks
            interpretation=("L",),
        ),
        id="r5-f004-erythrocytes",
    ),
    pytest.param("r5", "bloodgroup", BLOOD_GROUP, id="r5-bloodgroup"),
    pytest.param(
        "r5",
        "krcore-observation-labresult-example-01",
        LabResult(
            identity="id|krcore-observation-labresult-example-01",
            status=ResultStatus.FINAL,
            loinc=(),
            local_codes=(
                Coding(
                    "https://hira.or.kr/CodeSystem/lab-result-code", "FZ811", "연속혈당측정검사"
                ),
            ),
            code_text="연속혈당측정검사",
            # Only the display unit "mg/dL" is sent (no code); it is valid UCUM itself.
            value=LabValue("Quantity", number=Decimal("76.0"), unit="mg/dL"),
            reference_low=Decimal("40.0"),
            reference_high=Decimal("109.0"),
            reference_text="",
            interpretation=(),
            specimen_collected_at=None,
            effective_at=dt.datetime(2021, 1, 1, tzinfo=SHANGHAI),
            issued_at=None,
            report_ref="",
        ),
        id="r5-krcore-labresult-display-unit",
    ),
]


@pytest.mark.parametrize(("release", "name", "expected"), HAND_CHECKED)
def test_hand_checked_example(release: str, name: str, expected: LabResult) -> None:
    assert _result(_example(release, name)) == expected


def test_f001_report_time_is_the_issued_instant() -> None:
    result = _result(_example("r4", "f001"))
    assert result.report_time == dt.datetime(2013, 4, 3, 14, 30, 10, tzinfo=UTC)
    assert result.report_time.utcoffset() == dt.timedelta(hours=1)


def test_report_time_without_issued_is_the_effective_time() -> None:
    result = _result(_example("r4", "bloodgroup"))
    assert result.report_time == dt.datetime(2018, 3, 11, 16, 7, 54, tzinfo=UTC)


def test_decimals_keep_the_precision_written() -> None:
    # f003's reference range high is written 6.0; f005's is the integer 10.
    assert str(_result(_example("r4", "f003")).reference_high) == "6.0"
    assert str(_result(_example("r4", "f005")).reference_high) == "10"


def test_effective_period_start_wins_over_end() -> None:
    # f002: start 2013-04-02T10:30:10+01:00, end 2013-04-05T10:30:10+01:00.
    resource = _example("r4", "f002")
    assert _result(resource).effective_at == dt.datetime(2013, 4, 2, 9, 30, 10, tzinfo=UTC)
    del resource["effectivePeriod"]["start"]
    assert _result(resource).effective_at == dt.datetime(2013, 4, 5, 9, 30, 10, tzinfo=UTC)


EXAMPLE_PROBLEMS = [
    # f202: no effective time; the reference range's high has only the unit "degrees C".
    pytest.param(
        "r4",
        "f202",
        {("effective[x]", "MISSING_FIELD"), ("referenceRange[0].high.unit", "NOT_UCUM")},
        id="r4-f202-non-ucum-range-unit",
    ),
    # f203: the value's unit is coded in SNOMED; the range has no unit at all (accepted).
    pytest.param(
        "r4",
        "f203",
        {("effective[x]", "MISSING_FIELD"), ("valueQuantity.system", "NOT_UCUM")},
        id="r4-f203-snomed-unit",
    ),
    # f205: issued but no effective time; no value, but components.
    pytest.param("r4", "f205", {("effective[x]", "MISSING_FIELD")}, id="r4-f205-components"),
    # 656: the unit is an ISO 11073 code.
    pytest.param("r4", "656", {("valueQuantity.system", "NOT_UCUM")}, id="r4-656-iso11073"),
    pytest.param("r4", "bmd", {("effective[x]", "MISSING_FIELD")}, id="r4-bmd-no-effective"),
    # decimal: code has only text; no effective time; the values are in components.
    pytest.param(
        "r4",
        "decimal",
        {("code.coding", "MISSING_FIELD"), ("effective[x]", "MISSING_FIELD")},
        id="r4-decimal-uncoded",
    ),
    pytest.param(
        "r5",
        "f203",
        {("effective[x]", "MISSING_FIELD"), ("valueQuantity.system", "NOT_UCUM")},
        id="r5-f203",
    ),
]


@pytest.mark.parametrize(("release", "name", "expected"), EXAMPLE_PROBLEMS)
def test_hand_checked_example_problems(
    release: str, name: str, expected: set[tuple[str, str]]
) -> None:
    assert _problems(_example(release, name)) == expected


def test_f001_without_effective_time_is_missing_effective() -> None:
    resource = _example("r4", "f001")
    del resource["effectivePeriod"]
    assert _problems(resource) == {("effective[x]", "MISSING_FIELD")}


@pytest.mark.parametrize(
    ("element", "null"),
    [
        ("effectivePeriod", {"start": None}),
        ("effectivePeriod", {"start": None, "end": None}),
        ("effectiveDateTime", None),
        ("effectiveInstant", None),
    ],
)
def test_f001_with_a_null_effective_time_is_missing_effective(element: str, null: Any) -> None:
    resource = _example("r4", "f001")
    del resource["effectivePeriod"]
    resource[element] = null
    assert _problems(resource) == {("effective[x]", "MISSING_FIELD")}


@pytest.mark.parametrize("value", [20261120, ["2026-11-20"], {"date": "2026-11-20"}, True])
def test_f001_with_an_effective_time_that_is_not_a_string_names_it(value: Any) -> None:
    resource = _example("r4", "f001")
    del resource["effectivePeriod"]
    resource["effectiveDateTime"] = value
    assert _problems(resource) == {("effectiveDateTime", "INVALID_VALUE")}


def test_f001_without_range_units_is_accepted_without_units() -> None:
    resource = _example("r4", "f001")
    for end in ("low", "high"):
        for key in ("unit", "system", "code"):
            del resource["referenceRange"][0][end][key]
    result = _result(resource)
    assert (result.reference_low, result.reference_high) == (Decimal("3.1"), Decimal("6.2"))


def test_f001_without_any_value_unit_has_an_empty_unit() -> None:
    resource = _example("r4", "f001")
    resource["valueQuantity"] = {"value": Decimal("6.3")}
    assert _result(resource).value == LabValue("Quantity", number=Decimal("6.3"), unit="")


# --- parse_fhir_time -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        # Partial dates are the start of that period in Asia/Shanghai (UTC+8, no DST since 1991).
        ("2026", dt.datetime(2025, 12, 31, 16, 0, tzinfo=UTC)),
        ("2026-11", dt.datetime(2026, 10, 31, 16, 0, tzinfo=UTC)),
        ("2026-11-20", dt.datetime(2026, 11, 19, 16, 0, tzinfo=UTC)),
        ("2026-11-20T10:12:00+08:00", dt.datetime(2026, 11, 20, 2, 12, tzinfo=UTC)),
        ("2026-11-20T02:12:00Z", dt.datetime(2026, 11, 20, 2, 12, tzinfo=UTC)),
        ("2026-11-20T02:12:00+00:00", dt.datetime(2026, 11, 20, 2, 12, tzinfo=UTC)),
        ("2026-11-19T21:12:00-05:00", dt.datetime(2026, 11, 20, 2, 12, tzinfo=UTC)),
        ("2026-11-20T10:12:00.250+08:00", dt.datetime(2026, 11, 20, 2, 12, 0, 250000, tzinfo=UTC)),
    ],
)
def test_parse_fhir_time(text: str, instant: dt.datetime) -> None:
    parsed = parse_fhir_time(text)
    assert parsed.tzinfo is not None
    assert parsed == instant


def test_date_is_midnight_in_shanghai() -> None:
    parsed = parse_fhir_time("2026-11-20")
    assert (parsed.year, parsed.month, parsed.day, parsed.hour, parsed.minute) == (
        2026,
        11,
        20,
        0,
        0,
    )
    assert parsed.utcoffset() == dt.timedelta(hours=8)


def test_date_time_keeps_its_offset() -> None:
    assert parse_fhir_time("2013-04-03T15:30:10+01:00").utcoffset() == dt.timedelta(hours=1)


@pytest.mark.parametrize(
    "text",
    ["2026-11-20T10:12:00", "2026-11-20T10:12:00.5", "2026-02-30", "2026-13", "11/20/2026", ""],
    ids=["time-without-zone", "fraction-without-zone", "no-such-day", "month-13", "us", "empty"],
)
def test_parse_fhir_time_rejects(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - ValueError is the documented contract
        parse_fhir_time(text)


@pytest.mark.parametrize(
    "text",
    ["2026-11-20 10:12:00+08:00", "2026-11-20T10:12+08:00", "20261120T101200+0800"],
    ids=["space", "no-seconds", "basic-format"],
)
def test_parse_fhir_time_rejects_non_fhir_iso_forms(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_fhir_time(text)


# --- is_ucum -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "unit",
    [
        *("mmol/L", "umol/L", "10*9/L", "10*12/L", "g/L", "g/dL", "%", "m[IU]/L", "mm[Hg]"),
        *("/[HPF]", "{cells}/uL", "kPa", "[lb_av]", "mL/min/{1.73_m2}", "Cel"),
        # UCUM defines 10^ as well as 10* ("the number ten for arbitrary powers").
        "10^9/L",
    ],
)
def test_valid_ucum_units(unit: str) -> None:
    assert is_ucum(unit)


@pytest.mark.parametrize(
    "unit",
    ["IU/L", "mmHg", "mmol/litre", "", " mmol/L", "degrees C", "MMOL/L", "cells/uL", "10*9 /L"],
)
def test_invalid_ucum_units(unit: str) -> None:
    assert not is_ucum(unit)


def test_value_unit_that_is_not_ucum_is_reported_at_its_code() -> None:
    assert _problems(_obs(unit="IU/L")) == {("valueQuantity.code", "NOT_UCUM")}


def test_display_unit_alone_is_checked_as_ucum() -> None:
    resource = _obs()
    resource["valueQuantity"] = {"value": Decimal("4.1"), "unit": "mmHg"}
    assert _problems(resource) == {("valueQuantity.unit", "NOT_UCUM")}


# --- codes, status, identity ---------------------------------------------------------------------


@pytest.mark.parametrize("code", ["2823-3", "15074-8", "1-8", "1234567-8"])
def test_loinc_shaped_codes_are_accepted(code: str) -> None:
    assert _result(_obs(loinc=code)).loinc == (code,)


@pytest.mark.parametrize(
    "code", ["2823", "2823-", "28233", "2823-33", "LP12345-6", "12345678-9", "-3", "2823_3"]
)
def test_malformed_loinc_codes_are_refused(code: str) -> None:
    assert _problems(_obs(loinc=code)) == {("code.coding[0].code", "INVALID_CODE")}


def test_local_code_without_loinc_is_enough() -> None:
    resource = _obs()
    resource["code"]["coding"] = [{"system": "urn:lis:H500103001", "code": "K", "display": "钾"}]
    result = _result(resource)
    assert result.loinc == ()
    assert result.local_codes == (Coding("urn:lis:H500103001", "K", "钾"),)
    assert result.code_text == "钾"


def test_code_with_text_only_is_refused() -> None:
    resource = _obs()
    resource["code"] = {"text": "钾"}
    assert _problems(resource) == {("code.coding", "MISSING_FIELD")}


@pytest.mark.parametrize(
    ("status", "expected"),
    [(None, ("status", "MISSING_FIELD")), ("done", ("status", "INVALID_CODE"))],
)
def test_status_must_be_an_observation_status(
    status: str | None, expected: tuple[str, str]
) -> None:
    resource = _obs()
    if status is None:
        del resource["status"]
    else:
        resource["status"] = status
    assert _problems(resource) == {expected}


def test_identity_is_the_business_identifier() -> None:
    result = _result(_obs())
    assert result.identity == "identifier|urn:mutualrec:lis:H500103001|R1"


def test_identity_falls_back_to_the_resource_id() -> None:
    resource = _obs()
    resource["identifier"] = [{"system": "urn:x"}]  # no value: not a usable identifier
    resource["id"] = "obs-17"
    assert _result(resource).identity == "id|obs-17"


def test_observation_without_identifier_or_id_is_refused() -> None:
    resource = _obs()
    del resource["identifier"]
    assert _problems(resource) == {("identifier", "MISSING_FIELD")}


# --- values --------------------------------------------------------------------------------------


def test_final_without_a_value_is_refused() -> None:
    resource = _obs()
    del resource["valueQuantity"]
    assert _problems(resource) == {("value[x]", "MISSING_FIELD")}


def test_final_with_data_absent_reason_is_accepted() -> None:
    resource = _obs()
    del resource["valueQuantity"]
    resource["dataAbsentReason"] = {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "error"}
        ]
    }
    assert _result(resource).value == LabValue("none")


@pytest.mark.parametrize("status", ["preliminary", "registered", "cancelled"])
def test_not_final_without_a_value_is_accepted(status: str) -> None:
    resource = _obs(status=status)
    del resource["valueQuantity"]
    assert _result(resource).value == LabValue("none")


@pytest.mark.parametrize(
    ("element", "value", "expected"),
    [
        ("valueInteger", 3, LabValue("integer", number=Decimal(3))),
        ("valueBoolean", False, LabValue("boolean", text="false")),
        ("valueString", "阴性", LabValue("string", text="阴性")),
        (
            "valueRange",
            {"low": {"value": 1, "code": "mmol/L"}, "high": {"value": 2, "code": "mmol/L"}},
            LabValue("Range", unit="mmol/L", low=Decimal(1), high=Decimal(2)),
        ),
        (
            "valueQuantity",
            {"value": Decimal("0.5"), "comparator": "<", "code": "mmol/L"},
            LabValue("Quantity", number=Decimal("0.5"), unit="mmol/L", text="<"),
        ),
    ],
    ids=["integer", "boolean", "string", "range", "comparator"],
)
def test_value_kinds(element: str, value: Any, expected: LabValue) -> None:
    resource = _obs()
    del resource["valueQuantity"]
    resource[element] = value
    assert _result(resource).value == expected


def test_value_and_range_come_from_the_document() -> None:
    result = _result(_obs(value="4.10"))
    assert result.value.number == Decimal("4.10")
    assert (result.reference_low, result.reference_high) == (Decimal("3.5"), Decimal("5.3"))


# --- times ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("issued", "accepted"),
    [
        ("2026-11-20T12:00:00+08:00", True),  # received_at itself
        ("2026-11-20T12:00:59+08:00", True),
        ("2026-11-20T12:01:00+08:00", True),  # exactly the 60-second clock skew
        ("2026-11-20T04:01:00Z", True),  # the same instant in UTC
        ("2026-11-20T12:01:01+08:00", False),
        ("2026-11-20T04:01:01Z", False),
        ("2026-11-20T12:04:59+08:00", False),  # the old 5-minute tolerance: a negative age
        ("2026-11-21", False),  # tomorrow in Chongqing
    ],
)
def test_issued_in_the_future_is_refused(issued: str, accepted: bool) -> None:
    result = _normalize(_obs(issued=issued))
    if accepted:
        assert isinstance(result, LabResult)
    else:
        assert isinstance(result, list)
        assert {(v.field, v.reason) for v in result} == {("issued", "FUTURE_TIME")}


def test_the_clock_skew_is_the_servers_setting() -> None:
    resource = _obs(issued="2026-11-20T12:04:59+08:00")
    lenient = normalize_observation(
        resource, lambda name: name, ReportContext(), RECEIVED, clock_skew=dt.timedelta(minutes=5)
    )
    assert isinstance(lenient, LabResult)


@pytest.mark.parametrize(
    ("effective", "accepted"),
    [
        ("2026-11-20T12:01:00+08:00", True),
        ("2026-11-20", True),  # midnight today
        ("2026-11-20T12:01:01+08:00", False),
        ("2027", False),
    ],
)
def test_effective_in_the_future_is_refused(effective: str, accepted: bool) -> None:
    resource = _obs(issued="2026-11-20T11:00:00+08:00")
    resource["effectiveDateTime"] = effective
    if accepted:
        assert _result(resource).effective_at == parse_fhir_time(effective)
    else:
        assert _problems(resource) == {("effective[x]", "FUTURE_TIME")}


def test_effective_time_without_zone_is_invalid() -> None:
    resource = _obs()
    resource["effectiveDateTime"] = "2026-11-20T08:00:00"
    assert _problems(resource) == {("effectiveDateTime", "INVALID_VALUE")}


def test_report_context_fills_report_issued_and_specimen() -> None:
    resource = _obs()
    del resource["issued"]
    context = ReportContext(
        "identifier|urn:lis-report|RPT-1",
        dt.datetime(2026, 11, 20, 10, 30, tzinfo=CHINA),
        dt.datetime(2026, 11, 20, 7, 45, tzinfo=CHINA),
    )
    result = _result(resource, context)
    assert result.report_ref == "identifier|urn:lis-report|RPT-1"
    assert result.issued_at == dt.datetime(2026, 11, 20, 10, 30, tzinfo=CHINA)
    assert result.specimen_collected_at == dt.datetime(2026, 11, 20, 7, 45, tzinfo=CHINA)
    assert result.report_time == result.issued_at


def test_observation_issued_wins_over_report_issued() -> None:
    context = ReportContext("r", dt.datetime(2026, 11, 20, 10, 30, tzinfo=CHINA))
    result = _result(_obs(issued="2026-11-20T10:12:00+08:00"), context)
    assert result.issued_at == dt.datetime(2026, 11, 20, 10, 12, tzinfo=CHINA)


# --- content_sha256 ------------------------------------------------------------------------------


def _sha(resource: dict[str, Any], patient_key: str = "patient-a") -> str:
    return _result(resource).content_sha256(patient_key)


def test_digest_is_a_sha256_hex() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", _sha(_obs()))


def test_digest_ignores_bundle_local_references() -> None:
    # A LIS re-sending the result regenerates its urn:uuid references.
    assert _sha(_obs(subject="urn:uuid:patient-1")) == _sha(
        _obs(subject="urn:uuid:0d6f7e1c-51f8-4f55-8a0a-6a1c5f3e9b21")
    )


def test_digest_ignores_key_order() -> None:
    resource = _obs()
    reordered = dict(reversed(list(resource.items())))
    reordered["valueQuantity"] = dict(reversed(list(resource["valueQuantity"].items())))
    assert list(reordered) != list(resource)
    assert _sha(reordered) == _sha(resource)


def test_digest_ignores_the_offset_of_the_same_instant() -> None:
    assert _sha(_obs(issued="2026-11-20T10:12:00+08:00")) == _sha(
        _obs(issued="2026-11-20T02:12:00Z")
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"value": 4.2},
        {"status": "amended"},
        {"status": "preliminary"},
        {"unit": "umol/L"},
        {"loinc": "2951-2"},
        {"issued": "2026-11-20T10:13:00+08:00"},
    ],
    ids=["value", "status-amended", "status-preliminary", "unit", "loinc", "issued"],
)
def test_digest_changes_with_the_content(changes: dict[str, Any]) -> None:
    assert _sha(_obs(**changes)) != _sha(_obs())


def test_digest_changes_with_the_patient() -> None:
    resource = _obs()
    assert _sha(resource, "patient-a") != _sha(resource, "patient-b")
