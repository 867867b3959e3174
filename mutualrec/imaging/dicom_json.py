"""The DICOM JSON model (PS3.18 F.2): what a QIDO-RS entry and a WADO-RS metadata answer hold.

Pure: datasets in, JSON-ready dicts out. Bulk data (Pixel Data, large binary values) is left
out of metadata, as PS3.18 F.2.7 allows a server that offers no bulk data resource: a viewer
fetches pixels through the frames resource instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

# Binary values at most this long stay inline (InlineBinary); longer ones are bulk data.
INLINE_BINARY_MAX = 1024
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"})
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})


def _is_bulk(element: DataElement) -> bool:
    if element.tag in _PIXEL_TAGS:
        return True
    if element.VR not in _BINARY_VRS:
        return False
    value = element.value
    return value is None or not isinstance(value, bytes) or len(value) > INLINE_BINARY_MAX


def _without_bulk(dataset: Dataset) -> Dataset:
    """A shallow copy of ``dataset`` (sequences' items too) with no bulk data element."""
    kept = Dataset()
    for element in dataset:
        if _is_bulk(element):
            continue
        if element.VR == "SQ":
            items = [_without_bulk(item) for item in element.value]
            kept.add(DataElement(element.tag, "SQ", items))
        else:
            kept.add(element)
    return kept


def _without_empty(json_dict: dict[str, Any]) -> dict[str, Any]:
    """``json_dict`` with no empty ``Value`` array: PS3.18 F.2.5 leaves ``Value`` out of an
    empty attribute (pydicom writes ``[]`` for an empty sequence)."""
    for attribute in json_dict.values():
        values = attribute.get("Value")
        if values == []:
            del attribute["Value"]
        elif attribute.get("vr") == "SQ" and values:
            for item in values:
                _without_empty(item)
    return json_dict


def metadata_json(dataset: Dataset) -> dict[str, Any]:
    """One instance's metadata, its header without bulk data, in the DICOM JSON model."""
    shown = _without_bulk(dataset)
    return _without_empty(
        shown.to_json_dict(bulk_data_threshold=INLINE_BINARY_MAX * 1024, suppress_invalid_tags=True)
    )


def entry_json(dataset: Dataset, keywords: Iterable[str], include_all: bool) -> dict[str, Any]:
    """A search entry: the attributes ``keywords`` names that ``dataset`` holds (every one but
    bulk data when ``include_all``), in the DICOM JSON model, ordered by tag."""
    chosen = Dataset()
    if include_all:
        for element in dataset:
            if element.VR != "SQ" and not _is_bulk(element):
                chosen.add(element)
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is not None and tag in dataset:
            chosen.add(dataset[tag])
    result = _without_empty(
        _without_bulk(chosen).to_json_dict(
            bulk_data_threshold=INLINE_BINARY_MAX * 1024, suppress_invalid_tags=True
        )
    )
    return dict(sorted(result.items()))


def attribute_strings(dataset: Dataset, keyword: str) -> list[str]:
    """An attribute's values as the text a filter is matched against ([] when absent or
    empty): PN in its DICOM form (``FAMILY^GIVEN``), numbers as written."""
    element = dataset.data_element(keyword) if keyword in dataset else None
    if element is None or element.value is None or element.value == "":
        return []
    value = element.value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return [str(value)]
