"""From what hospitals send to catalog items: ordered codes, lab results, imaging studies."""

from __future__ import annotations

import pytest

from mutualrec.matching.catalog import packaged_catalog
from mutualrec.matching.codes import (
    SeriesFacts,
    items_for_lab_result,
    items_for_study,
    resolve_ordered_code,
)
from mutualrec.matching.facts import Verdict

CATALOG = packaged_catalog()
LOCAL_CODES: dict[str, tuple[str, ...]] = {
    # A liver-function panel as one charge code, expanding to its analytes.
    "HIS-LFT": ("LAB-ALT", "LAB-AST", "LAB-TBIL", "LAB-ALT"),
    "250301001": ("LAB-K",),
    "HIS-BLOODGAS": (),
    "HIS-OLD": ("LAB-RETIRED",),
}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("IMG-CT-CHEST", ("IMG-CT-CHEST",)),
        (" img-ct-chest ", ("IMG-CT-CHEST",)),
        ("2823-3", ("LAB-K",)),
        ("2345-7", ("LAB-GLU",)),
        ("HIS-LFT", ("LAB-ALT", "LAB-AST", "LAB-TBIL")),
        ("250301001", ("LAB-K",)),
    ],
)
def test_ordered_codes_resolve_to_items(code: str, expected: tuple[str, ...]) -> None:
    resolution = resolve_ordered_code(code, CATALOG, LOCAL_CODES)
    assert resolution.verdict is None
    assert tuple(item.code for item in resolution.items) == expected
    assert resolution.ordered_code == code


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        # Hemoglobin alone: a real LOINC code, not a recognized item.
        ("718-7", Verdict.NOT_COVERED),
        ("HIS-BLOODGAS", Verdict.NOT_COVERED),
        ("HIS-OLD", Verdict.NOT_COVERED),
        # Shaped like LOINC, but the check digit is wrong (2823-3 is potassium).
        ("2823-4", Verdict.UNKNOWN_CODE),
        ("XYZ-123", Verdict.UNKNOWN_CODE),
        ("", Verdict.UNKNOWN_CODE),
        ("his-lft", Verdict.UNKNOWN_CODE),
    ],
)
def test_codes_that_stand_for_no_item(code: str, verdict: Verdict) -> None:
    resolution = resolve_ordered_code(code, CATALOG, LOCAL_CODES)
    assert resolution.items == ()
    assert resolution.verdict is verdict


def test_lab_result_maps_by_loinc_first() -> None:
    found = items_for_lab_result(["2823-3", "718-7"], ["HIS-LFT"], LOCAL_CODES, CATALOG)
    assert found == {"LAB-K"}


def test_lab_result_falls_back_to_the_issuers_local_codes() -> None:
    found = items_for_lab_result(["718-7"], ["HIS-LFT", "NOPE"], LOCAL_CODES, CATALOG)
    assert found == {"LAB-ALT", "LAB-AST", "LAB-TBIL"}


def test_lab_result_with_nothing_known_maps_to_nothing() -> None:
    assert items_for_lab_result(["718-7"], ["NOPE"], LOCAL_CODES, CATALOG) == frozenset()
    assert items_for_lab_result([], [], {}, CATALOG) == frozenset()


CT_CHEST_PLAIN = SeriesFacts("CT", "CHEST", contrast=False)
CT_CHEST_CONTRAST = SeriesFacts("CT", "CHEST", contrast=True)


@pytest.mark.parametrize(
    ("declared", "series", "expected"),
    [
        # The RIS knows the procedure: a sinus CT carries a HEAD header.
        ("IMG-CT-SINUS", [SeriesFacts("CT", "HEAD", False)], {"IMG-CT-SINUS"}),
        ("img-mr-mra-head", [], {"IMG-MR-MRA-HEAD"}),
        # A declared lab item or unknown code is ignored; the header decides.
        ("LAB-K", [CT_CHEST_PLAIN], {"IMG-CT-CHEST"}),
        ("IMG-NOPE", [CT_CHEST_PLAIN], {"IMG-CT-CHEST"}),
        (None, [CT_CHEST_PLAIN], {"IMG-CT-CHEST"}),
        # Plain and contrast series of one part: a contrast study.
        (None, [CT_CHEST_PLAIN, CT_CHEST_CONTRAST], {"IMG-CT-CHEST-C"}),
        (None, [CT_CHEST_CONTRAST, CT_CHEST_PLAIN], {"IMG-CT-CHEST-C"}),
        # Two parts in one study.
        (
            None,
            [CT_CHEST_PLAIN, SeriesFacts("CT", "ABDOMEN", True)],
            {"IMG-CT-CHEST", "IMG-CT-ABD-C"},
        ),
        # A shared header key maps only to its default item.
        (None, [SeriesFacts("CT", "HEAD", False)], {"IMG-CT-HEAD"}),
        (None, [SeriesFacts("DX", "CHEST", False)], {"IMG-DX-CHEST-PA"}),
        (None, [SeriesFacts("MR", "HEAD", False)], set()),
        # Nothing to go on.
        (None, [SeriesFacts("CT", "", False), SeriesFacts("", "CHEST", False)], set()),
        (None, [SeriesFacts("CT", "KNEE", False)], set()),
        (None, [], set()),
    ],
)
def test_study_maps_to_items(
    declared: str | None, series: list[SeriesFacts], expected: set[str]
) -> None:
    assert items_for_study(declared, series, CATALOG) == expected
