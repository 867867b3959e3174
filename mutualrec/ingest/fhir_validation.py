"""Validation of single FHIR resources against the ``fhir.resources`` models of R4 or R5.

``fhir.resources`` checks structure and primitive syntax (types, choice fields, unknown
elements, date formats); it does not check bindings such as Observation.status, which the
normalizer does. Its errors are turned into violations addressed by document path.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Sequence
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


def _model(version: FhirVersion, resource_type: str) -> type[BaseModel]:
    key = (version, resource_type)
    if key not in _models:
        module = importlib.import_module(f"{_PACKAGES[version]}.{resource_type.lower()}")
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


def validate_resource(
    version: FhirVersion, resource_type: str, resource: dict[str, Any], path: str
) -> list[Violation]:
    """Violations of ``resource`` against its FHIR model; ``path`` prefixes every field."""
    try:
        _model(version, resource_type).model_validate(resource)
    except ValidationError as exc:
        return [
            Violation(_path(path, error["loc"]), _description(dict(error)), _reason(dict(error)))
            for error in exc.errors(include_url=False, include_input=False)
        ]
    return []
