"""Values in their item's canonical unit; expected values worked out by hand.

Glucose 98 mg/dL = 980 mg/L / 180.16 g/mol = 5.4396 mmol/L; creatinine 0.9 mg/dL = 9 mg/L /
113.12 g/mol = 79.56 umol/L; urea nitrogen 14 mg/dL = 140 mg/L / 28.014 g/mol = 4.998 mmol/L.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from mutualrec.matching.catalog import CatalogItem, packaged_catalog
from mutualrec.matching.units import CanonicalValue, canonical_value


def _item(code: str) -> CatalogItem:
    item = packaged_catalog().get(code)
    assert item is not None
    return item


@pytest.mark.parametrize(
    ("item_code", "number", "unit", "expected"),
    [
        (
            "LAB-GLU",
            "98",
            "mg/dL",
            CanonicalValue(Decimal("5.44"), "mmol/L", "converted from 98 mg/dL"),
        ),
        (
            "LAB-CREA",
            "0.9",
            "mg/dL",
            CanonicalValue(Decimal("79.6"), "umol/L", "converted from 0.9 mg/dL"),
        ),
        (
            "LAB-UREA",
            "14",
            "mg/dL",
            CanonicalValue(Decimal("5.00"), "mmol/L", "converted from 14 mg/dL"),
        ),
        (
            "LAB-GLU",
            "5400",
            "umol/L",
            CanonicalValue(Decimal("5.40"), "mmol/L", "converted from 5400 umol/L"),
        ),
        (
            "LAB-ALB",
            "3.1",
            "g/dL",
            CanonicalValue(Decimal("31.0"), "g/L", "converted from 3.1 g/dL"),
        ),
    ],
)
def test_values_in_another_unit_are_converted(
    item_code: str, number: str, unit: str, expected: CanonicalValue
) -> None:
    assert canonical_value(Decimal(number), unit, _item(item_code)) == expected


def test_a_value_in_the_canonical_unit_is_left_as_reported() -> None:
    assert canonical_value(Decimal("5.40"), "mmol/L", _item("LAB-GLU")) == CanonicalValue(
        Decimal("5.40"), "mmol/L"
    )


@pytest.mark.parametrize(
    ("item_code", "unit", "note"),
    [
        ("LAB-GLU", "U/L", "U/L cannot be converted to mmol/L: shown as reported"),
        # Potassium has no molar mass in the catalog: mass cannot become substance.
        ("LAB-K", "mg/dL", "mg/dL cannot be converted to mmol/L: shown as reported"),
        ("LAB-GLU", "", "no unit cannot be converted to mmol/L: shown as reported"),
    ],
)
def test_a_unit_that_cannot_be_converted_is_flagged(item_code: str, unit: str, note: str) -> None:
    found = canonical_value(Decimal("3"), unit, _item(item_code))
    assert found == CanonicalValue(None, "mmol/L", note)


def test_an_item_without_a_canonical_unit_has_no_canonical_value() -> None:
    assert canonical_value(Decimal("1"), "mg/dL", _item("LAB-CRP")) is None
