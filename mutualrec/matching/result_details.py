"""What a doctor sees of a recognized result: the typed form of the ``detail`` the recognition
index stores beside each row (JSON text there, written once per result at ingest)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LabDetail:
    """A lab result as reported, and in the item's canonical unit when converted."""

    loinc: str = ""
    display: str = ""
    value: str = ""
    unit: str = ""
    reference_range: str = ""
    interpretation: str = ""
    canonical_value: str = ""
    canonical_unit: str = ""
    unit_note: str = ""


@dataclass(frozen=True, slots=True)
class ImagingDetail:
    """An imaging study, enough to name it and open it."""

    study_instance_uid: str = ""
    accession_number: str = ""
    modalities: str = ""
    body_parts: str = ""
    contrast: bool = False
    description: str = ""
    instance_count: int = 0


def read_detail(kind: str, stored: str) -> LabDetail | ImagingDetail:
    """The detail of a row of ``kind`` ("lab" or imaging) from its stored text; what a row
    written by an older version lacks reads as empty."""
    fields: dict[str, Any] = json.loads(stored or "{}")
    if kind == "lab":
        return LabDetail(
            loinc=str(fields.get("loinc", "")),
            display=str(fields.get("display", "")),
            value=str(fields.get("value", "")),
            unit=str(fields.get("unit", "")),
            reference_range=str(fields.get("range", "")),
            interpretation=str(fields.get("interpretation", "")),
            canonical_value=str(fields.get("canonical_value", "")),
            canonical_unit=str(fields.get("canonical_unit", "")),
            unit_note=str(fields.get("unit_note", "")),
        )
    return ImagingDetail(
        study_instance_uid=str(fields.get("study_instance_uid", "")),
        accession_number=str(fields.get("accession_number", "")),
        modalities=str(fields.get("modalities", "")),
        body_parts=str(fields.get("body_parts", "")),
        contrast=bool(fields.get("contrast", False)),
        description=str(fields.get("description", "")),
        instance_count=int(fields.get("instance_count", 0)),
    )
