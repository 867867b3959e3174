"""The synthetic LIS feed of tests/fhir_factory.py: valid FHIR R4, valid IDs, deterministic."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

import pytest

from mutualrec.identity import parse_identity
from tests.fhir_factory import (
    ANALYTES,
    CHINA,
    RESIDENT_ID_SYSTEM,
    SyntheticPatient,
    bundle_bytes,
    make_bundle,
    report_number,
    single_observation,
)

# fhir.resources is what the server validates with, but not a dev dependency of the project.
_R4B = "fhir.resources.R4B"
Bundle = pytest.importorskip(f"{_R4B}.bundle").Bundle
MODELS: dict[str, Any] = {
    name: getattr(pytest.importorskip(f"{_R4B}.{name.lower()}"), name)
    for name in ("Observation", "Patient", "Specimen", "DiagnosticReport")
}

NOW = dt.datetime(2026, 11, 2, 9, 30, tzinfo=CHINA)
# Written out by hand from the UCUM specification: case matters (mmol/L, not mmol/l).
UCUM_UNITS = {
    "%",
    "10*9/L",
    "10*12/L",
    "U/L",
    "fL",
    "g/L",
    "m[IU]/L",
    "mg/L",
    "mm/h",
    "mmol/L",
    "pg",
    "pg/mL",
    "pmol/L",
    "s",
    "ug/L",
    "umol/L",
    "{INR}",
}
REQUIRED_LOINC = {
    "2823-3", "2951-2", "2075-0", "14682-9", "22664-7", "14749-6", "1742-6", "1920-8",
    "14631-6", "14629-0", "1751-7", "2885-2", "14647-2", "14927-8", "14646-4", "4548-4",
    "3016-3", "1988-5", "2276-4", "14933-6", "6690-2", "718-7", "777-3",
}  # fmt: skip


def _resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type
    ]


def _observation_identifiers(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (o["identifier"][0]["system"], o["identifier"][0]["value"])
        for o in _resources(bundle, "Observation")
    ]


@pytest.mark.parametrize("bundle_type", ["batch", "transaction"])
def test_every_resource_is_valid_r4(bundle_type: str) -> None:
    bundle = make_bundle(11, observations=250, bundle_type=bundle_type, now=NOW)
    Bundle.model_validate(bundle)
    kinds: Counter[str] = Counter()
    for entry in bundle["entry"]:
        resource = entry["resource"]
        MODELS[resource["resourceType"]].model_validate(resource)
        kinds[resource["resourceType"]] += 1
        assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
        assert entry["request"] == {"method": "POST", "url": resource["resourceType"]}
    assert set(kinds) == set(MODELS)
    assert kinds["Specimen"] == kinds["DiagnosticReport"]


def test_single_observation_is_valid_and_names_its_patient() -> None:
    observation = single_observation(5, now=NOW)
    MODELS["Observation"].model_validate(observation)
    subject = observation["subject"]["identifier"]
    assert subject["system"] == RESIDENT_ID_SYSTEM
    assert parse_identity("RESIDENT_ID_CARD", subject["value"]).number == subject["value"]


@pytest.mark.parametrize("count", [1, 9, 10, 21, 100, 1000])
def test_observation_count_is_exact(count: int) -> None:
    bundle = make_bundle(count, observations=count, now=NOW)
    assert len(_resources(bundle, "Observation")) == count


def test_reports_hold_10_to_20_observations_and_reference_them() -> None:
    bundle = make_bundle(3, observations=1000, now=NOW)
    full_urls = {e["fullUrl"] for e in bundle["entry"]}
    assert len(full_urls) == len(bundle["entry"])
    referenced: list[str] = []
    for report in _resources(bundle, "DiagnosticReport"):
        assert 10 <= len(report["result"]) <= 20
        referenced += [r["reference"] for r in report["result"]]
    observations = _resources(bundle, "Observation")
    assert sorted(referenced) == sorted(f"urn:uuid:{o['id']}" for o in observations)
    for observation in observations:
        assert observation["subject"]["reference"] in full_urls
        assert observation["specimen"]["reference"] in full_urls


def test_patients_per_bundle() -> None:
    bundle = make_bundle(4, observations=100, now=NOW, patients_per_bundle=5)
    assert len(_resources(bundle, "Patient")) == 5


def test_resident_ids_have_valid_check_digits() -> None:
    numbers = [SyntheticPatient.from_seed(seed).resident_id for seed in range(500)]
    numbers += [
        p["identifier"][0]["value"]
        for p in _resources(make_bundle(8, observations=300, now=NOW), "Patient")
    ]
    for number in numbers:
        assert number.startswith("5001")
        assert 1940 <= int(number[6:10]) <= 2020
        assert parse_identity("RESIDENT_ID_CARD", number).number == number


def test_patient_sex_matches_the_17th_digit() -> None:
    for seed in range(50):
        patient = SyntheticPatient.from_seed(seed)
        assert (patient.sex == "male") == (int(patient.resident_id[16]) % 2 == 1)
        assert patient.resident_id[6:14] == patient.birth_date.strftime("%Y%m%d")


def test_identifiers_are_unique_across_seeds() -> None:
    seen: list[tuple[str, str]] = []
    for seed in range(20):
        seen += _observation_identifiers(make_bundle(seed, observations=100, now=NOW))
    seen += [
        (o["identifier"][0]["system"], o["identifier"][0]["value"])
        for o in (single_observation(seed, now=NOW) for seed in range(20))
    ]
    assert len(seen) == len(set(seen)) == 20 * 100 + 20


def test_report_numbers_do_not_collide() -> None:
    assert report_number(1, 23) != report_number(12, 3)
    with pytest.raises(ValueError, match="below 100000"):
        report_number(1, 100_000)


def test_same_seed_gives_identical_bytes() -> None:
    first = bundle_bytes(42, observations=300, now=NOW)
    assert first == bundle_bytes(42, observations=300, now=NOW)
    assert first != bundle_bytes(43, observations=300, now=NOW)
    assert json.loads(first) == make_bundle(42, observations=300, now=NOW)


def test_bytes_are_compact_utf8() -> None:
    body = bundle_bytes(1, observations=20, now=NOW)
    text = _resources(json.loads(body), "Observation")[0]["code"]["text"]
    assert text.encode("utf-8") in body
    assert b"\\u" not in body
    assert b'", "' not in body
    assert b'": ' not in body


def test_times_are_in_the_past_in_china_time() -> None:
    bundle = make_bundle(9, observations=200, now=NOW)
    for observation in _resources(bundle, "Observation"):
        effective = dt.datetime.fromisoformat(observation["effectiveDateTime"])
        issued = dt.datetime.fromisoformat(observation["issued"])
        assert observation["issued"].endswith("+08:00")
        assert effective < issued < NOW
        assert NOW - effective < dt.timedelta(days=31)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_bundle(1, observations=1, now=dt.datetime(2026, 11, 1, 8, 0))


def test_units_are_ucum_and_interpretations_follow_the_range() -> None:
    assert {a.unit for a in ANALYTES} <= UCUM_UNITS
    assert {a.loinc for a in ANALYTES} >= REQUIRED_LOINC
    assert len({a.loinc for a in ANALYTES}) == len(ANALYTES) >= 40
    for observation in _resources(make_bundle(2, observations=1000, now=NOW), "Observation"):
        quantity = observation["valueQuantity"]
        assert quantity["unit"] == quantity["code"] in UCUM_UNITS
        assert quantity["value"] > 0
        bounds = observation["referenceRange"][0]
        flag = observation["interpretation"][0]["coding"][0]["code"]
        if "low" in bounds and quantity["value"] < bounds["low"]["value"]:
            assert flag == "L"
        elif "high" in bounds and quantity["value"] > bounds["high"]["value"]:
            assert flag == "H"
        else:
            assert flag == "N"
