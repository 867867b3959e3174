"""The FHIR releases a lab document may be written in."""

from __future__ import annotations

import enum


class FhirVersion(enum.Enum):
    """The FHIR release a document is written in."""

    R4 = "R4"
    R5 = "R5"
