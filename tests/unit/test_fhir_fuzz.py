"""Fuzzing the FHIR reader: whatever bytes arrive, the answer is a refusal with field
violations or a prepared batch whose every entry has an outcome; never an exception."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mutualrec.ingest.fhir_version import FhirVersion
from mutualrec.ingest.lab_ingest import PreparedBatch, Refusal, prepare_batch
from tests.fhir_docs import bundle, encode, observation

RECEIVED = dt.datetime(2026, 11, 22, 6, 0, tzinfo=dt.UTC)
SECRET = b"fuzz-secret-" + b"x" * 32
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def _check(body: bytes, version: FhirVersion = FhirVersion.R4) -> PreparedBatch | Refusal:
    answer = prepare_batch(body, version, RECEIVED, SECRET)
    if isinstance(answer, Refusal):
        assert answer.violations, "a refusal names at least one field"
        assert all(v.field and v.reason for v in answer.violations)
    else:
        assert isinstance(answer, PreparedBatch)
        outcomes = len(answer.settled) + len(answer.pending)
        assert outcomes >= 1
    return answer


@FUZZ
@given(st.binary(max_size=2000))
def test_any_bytes(body: bytes) -> None:
    _check(body)


@FUZZ
@given(json_values, st.sampled_from(list(FhirVersion)))
def test_any_json(document: Any, version: FhirVersion) -> None:
    _check(json.dumps(document).encode("utf-8"), version)


def test_a_nul_under_an_empty_key_names_its_field() -> None:
    # Found by test_any_json: the violation's field path was empty.
    answer = _check(b'{"": "\\u0000"}')

    assert isinstance(answer, Refusal)
    assert [(v.field, v.reason) for v in answer.violations] == [('""', "UNSTORABLE_TEXT")]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*path, index))
    return found


def _mutate(document: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    if not path:
        return value if action == "replace" else document
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    return document


VALID = bundle([observation("F-1"), observation("F-2", loinc="2951-2"), observation("F-3")])


@FUZZ
@given(
    st.data(),
    st.lists(st.sampled_from(["delete", "replace", "duplicate"]), min_size=1, max_size=4),
    st.sampled_from(["batch", "transaction"]),
)
def test_mutations_of_a_valid_bundle(data: st.DataObject, actions: list[str], kind: str) -> None:
    document = copy.deepcopy(VALID)
    document["type"] = kind
    for action in actions:
        paths = _paths(document)
        path = data.draw(st.sampled_from(paths))
        value = data.draw(json_values)
        document = _mutate(document, path, action, value)
    _check(encode(document) if isinstance(document, dict) else json.dumps(document).encode())


def test_the_unmutated_bundle_is_accepted_whole() -> None:
    answer = _check(encode(VALID))

    assert isinstance(answer, PreparedBatch)
    assert len(answer.pending) == 3
