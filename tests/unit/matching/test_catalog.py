"""The catalog: the packaged file, every kind of bad row, the draft's shape, satisfies closure."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mutualrec.matching.catalog import (
    CATALOG_VERSION,
    CatalogError,
    ItemCategory,
    is_loinc,
    load_catalog,
    loinc_check_digit,
    packaged_catalog,
)
from mutualrec.violations import Rejected

PACKAGED_FILE = (
    Path(__file__).resolve().parents[3]
    / "mutualrec"
    / "matching"
    / "data"
    / "recognition_items.csv"
)
HEADER = (
    "code,name_zh,name_en,category,loinc,modality,body_part,contrast,header_match,validity,"
    "price_cny,satisfies,source"
)
# Line 2..5 of the small catalog the bad-row tests start from.
GOOD_ROWS = [
    "LAB-K,钾,Potassium,lab,2823-3,,,,,7d,4,,test",
    "LAB-NA,钠,Sodium,lab,2951-2,,,,,7d,4,,test",
    "IMG-CT-CHEST,胸部CT平扫,CT chest without contrast,imaging,,CT,CHEST,no,yes,90d,200,,test",
    "IMG-CT-CHEST-C,胸部CT增强,CT chest with contrast,imaging,,CT,CHEST,yes,yes,90d,450,"
    "IMG-CT-CHEST,test",
]


def catalog_text(rows: list[str], header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def rejection(text: str) -> CatalogError:
    with pytest.raises(CatalogError) as caught:
        load_catalog(text, "test")
    return caught.value


def test_packaged_catalog_holds_the_112_items_in_file_order() -> None:
    catalog = packaged_catalog()
    assert catalog.version == CATALOG_VERSION == "2026.2"
    assert len(catalog.items) == 112
    assert catalog.items[0].code == "LAB-CBC"
    assert catalog.items[-1].code == "IMG-NM-THYROID"
    assert len({item.code for item in catalog.items}) == 112


def test_packaged_catalog_hash_is_of_the_source_text() -> None:
    text = PACKAGED_FILE.read_text("utf-8")
    assert packaged_catalog().sha256 == hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_the_packaged_file_passes_the_full_validation_with_its_units() -> None:
    # The server reads it (and recorded versions) without parsing units again: they must be
    # checked here, before it ships.
    text = PACKAGED_FILE.read_text("utf-8")
    checked = load_catalog(text, CATALOG_VERSION)
    assert checked.items == packaged_catalog().items
    assert {item.unit for item in checked.items} == {"", "%", "U/L", "g/L", "mmol/L", "umol/L"}


def test_recorded_units_are_not_parsed_again() -> None:
    # A bad unit slips through only when the caller says the text was checked before.
    text = catalog_text(
        ["LAB-GLU,葡萄糖,Glucose,lab,2345-7,,,,,30d,4,,mmol/LL(,,test"], UNIT_HEADER
    )
    assert load_catalog(text, "test", units_checked=True).get("LAB-GLU") is not None
    assert ("line 2: unit", "NOT_UCUM") in {(v.field, v.reason) for v in rejection(text).violations}


def test_packaged_items_carry_their_columns() -> None:
    catalog = packaged_catalog()
    chest = catalog.get("IMG-CT-CHEST")
    assert chest is not None
    assert (chest.name_zh, chest.name_en) == ("胸部CT平扫", "CT chest without contrast")
    assert chest.category is ItemCategory.IMAGING
    assert (chest.modality, chest.body_part, chest.contrast, chest.header_match) == (
        "CT",
        "CHEST",
        False,
        True,
    )
    assert chest.validity == dt.timedelta(days=90)
    assert chest.reference_price_fen == 20000  # 200 yuan
    cbc = catalog.get("lab-cbc")
    assert cbc is not None
    assert cbc.loinc == ("57021-8", "58410-2")
    assert cbc.validity == dt.timedelta(days=3)
    assert (cbc.modality, cbc.body_part, cbc.contrast, cbc.header_match) == ("", "", False, False)
    assert catalog.item_for_loinc("2823-3") == catalog.get("LAB-K")
    assert catalog.get("NO-SUCH-ITEM") is None


def test_packaged_contrast_items() -> None:
    contrast = {item.code for item in packaged_catalog().items if item.contrast}
    assert contrast == {
        "IMG-CT-HEAD-C",
        "IMG-CT-CHEST-C",
        "IMG-CT-ABD-C",
        "IMG-CT-CTA-COR",
        "IMG-CT-CTA-HN",
        "IMG-MR-BRAIN-C",
    }


def test_packaged_header_matching() -> None:
    catalog = packaged_catalog()
    not_by_header = {
        item.code
        for item in catalog.items
        if item.category is ItemCategory.IMAGING and not item.header_match
    }
    assert not_by_header == {"IMG-CT-SINUS", "IMG-MR-MRA-HEAD", "IMG-DX-CHEST-2V"}

    def header_code(modality: str, body_part: str, contrast: bool) -> str | None:
        found = catalog.item_for_header(modality, body_part, contrast)
        return None if found is None else found.code

    assert header_code("CT", "HEAD", False) == "IMG-CT-HEAD"
    assert header_code("DX", "CHEST", False) == "IMG-DX-CHEST-PA"
    assert header_code("CT", "CHEST", True) == "IMG-CT-CHEST-C"
    assert header_code("CT", "CHEST", False) == "IMG-CT-CHEST"
    assert header_code("MR", "HEAD", False) is None


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("IMG-CT-CHEST", {"IMG-CT-CHEST", "IMG-CT-CHEST-C"}),
        ("IMG-CT-HEAD", {"IMG-CT-HEAD", "IMG-CT-HEAD-C"}),
        ("IMG-CT-ABD", {"IMG-CT-ABD", "IMG-CT-ABD-C"}),
        ("IMG-MR-BRAIN", {"IMG-MR-BRAIN", "IMG-MR-BRAIN-C"}),
        ("IMG-DX-CHEST-PA", {"IMG-DX-CHEST-PA", "IMG-DX-CHEST-2V"}),
        ("IMG-CT-CHEST-C", {"IMG-CT-CHEST-C"}),
        ("IMG-DX-CHEST-2V", {"IMG-DX-CHEST-2V"}),
        ("LAB-K", {"LAB-K"}),
        ("img-ct-chest", {"IMG-CT-CHEST", "IMG-CT-CHEST-C"}),
    ],
)
def test_packaged_satisfiers(code: str, expected: set[str]) -> None:
    assert packaged_catalog().satisfiers(code) == expected


def test_satisfiers_of_an_unknown_code_raise() -> None:
    with pytest.raises(KeyError):
        packaged_catalog().satisfiers("NO-SUCH-ITEM")


def test_satisfiers_are_transitive() -> None:
    rows = [
        "IMG-A,甲,A,imaging,,CT,CHEST,no,yes,90d,1,,t",
        "IMG-B,乙,B,imaging,,CT,CHEST,yes,yes,90d,1,IMG-A,t",
        "IMG-C,丙,C,imaging,,CT,CHEST,no,no,90d,1,IMG-B,t",
        "IMG-D,丁,D,imaging,,CT,HEAD,no,yes,90d,1,IMG-B;IMG-A,t",
    ]
    catalog = load_catalog(catalog_text(rows), "t")
    assert catalog.satisfiers("IMG-A") == {"IMG-A", "IMG-B", "IMG-C", "IMG-D"}
    assert catalog.satisfiers("IMG-B") == {"IMG-B", "IMG-C", "IMG-D"}
    assert catalog.satisfiers("IMG-C") == {"IMG-C"}
    assert catalog.satisfiers("IMG-D") == {"IMG-D"}


def test_the_small_catalog_loads() -> None:
    catalog = load_catalog(catalog_text(GOOD_ROWS), "t")
    assert [item.code for item in catalog.items] == [
        "LAB-K",
        "LAB-NA",
        "IMG-CT-CHEST",
        "IMG-CT-CHEST-C",
    ]
    assert catalog.version == "t"


def test_validity_may_be_in_hours() -> None:
    row = "LAB-CBC,血常规,CBC,lab,57021-8,,,,,6h,30,,t"
    item = load_catalog(catalog_text([row]), "t").items[0]
    assert item.validity == dt.timedelta(hours=6)


def test_draft_format_loads() -> None:
    header = "code,name_zh,name_en,category,loinc,modality,body_part,validity_days,price_cny,source"
    rows = [
        'LAB-K,钾,Potassium,lab,2823-3,,,7,4,"item+window HB 7d; LOINC verified"',
        "IMG-CT-CHEST,胸部CT平扫,CT chest without contrast,imaging,,CT,CHEST,90,200,inferred",
        "IMG-CT-CHEST-C,胸部CT增强,CT chest with contrast,imaging,,CT,HEAD,90,450,inferred",
    ]
    catalog = load_catalog(catalog_text(rows, header), "draft")
    potassium, chest, contrast = catalog.items
    assert potassium.validity == dt.timedelta(days=7)
    assert potassium.source == "item+window HB 7d; LOINC verified"
    assert (potassium.contrast, potassium.header_match, potassium.satisfies) == (False, False, ())
    assert (chest.contrast, chest.header_match, chest.satisfies) == (False, True, ())
    # Absent contrast means no, even for an item named 增强: the draft format is not guessed at.
    assert (contrast.contrast, contrast.header_match) == (False, True)
    assert catalog.satisfiers("IMG-CT-CHEST") == {"IMG-CT-CHEST"}


def test_byte_order_mark_is_accepted() -> None:
    catalog = load_catalog("\ufeff" + catalog_text(GOOD_ROWS), "t")
    assert catalog.items[0].code == "LAB-K"


@pytest.mark.parametrize(
    ("line", "row", "field", "reason"),
    [
        (2, "LAB-K,钾,Potassium,blood,2823-3,,,,,7d,4,,t", "category", "UNKNOWN_CATEGORY"),
        (2, "LAB-K,钾,Potassium,lab,2823-33,,,,,7d,4,,t", "loinc", "BAD_LOINC_SYNTAX"),
        (2, "LAB-K,钾,Potassium,lab,2823,,,,,7d,4,,t", "loinc", "BAD_LOINC_SYNTAX"),
        (2, "LAB-K,钾,Potassium,lab,12345678-9,,,,,7d,4,,t", "loinc", "BAD_LOINC_SYNTAX"),
        (2, "LAB-K,钾,Potassium,lab,2823-4,,,,,7d,4,,t", "loinc", "BAD_LOINC_CHECK_DIGIT"),
        (3, "LAB-NA,钠,Sodium,lab,2823-3,,,,,7d,4,,t", "loinc", "DUPLICATE_LOINC"),
        (3, "LAB-K,钠,Sodium,lab,2951-2,,,,,7d,4,,t", "code", "DUPLICATE_ITEM_CODE"),
        (3, "lab-k,钠,Sodium,lab,2951-2,,,,,7d,4,,t", "code", "BAD_ITEM_CODE"),
        (2, "LAB-K,,Potassium,lab,2823-3,,,,,7d,4,,t", "name_zh", "MISSING_NAME"),
        (2, "LAB-K,钾,Potassium,lab,2823-3,,,,,7,4,,t", "validity", "BAD_VALIDITY"),
        (2, "LAB-K,钾,Potassium,lab,2823-3,,,,,7w,4,,t", "validity", "BAD_VALIDITY"),
        (2, "LAB-K,钾,Potassium,lab,2823-3,,,,,0d,4,,t", "validity", "BAD_VALIDITY"),
        (2, "LAB-K,钾,Potassium,lab,2823-3,,,,,-1d,4,,t", "validity", "BAD_VALIDITY"),
        (2, "LAB-K,钾,Potassium,lab,2823-3,,,,,7d,-4,,t", "price_cny", "BAD_PRICE"),
        (2, "LAB-K,钾,Potassium,lab,2823-3,,,,,7d,abc,,t", "price_cny", "BAD_PRICE"),
        (2, "LAB-K,钾,Potassium,lab,2823-3,,,,,7d,4.001,,t", "price_cny", "BAD_PRICE"),
        (2, "LAB-K,钾,Potassium,lab,2823-3,,,,,7d,NaN,,t", "price_cny", "BAD_PRICE"),
        (
            2,
            "LAB-K,钾,Potassium,lab,2823-3,,,,,7d,4,LAB-ZZ,t",
            "satisfies",
            "UNKNOWN_SATISFIES_TARGET",
        ),
        (2, "LAB-K,钾,Potassium,lab,2823-3,,,,,7d,4,LAB-K,t", "satisfies", "SATISFIES_CYCLE"),
        (
            2,
            "LAB-K,钾,Potassium,lab,2823-3,,,,,7d,4,IMG-CT-CHEST,t",
            "satisfies",
            "SATISFIES_ACROSS_CATEGORIES",
        ),
        (2, "LAB-K,钾,Potassium,lab,2823-3,CT,,,,7d,4,,t", "modality", "IMAGING_FIELD_ON_LAB_ITEM"),
        (
            2,
            "LAB-K,钾,Potassium,lab,2823-3,,,,yes,7d,4,,t",
            "header_match",
            "IMAGING_FIELD_ON_LAB_ITEM",
        ),
        (
            4,
            "IMG-CT-CHEST,胸部CT,CT chest,imaging,,,CHEST,no,yes,90d,200,,t",
            "modality",
            "MISSING_MODALITY",
        ),
        (
            4,
            "IMG-CT-CHEST,胸部CT,CT chest,imaging,,C T,CHEST,no,yes,90d,200,,t",
            "modality",
            "BAD_MODALITY",
        ),
        (
            4,
            "IMG-CT-CHEST,胸部CT,CT chest,imaging,,CT,,no,yes,90d,200,,t",
            "body_part",
            "MISSING_BODY_PART",
        ),
        (
            4,
            "IMG-CT-CHEST,胸部CT,CT chest,imaging,,CT,THORAX,no,yes,90d,200,,t",
            "body_part",
            "BODY_PART_NOT_NORMALIZED",
        ),
        (
            4,
            "IMG-CT-CHEST,胸部CT,CT chest,imaging,,CT,TORSO,no,yes,90d,200,,t",
            "body_part",
            "BODY_PART_NOT_NORMALIZED",
        ),
        (
            4,
            "IMG-CT-CHEST,胸部CT,CT chest,imaging,,CT,CHEST,maybe,yes,90d,200,,t",
            "contrast",
            "BAD_FLAG",
        ),
        (
            5,
            "IMG-CT-CHEST-C,胸部CT增强,CT chest,imaging,,CT,CHEST,no,yes,90d,450,IMG-CT-CHEST,t",
            "header_match",
            "AMBIGUOUS_HEADER_MATCH",
        ),
    ],
)
def test_each_kind_of_bad_row_is_rejected_with_its_line_and_field(
    line: int, row: str, field: str, reason: str
) -> None:
    rows = list(GOOD_ROWS)
    rows[line - 2] = row
    error = rejection(catalog_text(rows))
    assert isinstance(error, Rejected)
    assert (f"line {line}: {field}", reason) in {(v.field, v.reason) for v in error.violations}


def test_a_cycle_through_several_items_is_reported_on_each() -> None:
    rows = [
        "IMG-A,甲,A,imaging,,CT,CHEST,no,yes,90d,1,IMG-C,t",
        "IMG-B,乙,B,imaging,,CT,HEAD,no,yes,90d,1,IMG-A,t",
        "IMG-C,丙,C,imaging,,CT,NECK,no,yes,90d,1,IMG-B,t",
    ]
    error = rejection(catalog_text(rows))
    cycles = [v for v in error.violations if v.reason == "SATISFIES_CYCLE"]
    assert [v.field for v in cycles] == [
        "line 2: satisfies",
        "line 3: satisfies",
        "line 4: satisfies",
    ]
    assert "IMG-A -> IMG-C -> IMG-B -> IMG-A" in cycles[0].description


def test_every_problem_is_listed_not_only_the_first() -> None:
    rows = list(GOOD_ROWS)
    rows[0] = "LAB-K,钾,Potassium,blood,2823-4,,,,,7x,-4,,t"
    rows[3] = "IMG-CT-CHEST-C,胸部CT增强,CT chest,imaging,,CT,Chest,yes,yes,90d,450,IMG-NONE,t"
    error = rejection(catalog_text(rows))
    assert [(v.field, v.reason) for v in error.violations] == [
        ("line 2: category", "UNKNOWN_CATEGORY"),
        ("line 2: loinc", "BAD_LOINC_CHECK_DIGIT"),
        ("line 2: price_cny", "BAD_PRICE"),
        ("line 2: validity", "BAD_VALIDITY"),
        ("line 5: body_part", "BODY_PART_NOT_NORMALIZED"),
        ("line 5: satisfies", "UNKNOWN_SATISFIES_TARGET"),
    ]


def test_line_numbers_count_quoted_line_breaks() -> None:
    rows = [
        'LAB-K,钾,Potassium,lab,2823-3,,,,,7d,4,,"two\nlines"',
        "LAB-NA,钠,Sodium,lab,2951-2,,,,,7x,4,,t",
    ]
    error = rejection(catalog_text(rows))
    assert [(v.field, v.reason) for v in error.violations] == [("line 4: validity", "BAD_VALIDITY")]


def test_a_short_row_is_rejected() -> None:
    error = rejection(catalog_text([*GOOD_ROWS, "LAB-X,x"]))
    assert [(v.field, v.reason) for v in error.violations] == [("line 6", "BAD_ROW_LENGTH")]


@pytest.mark.parametrize(
    ("header", "field", "reason"),
    [
        (HEADER.replace(",source", ""), "line 1: source", "MISSING_COLUMN"),
        (HEADER.replace(",validity,", ","), "line 1: validity", "MISSING_COLUMN"),
        (HEADER + ",validity_days", "line 1: validity", "DUPLICATE_COLUMN"),
        (HEADER + ",code", "line 1: code", "DUPLICATE_COLUMN"),
        (HEADER + ",satisfy", "line 1: satisfy", "UNKNOWN_COLUMN"),
    ],
)
def test_bad_headers_are_rejected(header: str, field: str, reason: str) -> None:
    error = rejection(header + "\n")
    assert (field, reason) in {(v.field, v.reason) for v in error.violations}


def test_an_empty_catalog_is_rejected() -> None:
    assert [v.reason for v in rejection("").violations] == ["EMPTY_CATALOG"]
    assert [v.reason for v in rejection(HEADER + "\n").violations] == ["EMPTY_CATALOG"]


@pytest.mark.parametrize(
    ("body", "digit"),
    [
        # Published codes (LOINC table) and the LOINC Users' Guide worked example 12345-5.
        ("12345", 5),
        ("2823", 3),
        ("2951", 2),
        ("14682", 9),
        ("14749", 6),
        ("14631", 6),
        ("718", 7),
        ("4548", 4),
        ("57021", 8),
        ("2098", 2),
    ],
)
def test_loinc_check_digit(body: str, digit: int) -> None:
    assert loinc_check_digit(body) == digit
    assert is_loinc(f"{body}-{digit}")


@given(st.integers(1, 9_999_999), st.data())
def test_any_single_digit_change_breaks_a_loinc_check_digit(
    number: int, data: st.DataObject
) -> None:
    body = str(number)
    code = f"{body}-{loinc_check_digit(body)}"
    position = data.draw(st.integers(0, len(code) - 1).filter(lambda i: code[i] != "-"))
    # A leading zero is no change at all (LOINC codes have none), so position 0 stays non-zero.
    lowest = 1 if position == 0 else 0
    changed = data.draw(st.integers(lowest, 9).filter(lambda d: d != int(code[position])))
    mutated = code[:position] + str(changed) + code[position + 1 :]
    # Mod 10 catches every single-digit substitution (the Luhn property).
    assert not is_loinc(mutated)


# --- panels and specimen variants ---------------------------------------------------------------

PANEL_HEADER = HEADER.replace("satisfies,source", "satisfies,specimen_loinc,panel_requires,source")


def test_packaged_cbc_is_a_panel_of_five_analytes() -> None:
    catalog = packaged_catalog()
    cbc = catalog.get("LAB-CBC")
    assert cbc is not None
    assert cbc.panel_requires == (
        ("6690-2", "26464-8"),
        ("789-8", "26453-1"),
        ("718-7", "20509-6"),
        ("4544-3", "20570-8"),
        ("777-3", "26515-7"),
    )
    # An order by the panel code stands for the CBC; a result with it alone is no item.
    assert catalog.item_for_loinc("58410-2") == cbc
    assert catalog.panel_for_loinc("57021-8") == cbc
    assert catalog.item_for_result_loinc("58410-2") is None
    assert catalog.panel_for_loinc("2823-3") is None


@pytest.mark.parametrize(
    ("loinc", "item_code"),
    [
        ("2345-7", "LAB-GLU"),  # serum or plasma
        ("2339-0", "LAB-GLU"),  # blood
        ("41653-7", "LAB-GLU"),  # capillary blood by glucometer
        ("2823-3", "LAB-K"),  # serum or plasma
        ("6298-4", "LAB-K"),  # blood
        ("2160-0", "LAB-CREA"),  # serum or plasma
        ("38483-4", "LAB-CREA"),  # blood
    ],
)
def test_packaged_specimen_variants_are_one_item(loinc: str, item_code: str) -> None:
    catalog = packaged_catalog()
    item = catalog.item_for_result_loinc(loinc)
    assert item is not None
    assert item.code == item_code
    assert catalog.item_for_loinc(loinc) == item


def test_specimen_and_panel_columns_load() -> None:
    catalog = load_catalog(
        catalog_text(
            [
                "LAB-K,钾,Potassium,lab,2823-3,,,,,7d,4,,6298-4,,test",
                "LAB-CBC,血常规,CBC,lab,58410-2,,,,,3d,30,,,6690-2|26464-8;718-7,test",
            ],
            PANEL_HEADER,
        ),
        "test",
    )
    potassium = catalog.get("LAB-K")
    cbc = catalog.get("LAB-CBC")
    assert potassium is not None
    assert cbc is not None
    assert potassium.specimen_loinc == ("6298-4",)
    assert not potassium.is_panel
    assert cbc.panel_requires == (("6690-2", "26464-8"), ("718-7",))


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        (
            "LAB-K,钾,Potassium,lab,2823-3,,,,,7d,4,,6298-5,,test",
            "specimen_loinc",
            "BAD_LOINC_CHECK_DIGIT",
        ),
        ("LAB-K,钾,Potassium,lab,2823-3,,,,,7d,4,,2823-3,,test", "loinc", "DUPLICATE_LOINC"),
        ("LAB-C,血,CBC,lab,58410-2,,,,,3d,30,,,718-x,test", "panel_requires", "BAD_LOINC_SYNTAX"),
        ("LAB-C,血,CBC,lab,,,,,,3d,30,,,718-7,test", "loinc", "PANEL_WITHOUT_CODE"),
        (
            "IMG-X,胸,Chest,imaging,,CT,CHEST,no,yes,90d,200,,2823-3,,test",
            "specimen_loinc",
            "LAB_FIELD_ON_IMAGING_ITEM",
        ),
    ],
)
def test_bad_specimen_and_panel_cells_are_rejected(row: str, field: str, reason: str) -> None:
    found = {(v.field, v.reason) for v in rejection(catalog_text([row], PANEL_HEADER)).violations}
    assert (f"line 2: {field}", reason) in found


UNIT_HEADER = HEADER.replace("satisfies,source", "satisfies,unit,molar_mass,source")


def test_unit_and_molar_mass_load() -> None:
    catalog = load_catalog(
        catalog_text(
            ["LAB-GLU,葡萄糖,Glucose,lab,2345-7,,,,,30d,4,,mmol/L,180.16,test"], UNIT_HEADER
        ),
        "test",
    )
    glucose = catalog.get("LAB-GLU")
    assert glucose is not None
    assert (glucose.unit, glucose.molar_mass) == ("mmol/L", Decimal("180.16"))


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        ("LAB-GLU,葡萄糖,Glucose,lab,2345-7,,,,,30d,4,,mmol/LL(,,test", "unit", "NOT_UCUM"),
        (
            "LAB-GLU,葡萄糖,Glucose,lab,2345-7,,,,,30d,4,,mmol/L,-3,test",
            "molar_mass",
            "BAD_MOLAR_MASS",
        ),
        (
            "LAB-GLU,葡萄糖,Glucose,lab,2345-7,,,,,30d,4,,mmol/L,0,test",
            "molar_mass",
            "BAD_MOLAR_MASS",
        ),
    ],
)
def test_bad_unit_cells_are_rejected(row: str, field: str, reason: str) -> None:
    found = {(v.field, v.reason) for v in rejection(catalog_text([row], UNIT_HEADER)).violations}
    assert (f"line 2: {field}", reason) in found
