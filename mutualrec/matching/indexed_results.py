"""A result as the recognition index holds it: the rows ingest writes (:class:`ResultItems`) and
the rows a check reads (:class:`IndexedResult`). Plain records: storage keeps them, the services
build and read them, the rules decide over them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import NamedTuple

# The status of a row that is not recognized but that a check must explain: a study whose
# declared item contradicts its images, until an administrator resolves it. Not a FHIR status.
HELD = "held"


@dataclass(frozen=True, slots=True)
class IndexedResult:
    """A result as the recognition index holds it: one row per (result, catalog item)."""

    item_code: str
    kind: str
    result_ref: str
    version: int
    status: str
    report_time: dt.datetime
    institution_id: int
    detail: str
    # Specimen collection (lab results indexed since migration 0012); None otherwise.
    collected_at: dt.datetime | None = None


class ResultItems(NamedTuple):
    """A result's current version as the recognition index is to hold it: one row per catalog
    item it is, each with what a doctor sees of the result as that item.

    Immutable and typed like a frozen dataclass, but built for every result ingested: a frozen
    dataclass's ``__init__`` costs five times as much.
    """

    patient_key: str
    kind: str
    result_ref: str
    version: int
    status: str
    report_time: dt.datetime
    institution_id: int
    # (item code, detail) for every item the version is, by item code.
    details: tuple[tuple[str, str], ...]
    # Specimen collection (lab results); None otherwise.
    collected_at: dt.datetime | None = None
