"""An ordering-time check: ordered codes to lines, lines to verdicts over the patient's results.

The rules live in :mod:`mutualrec.matching.rules`; this module feeds them the patient's indexed
results and the reference data, and keeps what the reply and the record need. Pure: the
recognition service reads the index and passes the rows in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mutualrec.matching.catalog import Catalog, CatalogItem
from mutualrec.matching.codes import OrderResolution, resolve_ordered_code
from mutualrec.matching.facts import (
    Finding,
    InstitutionFacts,
    Qualification,
    ResultFacts,
    ResultStatus,
)
from mutualrec.matching.indexed_results import HELD, IndexedResult
from mutualrec.matching.policy import Policy
from mutualrec.matching.result_details import ImagingDetail, LabDetail, read_detail
from mutualrec.matching.rules import check_item, unresolved_finding


@dataclass(frozen=True, slots=True)
class Reference:
    """What the rules read besides the patient's results: the catalog, the institutions that
    issue and ask, and their qualifications."""

    catalog: Catalog
    institutions: Mapping[int, InstitutionFacts]
    qualifications: tuple[Qualification, ...]


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One line of a check: an ordered code and the catalog item it stands for (if any)."""

    ordered_code: str
    item: CatalogItem | None
    resolution: OrderResolution


@dataclass(frozen=True, slots=True)
class CheckedLine:
    """A line with its finding, and the index row of the result the finding cites with what a
    doctor sees of it."""

    line: OrderLine
    finding: Finding
    cited: IndexedResult | None
    detail: LabDetail | ImagingDetail | None = None


def plan_lines(
    ordered_codes: Sequence[str], catalog: Catalog, local_codes: Mapping[str, tuple[str, ...]]
) -> list[OrderLine]:
    """One line per catalog item ordered: a panel code expands to one line per analyte."""
    lines: list[OrderLine] = []
    for code in ordered_codes:
        resolution = resolve_ordered_code(code, catalog, local_codes)
        if resolution.items:
            lines.extend(OrderLine(code, item, resolution) for item in resolution.items)
        else:
            lines.append(OrderLine(code, None, resolution))
    return lines


def wanted_items(lines: Sequence[OrderLine], catalog: Catalog) -> set[str]:
    """Every item whose results could answer one of the lines (the satisfies relation)."""
    wanted: set[str] = set()
    for line in lines:
        if line.item is not None:
            wanted |= catalog.satisfiers(line.item.code)
    return wanted


def _facts(rows: Sequence[IndexedResult], data: Reference) -> list[ResultFacts]:
    facts = []
    for row in rows:
        issuer = data.institutions.get(row.institution_id)
        held = row.status == HELD
        try:
            status = ResultStatus.FINAL if held else ResultStatus(row.status)
        except ValueError:
            continue  # a status this version does not know cannot be recognized
        if issuer is not None:
            facts.append(
                ResultFacts(
                    row.result_ref,
                    row.version,
                    row.item_code,
                    status,
                    row.report_time,
                    issuer,
                    held,
                    row.collected_at,
                )
            )
    return facts


def decide_lines(
    lines: Sequence[OrderLine],
    rows: Sequence[IndexedResult],
    data: Reference,
    asker_id: int,
    received_at: dt.datetime,
    prices: Mapping[str, int],
    policy: Policy,
) -> list[CheckedLine]:
    """The finding of every line, citing the index row of the result it rests on."""
    asker = data.institutions[asker_id]
    facts = _facts(rows, data)
    by_ref = {(r.result_ref, r.item_code): r for r in rows}
    checked = []
    for line in lines:
        if line.item is None:
            checked.append(
                CheckedLine(line, unresolved_finding(line.resolution, data.catalog), None)
            )
            continue
        finding = check_item(
            line.item,
            data.catalog,
            facts,
            asker,
            data.qualifications,
            received_at,
            policy,
            prices,
        )
        cited = (
            by_ref.get((finding.result.result_ref, finding.result.item_code))
            if finding.result is not None
            else None
        )
        # Only a cited row's detail is read: most of a patient's rows are never shown.
        detail = None if cited is None else read_detail(cited.kind, cited.detail)
        checked.append(CheckedLine(line, finding, cited, detail))
    return checked
