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

# Binary values shorter than this stay inline (InlineBinary); longer ones are bulk data.
INLINE_BINARY_MAX = 1024
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"})
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})


def _is_bulk(element: DataElement) -> bool:
    if element.tag in PIXEL_TAGS:
        return True
    if element.VR not in _BINARY_VRS:
        return False
    value = element.value
    return value is None or not isinstance(value, bytes) or len(value) >= INLINE_BINARY_MAX


def _cleaned(json_dict: dict[str, Any]) -> dict[str, Any]:
    """``json_dict`` without bulk data (what pydicom marked with a ``BulkDataURI``) and with no
    empty ``Value`` array: PS3.18 F.2.5 leaves ``Value`` out of an empty attribute (pydicom
    writes ``[]`` for an empty sequence)."""
    for tag in [t for t, a in json_dict.items() if "BulkDataURI" in a or int(t, 16) in PIXEL_TAGS]:
        del json_dict[tag]
    for attribute in json_dict.values():
        values = attribute.get("Value")
        if values == []:
            del attribute["Value"]
        elif attribute.get("vr") == "SQ" and values:
            for item in values:
                _cleaned(item)
    return json_dict


def _json(dataset: Dataset) -> dict[str, Any]:
    # pydicom names binary values longer than the threshold with the handler's URI: they are
    # then dropped by _cleaned, without walking the dataset twice.
    return _cleaned(
        dataset.to_json_dict(
            bulk_data_threshold=INLINE_BINARY_MAX * 4 // 3,
            bulk_data_element_handler=lambda _element: "",
            suppress_invalid_tags=True,
        )
    )


def metadata_json(dataset: Dataset) -> dict[str, Any]:
    """One instance's metadata, its header without bulk data, in the DICOM JSON model."""
    return _json(dataset)


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
    return dict(sorted(_json(chosen).items()))


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
