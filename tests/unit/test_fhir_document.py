"""The shell of a FHIR submission (fhir_document) and resource validation (fhir_validation).

Expected values are read by hand from the documents written here and from the HL7 examples in
tests/fixtures/fhir (see its README).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from mutualrec.ingest import fhir_validation
from mutualrec.ingest.fhir_document import BundleKind, Entry, parse_json, read_document
from mutualrec.ingest.fhir_validation import validate_resource
from mutualrec.ingest.fhir_version import FhirVersion
from mutualrec.violations import Rejected, Violation
from tests.fhir_docs import bundle, encode, entry, observation, patient

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fhir"
R4_EXAMPLES = sorted((FIXTURES / "hl7-r4").glob("Observation-*.json"))
R5_EXAMPLES = sorted((FIXTURES / "hl7-r5").glob("Observation-*.json"))
EXAMPLES = [(FhirVersion.R4, p) for p in R4_EXAMPLES] + [(FhirVersion.R5, p) for p in R5_EXAMPLES]
EXAMPLE_IDS = [f"{v.value}-{p.stem.removeprefix('Observation-')}" for v, p in EXAMPLES]
# The packages the validator is built on, used here directly as an independent "fresh" check.
OBSERVATION_MODULES = {
    FhirVersion.R4: "fhir.resources.R4B.observation",
    FhirVersion.R5: "fhir.resources.observation",
}


def _rejection(body: bytes) -> Violation:
    """The single violation ``read_document`` rejects ``body`` with."""
    with pytest.raises(Rejected) as raised:
        read_document(body)
    assert len(raised.value.violations) == 1, raised.value.violations
    return raised.value.violations[0]


def _bundle_of(entries: list[Any], kind: str = "batch") -> bytes:
    return encode({"resourceType": "Bundle", "type": kind, "entry": entries})


def _shell(body: bytes) -> dict[int, set[tuple[str, str]]]:
    """Per entry index, the (field, reason) pairs of the shell's problems."""
    document = read_document(body)
    return {i: {(v.field, v.reason) for v in vs} for i, vs in document.shell_violations.items()}


def _example(path: Path) -> dict[str, Any]:
    resource = parse_json(path.read_bytes())
    assert isinstance(resource, dict)
    return resource


def _f001(version: FhirVersion) -> dict[str, Any]:
    folder = "hl7-r4" if version is FhirVersion.R4 else "hl7-r5"
    return _example(FIXTURES / folder / "Observation-f001.json")


def _pairs(violations: Sequence[Violation]) -> set[tuple[str, str]]:
    return {(v.field, v.reason) for v in violations}


def _loc_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _fresh_fields(version: FhirVersion, resource: dict[str, Any]) -> set[str]:
    """Paths of the errors of the whole resource by its fhir.resources model, no memo involved."""
    model = importlib.import_module(OBSERVATION_MODULES[version]).Observation
    assert issubclass(model, BaseModel)
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return {_loc_path(e["loc"]) for e in exc.errors()}
    return set()


@pytest.fixture
def empty_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation starts without memoized element results (and leaves the real memo alone)."""
    monkeypatch.setattr(fhir_validation, "_memo", {})


# --- parse_json ----------------------------------------------------------------------------------


def test_invalid_json_is_located_by_line_and_column() -> None:
    # Line 2 is '  "status": }': the value is missing where "}" stands, in column 13.
    violation = _rejection(b'{"resourceType": "Observation",\n  "status": }')
    assert violation == Violation(
        "body", "invalid JSON at line 2 column 13: Expecting value", "BAD_JSON"
    )


def test_truncated_json_is_bad_json() -> None:
    violation = _rejection(b'{"resourceType": "Observation"')
    assert (violation.field, violation.reason) == ("body", "BAD_JSON")
    assert "line 1 column 31" in violation.description


def test_gbk_encoded_body_is_not_utf8() -> None:
    # "钾" in GBK is BC D8; 0xBC cannot start a UTF-8 sequence. It is byte 9 of the body.
    body = '{"text":"钾"}'.encode("gbk")
    assert body[9] == 0xBC
    assert _rejection(body) == Violation("body", "not UTF-8 at byte 9", "NOT_UTF8")


def test_utf8_byte_order_mark_is_accepted() -> None:
    assert parse_json(b'\xef\xbb\xbf{"resourceType": "Observation"}') == {
        "resourceType": "Observation"
    }


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"resourceType": "Observation", "status": "final", "status": "amended"}', "status"),
        (b'{"valueQuantity": {"value": 4.1, "unit": "mmol/L", "value": 5.2}}', "value"),
        (b'{"entry": [{"resource": {}}, {"fullUrl": "a", "fullUrl": "b"}]}', "fullUrl"),
    ],
    ids=["top-level", "nested", "inside-array"],
)
def test_duplicate_keys_are_rejected(body: bytes, key: str) -> None:
    violation = _rejection(body)
    assert (violation.field, violation.reason) == ("body", "DUPLICATE_JSON_KEY")
    assert repr(key) in violation.description


def test_an_integer_too_long_to_convert_is_named_as_such() -> None:
    digits = "9" * 5000
    violation = _rejection(
        b'{"resourceType": "Observation", "valueInteger": ' + digits.encode() + b"}"
    )
    assert (violation.field, violation.reason) == ("body", "NUMBER_TOO_LONG")
    assert "5000 digits" in violation.description


def test_decimals_keep_their_precision() -> None:
    value = parse_json(b'{"value": 4.10, "count": 7, "tiny": 1e-22}')
    assert isinstance(value["value"], Decimal)
    assert str(value["value"]) == "4.10"
    assert value["count"] == 7
    assert isinstance(value["count"], int)
    assert value["tiny"] == Decimal("1E-22")


def test_hl7_decimal_example_is_read_without_float_rounding() -> None:
    # Observation-decimal.json, as written in the file: component valueQuantity values 1.0,
    # 1.00, 1.0, 1E-22, 1000000000000000000, 1.000000000000000000E-245 and
    # -1.000000000000000000E+245.
    resource = _example(FIXTURES / "hl7-r4" / "Observation-decimal.json")
    values = [c["valueQuantity"]["value"] for c in resource["component"]]
    assert [str(v) for v in values] == [
        "1.0",
        "1.00",
        "1.0",
        "1E-22",
        "1000000000000000000",
        "1.000000000000000000E-245",
        "-1.000000000000000000E+245",
    ]
    assert isinstance(values[4], int)
    assert all(isinstance(v, Decimal) for i, v in enumerate(values) if i != 4)


# --- read_document: the document itself ----------------------------------------------------------


@pytest.mark.parametrize("body", [b"[]", b'"Observation"', b"null", b"42", b"true"])
def test_non_object_document_is_refused(body: bytes) -> None:
    violation = _rejection(body)
    assert (violation.field, violation.reason) == ("body", "NOT_A_RESOURCE")


@pytest.mark.parametrize(
    "document",
    [
        {"resourceType": "Patient", "id": "p1"},
        {"resourceType": "DiagnosticReport", "status": "final"},
        {"resourceType": "observation", "status": "final"},
        {"status": "final"},
    ],
    ids=["Patient", "DiagnosticReport", "lower-case", "no-resourceType"],
)
def test_other_resource_types_are_refused(document: dict[str, Any]) -> None:
    violation = _rejection(encode(document))
    assert (violation.field, violation.reason) == ("resourceType", "UNSUPPORTED_RESOURCE_TYPE")


def test_single_observation_is_one_entry_without_path_prefix() -> None:
    resource = observation("R1")
    document = read_document(encode(resource))
    assert document.kind is BundleKind.SINGLE
    assert document.shell_violations == {}
    assert len(document.entries) == 1
    only = document.entries[0]
    assert (only.index, only.full_url, only.resource_type, only.path) == (0, "", "Observation", "")
    assert only.resource["identifier"] == resource["identifier"]
    assert only.field("valueQuantity.value") == "valueQuantity.value"


@pytest.mark.parametrize(
    ("kind", "expected"), [("batch", BundleKind.BATCH), ("transaction", BundleKind.TRANSACTION)]
)
def test_batch_and_transaction_bundles_are_accepted(kind: str, expected: BundleKind) -> None:
    document = read_document(encode(bundle([observation("R1")], kind=kind)))
    assert document.kind is expected
    assert [(e.index, e.resource_type, e.full_url) for e in document.entries] == [
        (0, "Patient", "urn:uuid:patient-1"),
        (1, "Observation", "urn:uuid:obs-0"),
    ]
    assert document.shell_violations == {}


@pytest.mark.parametrize(
    ("kind", "all_or_nothing"),
    [(BundleKind.SINGLE, True), (BundleKind.BATCH, False), (BundleKind.TRANSACTION, True)],
)
def test_only_a_batch_is_processed_entry_by_entry(kind: BundleKind, all_or_nothing: bool) -> None:
    assert kind.all_or_nothing is all_or_nothing


@pytest.mark.parametrize(
    "kind",
    ["collection", "searchset", "document", "message", "history", "batch-response", "", None],
)
def test_other_bundle_types_are_refused(kind: str | None) -> None:
    document: dict[str, Any] = bundle([observation("R1")])
    if kind is None:
        del document["type"]
    else:
        document["type"] = kind
    violation = _rejection(encode(document))
    assert (violation.field, violation.reason) == ("type", "UNSUPPORTED_BUNDLE_TYPE")


@pytest.mark.parametrize(
    "document",
    [
        {"resourceType": "Bundle", "type": "batch"},
        {"resourceType": "Bundle", "type": "batch", "entry": []},
        {"resourceType": "Bundle", "type": "transaction", "entry": {"resource": {}}},
    ],
    ids=["no-entry", "empty-list", "entry-not-a-list"],
)
def test_bundle_without_entries_is_refused(document: dict[str, Any]) -> None:
    violation = _rejection(encode(document))
    assert (violation.field, violation.reason) == ("entry", "EMPTY_BUNDLE")


# --- read_document: entries ----------------------------------------------------------------------


def test_entry_paths_address_the_resource_in_the_bundle() -> None:
    document = read_document(encode(bundle([observation("R1"), observation("R2")])))
    third = document.entries[2]
    assert third.path == "entry[2].resource"
    assert third.field("subject.reference") == "entry[2].resource.subject.reference"
    assert third.resource["identifier"][0]["value"] == "R2"


@pytest.mark.parametrize("raw", ["urn:uuid:obs-0", 7, None, ["x"]])
def test_entry_that_is_not_an_object_is_flagged_alone(raw: Any) -> None:
    body = _bundle_of([patient(), raw, entry(observation("R2"), "urn:uuid:obs-2")])
    assert _shell(body) == {
        1: {("entry[1]", "BAD_ENTRY"), ("entry[1].resource", "MISSING_FIELD")},
    }
    document = read_document(body)
    assert document.entries[1] == Entry(1, "", "", {}, "entry[1].resource")
    assert document.entries[2].resource_type == "Observation"


@pytest.mark.parametrize(
    "raw",
    [
        {"fullUrl": "urn:uuid:obs-0"},
        {"fullUrl": "urn:uuid:obs-0", "resource": None},
        {"fullUrl": "urn:uuid:obs-0", "resource": [observation("R1")]},
        {"fullUrl": "urn:uuid:obs-0", "resource": "Observation"},
    ],
    ids=["absent", "null", "list", "string"],
)
def test_entry_without_a_resource_object_is_flagged(raw: dict[str, Any]) -> None:
    assert _shell(_bundle_of([patient(), raw])) == {1: {("entry[1].resource", "MISSING_FIELD")}}


def test_entry_with_an_empty_resource_object_is_flagged() -> None:
    shell = _shell(_bundle_of([patient(), {"fullUrl": "urn:uuid:x", "resource": {}}]))
    assert set(shell) == {1}
    assert shell[1] <= {
        ("entry[1].resource", "MISSING_FIELD"),
        ("entry[1].resource.resourceType", "UNSUPPORTED_RESOURCE_TYPE"),
    }


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Practitioner", "id": "pr1"},
        {"resourceType": "Encounter", "id": "e1", "status": "finished"},
        {"resourceType": "Bundle", "type": "batch"},
        {"id": "no-type"},
        {"resourceType": 7},
    ],
    ids=["Practitioner", "Encounter", "nested-Bundle", "no-resourceType", "non-string-type"],
)
def test_resource_types_outside_a_lab_feed_are_flagged(resource: dict[str, Any]) -> None:
    body = _bundle_of([patient(), {"fullUrl": "urn:uuid:x", "resource": resource}])
    assert _shell(body) == {1: {("entry[1].resource.resourceType", "UNSUPPORTED_RESOURCE_TYPE")}}


def test_context_resource_types_are_accepted() -> None:
    specimen = {"resourceType": "Specimen", "id": "s1"}
    report = {"resourceType": "DiagnosticReport", "id": "r1", "status": "final"}
    body = _bundle_of(
        [
            patient(),
            entry(specimen, "urn:uuid:s1"),
            entry(report, "urn:uuid:r1"),
            entry(observation("R1"), "urn:uuid:o1"),
        ]
    )
    document = read_document(body)
    assert document.shell_violations == {}
    assert [e.resource_type for e in document.entries] == [
        "Patient",
        "Specimen",
        "DiagnosticReport",
        "Observation",
    ]


def test_second_use_of_a_full_url_is_flagged_and_the_first_kept() -> None:
    body = _bundle_of(
        [
            patient(),
            entry(observation("R1"), "urn:uuid:obs-1"),
            entry(observation("R2"), "urn:uuid:obs-1"),
            entry(observation("R3"), "urn:uuid:obs-3"),
        ]
    )
    document = read_document(body)
    assert list(document.shell_violations) == [2]
    [violation] = document.shell_violations[2]
    assert (violation.field, violation.reason) == ("entry[2].fullUrl", "DUPLICATE_FULL_URL")
    assert "entry[1]" in violation.description
    # Both stay entries of the document (the second is only flagged).
    assert [e.full_url for e in document.entries] == [
        "urn:uuid:patient-1",
        "urn:uuid:obs-1",
        "urn:uuid:obs-1",
        "urn:uuid:obs-3",
    ]


def test_third_use_of_a_full_url_names_the_first_entry() -> None:
    body = _bundle_of([entry(observation(f"R{i}"), "urn:uuid:same") for i in range(3)])
    shell = read_document(body).shell_violations
    assert sorted(shell) == [1, 2]
    assert "entry[0]" in shell[2][0].description


def test_entries_without_full_url_are_not_duplicates() -> None:
    raw = [{"resource": observation("R1")}, {"resource": observation("R2")}]
    document = read_document(_bundle_of(raw))
    assert document.shell_violations == {}
    assert [e.full_url for e in document.entries] == ["", ""]


def test_full_url_that_is_not_a_string_is_flagged() -> None:
    body = _bundle_of([{"fullUrl": 17, "resource": observation("R1")}])
    assert _shell(body) == {0: {("entry[0].fullUrl", "BAD_TYPE")}}


def test_entry_resource_decimals_stay_decimal() -> None:
    body = _bundle_of([entry(observation("R1"), "urn:uuid:o1")]).replace(b"4.1", b"4.10")
    resource = read_document(body).entries[0].resource
    assert str(resource["valueQuantity"]["value"]) == "4.10"


# --- validate_resource over the HL7 examples -----------------------------------------------------


@pytest.mark.parametrize(("version", "path"), EXAMPLES, ids=EXAMPLE_IDS)
def test_hl7_example_validates_against_its_release(version: FhirVersion, path: Path) -> None:
    resource = _example(path)
    assert validate_resource(version, "Observation", resource, "") == []
    # Again, now from the memo of repeating elements; and the whole model agrees.
    assert validate_resource(version, "Observation", resource, "entry[0].resource") == []
    assert _fresh_fields(version, resource) == set()


def test_example_counts() -> None:
    # The packages hold 64 (R4) and 53 (R5) Observation examples; none may go missing.
    assert (len(R4_EXAMPLES), len(R5_EXAMPLES)) == (64, 53)


@pytest.mark.parametrize(("version", "path"), EXAMPLES, ids=EXAMPLE_IDS)
def test_hl7_example_is_unchanged_by_validation(version: FhirVersion, path: Path) -> None:
    resource = _example(path)
    before = copy.deepcopy(resource)
    validate_resource(version, "Observation", resource, "")
    assert resource == before


# --- validate_resource: memoized elements give what a fresh validation gives ---------------------

Mutation = Callable[[dict[str, Any]], None]


def _set_low_value(value: Any) -> Mutation:
    def mutate(resource: dict[str, Any]) -> None:
        resource["referenceRange"][0]["low"]["value"] = value

    return mutate


def _add_to_coding(resource: dict[str, Any]) -> None:
    resource["code"]["coding"][0]["colour"] = "blue"


def _empty_interpretation_code(resource: dict[str, Any]) -> None:
    resource["interpretation"][0]["coding"][0]["code"] = ""


def _numeric_subject_reference(resource: dict[str, Any]) -> None:
    resource["subject"]["reference"] = 5


def _two_problems(resource: dict[str, Any]) -> None:
    _set_low_value("low")(resource)
    _add_to_coding(resource)


def _problems_outside_memoized_elements(resource: dict[str, Any]) -> None:
    resource["valueQuantity"]["value"] = "high"
    resource["colour"] = "blue"


def _without_code(resource: dict[str, Any]) -> None:
    del resource["code"]


# (mutation of f001, expected (field, reason) pairs), read from the FHIR Observation definition.
BROKEN = [
    pytest.param(
        _set_low_value("3.1 mmol"),
        {("referenceRange[0].low.value", "INVALID_VALUE")},
        id="bad-decimal-in-range",
    ),
    pytest.param(
        _set_low_value(True), {("referenceRange[0].low.value", "INVALID_VALUE")}, id="bool-decimal"
    ),
    pytest.param(
        _add_to_coding, {("code.coding[0].colour", "UNKNOWN_ELEMENT")}, id="unknown-in-coding"
    ),
    pytest.param(
        _empty_interpretation_code,
        {("interpretation[0].coding[0].code", "INVALID_VALUE")},
        id="empty-code",
    ),
    pytest.param(
        _numeric_subject_reference, {("subject.reference", "INVALID_VALUE")}, id="subject-number"
    ),
    pytest.param(
        _two_problems,
        {
            ("referenceRange[0].low.value", "INVALID_VALUE"),
            ("code.coding[0].colour", "UNKNOWN_ELEMENT"),
        },
        id="two-problems",
    ),
    pytest.param(
        _problems_outside_memoized_elements,
        {("valueQuantity.value", "INVALID_VALUE"), ("colour", "UNKNOWN_ELEMENT")},
        id="outside-memo",
    ),
    pytest.param(_without_code, {("code", "MISSING_FIELD")}, id="missing-code"),
]


@pytest.mark.parametrize("version", [FhirVersion.R4, FhirVersion.R5])
@pytest.mark.parametrize(("mutate", "expected"), BROKEN)
def test_broken_copy_gives_the_same_violations_twice(
    version: FhirVersion,
    mutate: Mutation,
    expected: set[tuple[str, str]],
    empty_memo: None,
) -> None:
    resource = _f001(version)
    mutate(resource)
    first = validate_resource(version, "Observation", resource, "")
    second = validate_resource(version, "Observation", resource, "")
    assert _pairs(first) == expected
    assert second == first
    assert _fresh_fields(version, resource) == {field for field, _ in expected}


@pytest.mark.parametrize("version", [FhirVersion.R4, FhirVersion.R5])
@pytest.mark.parametrize(("mutate", "expected"), BROKEN)
def test_memoized_violation_is_placed_at_its_own_path(
    version: FhirVersion, mutate: Mutation, expected: set[tuple[str, str]]
) -> None:
    resource = _f001(version)
    mutate(resource)
    validate_resource(version, "Observation", resource, "")
    found = validate_resource(version, "Observation", resource, "entry[3].resource")
    assert _pairs(found) == {(f"entry[3].resource.{field}", reason) for field, reason in expected}


def test_memoized_range_is_reported_at_its_position(empty_memo: None) -> None:
    broken = _f001(FhirVersion.R4)
    _set_low_value("3.1 mmol")(broken)
    good_range = _f001(FhirVersion.R4)["referenceRange"][0]
    validate_resource(FhirVersion.R4, "Observation", broken, "")
    # The same bad range, now second of two and in another entry.
    other = _f001(FhirVersion.R4)
    other["referenceRange"] = [good_range, broken["referenceRange"][0]]
    found = validate_resource(FhirVersion.R4, "Observation", other, "entry[2].resource")
    assert _pairs(found) == {("entry[2].resource.referenceRange[1].low.value", "INVALID_VALUE")}


def test_valid_then_invalid_equal_looking_values_are_told_apart(empty_memo: None) -> None:
    # 1 == True in Python; a memo keyed by equality would take the boolean for the number.
    valid = _f001(FhirVersion.R4)
    _set_low_value(1)(valid)
    invalid = _f001(FhirVersion.R4)
    _set_low_value(True)(invalid)
    assert validate_resource(FhirVersion.R4, "Observation", valid, "") == []
    assert _pairs(validate_resource(FhirVersion.R4, "Observation", invalid, "")) == {
        ("referenceRange[0].low.value", "INVALID_VALUE")
    }


def test_memo_does_not_carry_a_result_across_releases(empty_memo: None) -> None:
    # ObservationReferenceRange.normalValue is new in R5: valid there, unknown in R4.
    r5 = _f001(FhirVersion.R5)
    r5["referenceRange"][0]["normalValue"] = {"text": "normal"}
    r4 = _f001(FhirVersion.R4)
    r4["referenceRange"][0]["normalValue"] = {"text": "normal"}
    assert validate_resource(FhirVersion.R5, "Observation", r5, "") == []
    assert _pairs(validate_resource(FhirVersion.R4, "Observation", r4, "")) == {
        ("referenceRange[0].normalValue", "UNKNOWN_ELEMENT")
    }


def test_key_order_of_an_element_does_not_change_its_violations(empty_memo: None) -> None:
    resource = _f001(FhirVersion.R4)
    _add_to_coding(resource)
    reordered = copy.deepcopy(resource)
    reordered["code"]["coding"][0] = dict(reversed(list(resource["code"]["coding"][0].items())))
    first = validate_resource(FhirVersion.R4, "Observation", resource, "")
    second = validate_resource(FhirVersion.R4, "Observation", reordered, "")
    assert _pairs(first) == _pairs(second) == {("code.coding[0].colour", "UNKNOWN_ELEMENT")}


def test_wrong_shape_of_a_memoized_element_is_reported_by_the_resource_model() -> None:
    resource = _f001(FhirVersion.R4)
    resource["category"] = {"text": "Laboratory"}  # must be a list
    assert _pairs(validate_resource(FhirVersion.R4, "Observation", resource, "")) == {
        ("category", "INVALID_VALUE")
    }


def test_observation_status_binding_is_left_to_the_normalizer() -> None:
    # fhir.resources checks the code's syntax only; "done" is not an ObservationStatus.
    resource = _f001(FhirVersion.R4)
    resource["status"] = "done"
    assert validate_resource(FhirVersion.R4, "Observation", resource, "") == []
