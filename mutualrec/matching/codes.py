"""From the codes hospitals send to catalog items: ordered codes, lab results, imaging studies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mutualrec.matching.catalog import Catalog, CatalogItem, ItemCategory, is_loinc
from mutualrec.matching.facts import Verdict


@dataclass(frozen=True, slots=True)
class OrderResolution:
    """What one ordered code stands for: catalog items, or the verdict why it stands for none.

    ``verdict`` is None exactly when ``items`` is not empty.
    """

    ordered_code: str
    items: tuple[CatalogItem, ...]
    verdict: Verdict | None = None


@dataclass(frozen=True, slots=True)
class SeriesFacts:
    """What one series' DICOM header says: modality, normalized body part, contrast given."""

    modality: str
    body_part: str
    contrast: bool


def resolve_ordered_code(
    code: str, catalog: Catalog, local_codes: Mapping[str, tuple[str, ...]]
) -> OrderResolution:
    """The catalog items an ordered code stands for.

    Tried in order: a catalog item code (case-insensitive); a LOINC code of a catalog item; the
    asking institution's local order/charge code (``local_codes``: local code -> item codes, a
    panel listing each analyte). A local code mapped to nothing, or a well-formed LOINC code the
    catalog does not list, is NOT_COVERED; anything else is UNKNOWN_CODE.
    """
    text = code.strip()
    item = catalog.get(text)
    if item is None:
        item = catalog.item_for_loinc(text)
    if item is not None:
        return OrderResolution(code, (item,))
    if text in local_codes:
        items = _known_items(local_codes[text], catalog)
        if items:
            return OrderResolution(code, items)
        # Mapped to nothing, or only to items a newer catalog dropped: the hospital knows the
        # code, the catalog does not recognize it.
        return OrderResolution(code, (), Verdict.NOT_COVERED)
    if is_loinc(text):
        return OrderResolution(code, (), Verdict.NOT_COVERED)
    return OrderResolution(code, (), Verdict.UNKNOWN_CODE)


def _known_items(item_codes: Iterable[str], catalog: Catalog) -> tuple[CatalogItem, ...]:
    found: dict[str, CatalogItem] = {}
    for item_code in item_codes:
        item = catalog.get(item_code)
        if item is not None:
            found.setdefault(item.code, item)
    return tuple(found.values())


def items_for_lab_result(
    loinc_codes: Sequence[str],
    local_codes_of_result: Sequence[str],
    institution_mapping: Mapping[str, tuple[str, ...]],
    catalog: Catalog,
    groups: Sequence[tuple[str, Sequence[str]]] = (),
) -> frozenset[str]:
    """The item codes a lab result maps to: by its LOINC codes, else by the issuer's local codes,
    plus the panels it anchors.

    LOINC wins because it is the same everywhere; a local mapping table is only as current as
    the hospital keeps it. ``groups`` are the result's groups (group LOINC code, LOINC codes of
    the members with a value): a group coded as a panel item makes that item when it holds every
    analyte the panel requires. One member carries the panel, so that a panel is one result of
    the index: the member of the panel's first required analyte.
    """
    by_loinc = {
        item.code
        for item in (catalog.item_for_result_loinc(loinc) for loinc in loinc_codes)
        if item is not None
    }
    panels = {
        panel.code
        for code, members in groups
        if (panel := catalog.panel_for_loinc(code)) is not None
        and _anchors_panel(panel, loinc_codes, members)
    }
    if by_loinc:
        return frozenset(by_loinc | panels)
    return frozenset(
        panels
        | {
            item.code
            for local in local_codes_of_result
            for item in _known_items(institution_mapping.get(local.strip(), ()), catalog)
        }
    )


def _anchors_panel(panel: CatalogItem, loinc_codes: Sequence[str], members: Sequence[str]) -> bool:
    present = set(members)
    if not all(present.intersection(alternatives) for alternatives in panel.panel_requires):
        return False
    return any(code in panel.panel_requires[0] for code in loinc_codes)


def items_for_study(
    declared_item_code: str | None, series: Sequence[SeriesFacts], catalog: Catalog
) -> frozenset[str]:
    """The item codes an imaging study maps to.

    The item the RIS declared wins when it names an imaging item. Otherwise each
    (modality, body part) the series show is one header key, with contrast if any of its series
    had a contrast agent, and maps to the item marked ``header_match`` for that key.
    """
    if declared_item_code is not None:
        declared = catalog.get(declared_item_code)
        if declared is not None and declared.category is ItemCategory.IMAGING:
            return frozenset({declared.code})
    contrast_by_part: dict[tuple[str, str], bool] = {}
    for one in series:
        modality = one.modality.strip().upper()
        body_part = one.body_part.strip().upper()
        if modality and body_part:
            part = (modality, body_part)
            contrast_by_part[part] = contrast_by_part.get(part, False) or one.contrast
    found = (
        catalog.item_for_header(modality, body_part, contrast)
        for (modality, body_part), contrast in contrast_by_part.items()
    )
    return frozenset(item.code for item in found if item is not None)
