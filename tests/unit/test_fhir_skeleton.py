"""Validation by skeleton (fhir_validation): a shortcut that must never change a verdict.

A resource is taken as valid without its model when its skeleton (the resource with ids,
identifier values, references, times and measured values replaced by stand-ins) is valid and
each replaced value passes the core schema of its field. These tests check that claim against
the fhir.resources models themselves, value by value and resource by resource.
"""

from __future__ import annotations

import copy
import datetime as dt
import importlib
import random
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from mutualrec.ingest import fhir_validation
from mutualrec.ingest.fhir_document import parse_json
from mutualrec.ingest.fhir_validation import validate_resource
from mutualrec.ingest.fhir_version import FhirVersion
from tests.fhir_factory import bundle_bytes, make_bundle

NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
PACKAGES = {FhirVersion.R4: "fhir.resources.R4B", FhirVersion.R5: "fhir.resources"}
VERSIONS = [FhirVersion.R4, FhirVersion.R5]
# Values of every JSON shape, valid and invalid for ids, strings, times and decimals.
PROBES: list[Any] = [
    "x",
    "A-1.b",
    "",
    " ",
    " padded ",
    "two words",
    "urn:uuid:0d7f6a5e-1b9e-5c1e-9d0e-3f1c2b4a5d6e",
    "Patient/p1",
    "a" * 300,
    "钾",
    "line\nbreak",
    "2026",
    "2026-11",
    "2026-11-20",
    "2026-11-20T08:00:00+08:00",
    "2026-11-20T08:00:00.123Z",
    "2026-11-20T08:00:00",
    "2026-11-20T08:00+08:00",
    "2026-11-20T24:00:00Z",
    "2016-12-31T23:59:60Z",
    "2026-13-01",
    "2026-02-30",
    "20261120",
    "4.10",
    "1e5",
    0,
    7,
    -3,
    10**30,
    Decimal("4.10"),
    Decimal("-0.0"),
    Decimal("1E-22"),
    Decimal("1E+5"),
    float("nan"),
    True,
    False,
    [],
    ["x"],
    {},
    {"value": "x"},
]


def _model(version: FhirVersion, resource_type: str) -> type[BaseModel]:
    module = importlib.import_module(f"{PACKAGES[version]}.{resource_type.lower()}")
    model = getattr(module, resource_type)
    assert isinstance(model, type)
    assert issubclass(model, BaseModel)
    return model


def _valid(version: FhirVersion, resource_type: str, resource: dict[str, Any]) -> bool:
    try:
        _model(version, resource_type).model_validate(resource)
    except ValidationError:
        return False
    return True


def _resources() -> dict[str, dict[str, Any]]:
    """A valid resource of each type the plans cover, every volatile element present."""
    bundle = make_bundle(3, observations=12, now=NOW)
    found = {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}
    observation = found["Observation"]
    observation["basedOn"] = [{"reference": "ServiceRequest/o1"}]
    observation["encounter"] = {"reference": "Encounter/e1"}
    observation["performer"] = [{"reference": "Practitioner/p1"}]
    report = found["DiagnosticReport"]
    report["basedOn"] = [{"reference": "ServiceRequest/o1"}]
    report["encounter"] = {"reference": "Encounter/e1"}
    report["effectiveDateTime"] = "2026-11-20T08:00:00+08:00"
    report["performer"] = [{"reference": "Organization/lab"}]
    report["specimen"] = [{"reference": "urn:uuid:s1"}]
    specimen = found["Specimen"]
    specimen["identifier"] = [{"value": "S-1"}]
    specimen["accessionIdentifier"] = {"value": "A-1"}
    specimen["subject"] = {"reference": "Patient/p1"}
    specimen["receivedTime"] = "2026-11-20T09:00:00+08:00"
    specimen["request"] = [{"reference": "ServiceRequest/o1"}]
    found["Patient"]["birthDate"] = "1968-03-15"
    return found


def _set(resource: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """A deep copy of ``resource`` with every value at ``path`` (lists: each item) replaced."""
    changed = copy.deepcopy(resource)
    nodes: list[Any] = [changed]
    for name in path[:-1]:
        nodes = [n[name] for n in nodes]
        nodes = [i for n in nodes for i in (n if isinstance(n, list) else [n])]
    for node in nodes:
        node[path[-1]] = value
    return changed


CASES = [
    (version, resource_type, path)
    for version in VERSIONS
    for resource_type, paths in fhir_validation._VOLATILE.items()
    for path in paths
]


def test_every_volatile_element_is_in_the_test_resources() -> None:
    resources = _resources()
    for _version, resource_type, path in CASES:
        nodes: list[Any] = [resources[resource_type]]
        for name in path.split("."):
            nodes = [n[name] for n in nodes]
            nodes = [i for n in nodes for i in (n if isinstance(n, list) else [n])]
        assert nodes, (resource_type, path)


@pytest.mark.parametrize(("version", "resource_type", "path"), CASES)
def test_a_value_passes_its_check_only_if_the_model_takes_it(
    version: FhirVersion, resource_type: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fhir_validation, "_skeletons", {})
    base = _resources()[resource_type]
    assert _valid(version, resource_type, base)
    for probe in PROBES:
        resource = _set(base, path.split("."), probe)
        shortcut = fhir_validation._valid_by_skeleton(version, resource_type, resource)
        whole = _valid(version, resource_type, resource)
        # The shortcut may decline a valid resource (the usual check then decides); it must
        # never pass an invalid one.
        assert not shortcut or whole, (path, probe)
        # And for these well-formed resources it declines only what the model refuses.
        assert shortcut == whole, (path, probe)


@pytest.mark.parametrize("version", VERSIONS)
def test_feed_resources_give_the_same_violations_with_and_without_skeletons(
    version: FhirVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fhir_validation, "_skeletons", {})
    rng = random.Random(17)
    document = parse_json(bundle_bytes(11, observations=60, now=NOW))
    resources = [(e["resource"]["resourceType"], e["resource"]) for e in document["entry"]]
    mutants: list[tuple[str, dict[str, Any]]] = []
    for resource_type, resource in resources:
        mutants.append((resource_type, resource))
        for path in fhir_validation._VOLATILE[resource_type]:
            steps = path.split(".")
            try:
                mutants.append((resource_type, _set(resource, steps, rng.choice(PROBES))))
            except (KeyError, TypeError):
                continue  # not in this resource
    checked = 0
    for resource_type, resource in mutants:
        with_skeletons = validate_resource(version, resource_type, resource, "entry[1].resource")
        with monkeypatch.context() as patched:
            patched.setattr(fhir_validation, "_valid_by_skeleton", lambda *_: False)
            without = validate_resource(version, resource_type, resource, "entry[1].resource")
        assert with_skeletons == without
        assert (with_skeletons == []) == _valid(version, resource_type, resource)
        checked += 1
    assert checked > 200


def test_a_skeleton_is_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fhir_validation, "_skeletons", {})
    document = parse_json(bundle_bytes(5, observations=40, now=NOW))
    observations = [
        e["resource"] for e in document["entry"] if e["resource"]["resourceType"] == "Observation"
    ]
    for resource in observations:
        assert validate_resource(FhirVersion.R4, "Observation", resource, "") == []
    # One skeleton per analyte and interpretation, not one per Observation.
    assert 0 < len(fhir_validation._skeletons) < len(observations)
    assert all(fhir_validation._skeletons.values())


def test_an_invalid_skeleton_still_reports_every_violation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fhir_validation, "_skeletons", {})
    resource = _resources()["Observation"]
    resource["colour"] = "blue"
    resource["issued"] = "yesterday"
    found = validate_resource(FhirVersion.R4, "Observation", resource, "entry[4].resource")
    assert {(v.field, v.reason) for v in found} == {
        ("entry[4].resource.colour", "UNKNOWN_ELEMENT"),
        ("entry[4].resource.issued", "INVALID_VALUE"),
    }
