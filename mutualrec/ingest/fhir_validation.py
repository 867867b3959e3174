"""Validation of single FHIR resources against the ``fhir.resources`` models of R4 or R5.

``fhir.resources`` checks structure and primitive syntax (types, choice fields, unknown
elements, date formats); it does not check bindings such as Observation.status, which the
normalizer does. Its errors are turned into violations addressed by document path.
"""

from __future__ import annotations

import enum
import importlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from mutualrec.violations import Violation


class FhirVersion(enum.Enum):
    """The FHIR release a document is written in."""

    R4 = "R4"
    R5 = "R5"


# fhir.resources models R5 at the top level; R4B is the R4-compatible release.
_PACKAGES = {FhirVersion.R4: "fhir.resources.R4B", FhirVersion.R5: "fhir.resources"}
_models: dict[tuple[FhirVersion, str], type[BaseModel]] = {}


def _model(version: FhirVersion, resource_type: str, module_name: str = "") -> type[BaseModel]:
    key = (version, resource_type)
    if key not in _models:
        module_name = module_name or resource_type.lower()
        module = importlib.import_module(f"{_PACKAGES[version]}.{module_name}")
        model = getattr(module, resource_type)
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        _models[key] = model
    return _models[key]


def _path(prefix: str, loc: Sequence[int | str]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = "resourceType" if part == "resource_type" else part
            path = f"{path}.{name}" if path else name
    return path


def _is_missing(error: dict[str, Any]) -> bool:
    # fhir.resources reports a missing required primitive as a value error, not "missing".
    return error["type"] == "missing" or str(error["msg"]).endswith("is required.")


def _description(error: dict[str, Any]) -> str:
    kind = error["type"]
    if _is_missing(error):
        return "required, missing"
    if kind == "extra_forbidden":
        return "not an element of this resource in this FHIR version"
    if kind == "json_invalid" or kind.endswith("_type"):
        return "has the wrong JSON type for this element"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _reason(error: dict[str, Any]) -> str:
    if _is_missing(error):
        return "MISSING_FIELD"
    return "UNKNOWN_ELEMENT" if error["type"] == "extra_forbidden" else "INVALID_VALUE"


def _violations(exc: ValidationError, path: str) -> list[Violation]:
    return [
        Violation(_path(path, error["loc"]), _description(dict(error)), _reason(dict(error)))
        for error in exc.errors(include_url=False, include_input=False)
    ]


@dataclass(frozen=True, slots=True)
class _Element:
    """An element validated on its own, by its own FHIR type, once per distinct value."""

    module: str
    type_name: str
    repeats: bool
    # A required element is replaced by this minimal valid value in the resource's own check.
    stand_in: dict[str, Any] | None = None


# The elements that repeat across a LIS feed (the same test codes, categories, reference ranges
# and interpretations on thousands of results) and cost most of the validation time.
_MEMOIZED: dict[str, dict[str, _Element]] = {
    "Observation": {
        "code": _Element("codeableconcept", "CodeableConcept", False, {"text": "-"}),
        "category": _Element("codeableconcept", "CodeableConcept", True),
        "interpretation": _Element("codeableconcept", "CodeableConcept", True),
        "referenceRange": _Element("observation", "ObservationReferenceRange", True),
        "subject": _Element("reference", "Reference", False),
        "specimen": _Element("reference", "Reference", False),
    },
    "DiagnosticReport": {
        "code": _Element("codeableconcept", "CodeableConcept", False, {"text": "-"}),
        "category": _Element("codeableconcept", "CodeableConcept", True),
    },
}
_MEMO_LIMIT = 100_000
_memo: dict[tuple[FhirVersion, str, str], list[Violation]] = {}
_memo_lock = threading.Lock()


def _memo_key(value: Any) -> str:
    # repr, not JSON: fast, and Decimal('4.1') stays distinct from the string '4.1', as FHIR
    # needs. Key order is part of it, which only costs a miss when a sender reorders keys.
    return repr(value)


def _element_violations(
    version: FhirVersion, element: _Element, value: dict[str, Any], path: str
) -> list[Violation]:
    """Violations of one element value at ``path``, computed once per distinct value."""
    key = (version, element.type_name, _memo_key(value))
    found = _memo.get(key)
    if found is None:
        try:
            _model(version, element.type_name, element.module).model_validate(value)
            found = []
        except ValidationError as exc:
            found = _violations(exc, "")
        with _memo_lock:
            if len(_memo) >= _MEMO_LIMIT:
                _memo.clear()
            _memo[key] = found
    return [
        Violation(f"{path}.{v.field}" if v.field else path, v.description, v.reason) for v in found
    ]


def validate_resource(
    version: FhirVersion, resource_type: str, resource: dict[str, Any], path: str
) -> list[Violation]:
    """Violations of ``resource`` against its FHIR model; ``path`` prefixes every field.

    Repeating elements are checked apart by their own types, memoized; the rest of the resource
    (required elements, unknown elements, choice types) is checked by the resource's model.
    """
    found: list[Violation] = []
    reduced = resource
    for name, element in _MEMOIZED.get(resource_type, {}).items():
        value = resource.get(name)
        items = value if element.repeats else [value]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            continue  # not the element's JSON shape: the resource's model reports it
        if reduced is resource:
            reduced = dict(resource)
        del reduced[name]
        if element.stand_in is not None:
            reduced[name] = element.stand_in
        prefix = f"{path}.{name}" if path else name
        for position, item in enumerate(items):
            where = f"{prefix}[{position}]" if element.repeats else prefix
            found.extend(_element_violations(version, element, item, where))
    try:
        _model(version, resource_type).model_validate(reduced)
    except ValidationError as exc:
        found.extend(_violations(exc, path))
    return found
