"""The declared item against the images' headers: hand-written cases from the packaged catalog."""

from __future__ import annotations

import pytest

from mutualrec.matching.catalog import packaged_catalog
from mutualrec.matching.codes import SeriesFacts
from mutualrec.matching.declared import contradictions

CATALOG = packaged_catalog()


@pytest.mark.parametrize(
    ("declared", "series", "expected"),
    [
        # The case: an MR of the head declared as a contrast chest CT.
        ("IMG-CT-CHEST-C", [("MR", "HEAD", False)], ["modality MR, not CT"]),
        (
            "IMG-CT-CHEST-C",
            [("CT", "HEAD", False)],
            ["body part HEAD, not CHEST"],
        ),
        (
            "IMG-CT-CHEST",
            [("CT", "CHEST", True)],
            ["a contrast agent, the item is without contrast"],
        ),
        # Agreements: same kind of detector, a body part written another way, silence.
        ("IMG-DX-CHEST-PA", [("CR", "CHEST", False)], []),
        ("IMG-MR-BRAIN", [("MR", "HEAD", False)], []),
        ("IMG-CT-KUB", [("CT", "ABDOMEN", False), ("CT", "PELVIS", False)], []),
        ("IMG-CT-CHEST-C", [("CT", "", False), ("CT", "", True)], []),
        # ContrastBolusAgent is often left empty: its absence says nothing.
        ("IMG-CT-CHEST-C", [("CT", "CHEST", False)], []),
        ("IMG-CT-CHEST-C", [("CT", "CHEST", True), ("SR", "", False)], []),
        ("IMG-US-ABD", [("SR", "", False), ("OT", "HEAD", False)], []),
        ("IMG-US-ABD", [], []),
    ],
)
def test_contradictions(
    declared: str, series: list[tuple[str, str, bool]], expected: list[str]
) -> None:
    item = CATALOG.get(declared)
    assert item is not None

    assert contradictions(item, [SeriesFacts(*one) for one in series]) == expected
