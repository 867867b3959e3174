"""Validation of single FHIR resources against the ``fhir.resources`` models of R4 or R5.

``fhir.resources`` checks structure and primitive syntax (types, choice fields, unknown
elements, date formats); it does not check bindings such as Observation.status, which the
normalizer does. Its errors are turned into violations addressed by document path.
"""

from __future__ import annotations

import functools
import importlib
import threading
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import SchemaValidator

from mutualrec.ingest.fhir_version import FhirVersion
from mutualrec.violations import Violation

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


@functools.cache
def is_fhir_resource_type(version: FhirVersion, resource_type: str) -> bool:
    """Whether FHIR ``version`` defines a resource type of this name."""
    package = importlib.import_module(_PACKAGES[version])
    try:
        package.get_fhir_model_class(resource_type)
    except (ValueError, KeyError, AttributeError):
        return False
    return True


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


# --- Whole resources by skeleton ------------------------------------------------------------------
#
# Most of what remains of a result's validation is the resource model itself: its Python
# validators run for every Observation although Observations of one test differ only in a few
# values (ids, identifier values, references, times, the measured value). Those values are
# validated each by the core schema its model applies to that field, and put aside; the rest,
# with each put-aside value replaced by one fixed valid stand-in, is the resource's skeleton,
# validated by the whole resource model once per distinct skeleton.
#
# Why a valid skeleton and valid values make a valid resource: a model's fields are validated
# independently of each other; what a FHIR model checks across fields (required elements,
# one value per choice element, no null in a list of elements) looks only at whether a value
# is null, and neither the stand-ins nor accepted values are null (both checked here);
# elements are validated by their own model, so the argument holds level by level. Whenever
# anything is not valid, the resource is validated the usual way, so violations are unchanged.

_TIME_STAND_IN = "2000-01-01T00:00:00Z"
# Per resource type: the element paths (by JSON name; a list element applies to each item)
# whose values are put aside, and the stand-in each is replaced with in the skeleton.
_VOLATILE: dict[str, dict[str, Any]] = {
    "Observation": {
        "id": "x",
        "identifier.value": "x",
        "basedOn.reference": "x",
        "subject.reference": "x",
        "encounter.reference": "x",
        "effectiveDateTime": _TIME_STAND_IN,
        "issued": _TIME_STAND_IN,
        "performer.reference": "x",
        "valueQuantity.value": Decimal(1),
        "specimen.reference": "x",
    },
    "DiagnosticReport": {
        "id": "x",
        "identifier.value": "x",
        "basedOn.reference": "x",
        "subject.reference": "x",
        "encounter.reference": "x",
        "effectiveDateTime": _TIME_STAND_IN,
        "issued": _TIME_STAND_IN,
        "performer.reference": "x",
        "specimen.reference": "x",
        "result.reference": "x",
    },
    "Specimen": {
        "id": "x",
        "identifier.value": "x",
        "accessionIdentifier.value": "x",
        "subject.reference": "x",
        "receivedTime": _TIME_STAND_IN,
        "request.reference": "x",
        "collection.collectedDateTime": _TIME_STAND_IN,
    },
    "Patient": {
        "id": "x",
        "identifier.value": "x",
        "birthDate": "2000-01-01",
    },
}


@dataclass(frozen=True, slots=True)
class _Step:
    """One element of a skeleton plan: a put-aside value (``check``) or elements within."""

    repeats: bool
    check: SchemaValidator | None = None
    stand_in: Any = None
    inner: dict[str, _Step] | None = None


_plans: dict[tuple[FhirVersion, str], dict[str, _Step] | None] = {}


def _model_fields_schema(model: type[BaseModel]) -> tuple[dict[str, Any], Any]:
    """The core schemas of a model's fields (by field name) and the model's core config."""
    schema: Any = model.__pydantic_core_schema__
    config = None
    while schema["type"] != "model-fields":
        if schema["type"] == "model":
            config = schema.get("config")
        schema = schema["schema"]
    return schema["fields"], config


def _field_named(model: type[BaseModel], json_name: str) -> tuple[str, Any]:
    for name, info in model.model_fields.items():
        if (info.alias or name) == json_name:
            return name, info.annotation
    raise LookupError(f"{model.__name__} has no element {json_name}")


def _annotation_parts(annotation: Any) -> list[Any]:
    parts = [annotation]
    for argument in typing.get_args(annotation):
        parts.extend(_annotation_parts(argument))
    return parts


def _element_model(annotation: Any) -> type[BaseModel]:
    for part in _annotation_parts(annotation):
        get_model = getattr(part, "get_model_klass", None)
        if get_model is not None:
            model = get_model()
            assert isinstance(model, type)
            assert issubclass(model, BaseModel)
            return model
    raise LookupError(f"{annotation} is not a FHIR element type")


def _has_reference(schema: Any) -> bool:
    if isinstance(schema, dict):
        return schema.get("type") == "definition-ref" or any(
            _has_reference(v) for v in schema.values()
        )
    if isinstance(schema, list):
        return any(_has_reference(v) for v in schema)
    return False


def _leaf_check(model: type[BaseModel], name: str, stand_in: Any) -> SchemaValidator:
    """The model's own core schema for field ``name``, under the model's config."""
    fields, config = _model_fields_schema(model)
    schema = fields[name]["schema"]
    if _has_reference(schema):
        raise LookupError(f"{model.__name__}.{name} is not a self-contained schema")
    check = SchemaValidator(schema, config)
    if check.validate_python(stand_in) is None:
        raise ValueError(f"{stand_in!r} is not a valid {model.__name__}.{name}")
    return check


def _plan(version: FhirVersion, resource_type: str) -> dict[str, _Step] | None:
    key = (version, resource_type)
    if key not in _plans:
        volatile = _VOLATILE.get(resource_type)
        plan: dict[str, _Step] | None = None
        if volatile is not None:
            plan = {}
            for path, stand_in in volatile.items():
                _add_step(plan, _model(version, resource_type), path.split("."), stand_in)
        _plans[key] = plan
    return _plans[key]


def _add_step(
    plan: dict[str, _Step], model: type[BaseModel], path: list[str], stand_in: Any
) -> None:
    name, annotation = _field_named(model, path[0])
    repeats = any(typing.get_origin(part) is list for part in _annotation_parts(annotation))
    if len(path) == 1:
        plan[path[0]] = _Step(repeats, _leaf_check(model, name, stand_in), stand_in)
        return
    step = plan.setdefault(path[0], _Step(repeats, inner={}))
    assert step.inner is not None
    _add_step(step.inner, _element_model(annotation), path[1:], stand_in)


def _skeleton(node: dict[str, Any], plan: dict[str, _Step], values: list[Any]) -> dict[str, Any]:
    """``node`` with its volatile values replaced; each replaced (check, value) is appended."""
    copy = node
    for name, step in plan.items():
        value = node.get(name)
        if value is None:
            continue  # absent or null: stays as it is, so the model sees what was sent
        if step.check is not None:
            values.append((step.check, value))
            replaced = step.stand_in
        elif step.repeats:
            if not isinstance(value, list):
                continue
            assert step.inner is not None
            replaced = [
                _skeleton(item, step.inner, values) if isinstance(item, dict) else item
                for item in value
            ]
        elif isinstance(value, dict):
            assert step.inner is not None
            replaced = _skeleton(value, step.inner, values)
        else:
            continue
        if copy is node:
            copy = dict(node)
        copy[name] = replaced
    return copy


# A feed has a few skeletons per test code; a key is the repr of a whole resource (about 1 KB).
_SKELETON_LIMIT = 10_000
_skeletons: dict[tuple[FhirVersion, str, str], bool] = {}


def _valid_by_skeleton(version: FhirVersion, resource_type: str, resource: dict[str, Any]) -> bool:
    """True when ``resource`` is certainly valid; False when the usual check must decide."""
    plan = _plan(version, resource_type)
    if plan is None:
        return False
    values: list[Any] = []
    skeleton = _skeleton(resource, plan, values)
    for check, value in values:
        try:
            if check.validate_python(value) is None:
                return False
        except ValidationError:
            return False
    key = (version, resource_type, _memo_key(skeleton))
    valid = _skeletons.get(key)
    if valid is None:
        try:
            _model(version, resource_type).model_validate(skeleton)
            valid = True
        except ValidationError:
            valid = False
        with _memo_lock:
            if len(_skeletons) >= _SKELETON_LIMIT:
                _skeletons.clear()
            _skeletons[key] = valid
    return valid


def validate_resource(
    version: FhirVersion, resource_type: str, resource: dict[str, Any], path: str
) -> list[Violation]:
    """Violations of ``resource`` against its FHIR model; ``path`` prefixes every field.

    A resource whose skeleton is known valid and whose other values are valid is valid as a
    whole. Otherwise repeating elements are checked apart by their own types, memoized; the rest
    of the resource (required elements, unknown elements, choice types) by the resource's model.
    """
    if _valid_by_skeleton(version, resource_type, resource):
        return []
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
