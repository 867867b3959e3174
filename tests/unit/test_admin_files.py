"""Administrators' CSV files read alone, without an index: rows, problems, and money in fen."""

from __future__ import annotations

from mutualrec.admin_files import CodeMapping, ItemPrice, read_code_mappings, read_prices
from mutualrec.matching.catalog import packaged_catalog


def test_prices_are_exact_integer_fen() -> None:
    file = read_prices(
        "\ufeffitem_code,price_cny\nLAB-K,5.5\nIMG-CT-CHEST-C,123.45\nLAB-NA,7\n",
        packaged_catalog(),
    )
    assert file.violations == ()
    assert file.prices == (
        ItemPrice("LAB-K", 550),
        ItemPrice("IMG-CT-CHEST-C", 12345),
        ItemPrice("LAB-NA", 700),
    )


def test_every_problem_of_a_price_list_is_reported_with_its_line() -> None:
    file = read_prices(
        "item_code,price_cny\nLAB-K,5.5\nLAB-K,6\nLAB-NOPE,1\nLAB-NA,-1\n", packaged_catalog()
    )
    assert [(v.field, v.reason) for v in file.violations] == [
        ("line 3: item_code", "DUPLICATE_ITEM_CODE"),
        ("line 4: item_code", "UNKNOWN_ITEM_CODE"),
        ("line 5: price_cny", "BAD_PRICE"),
    ]


def test_a_mapping_row_stores_catalog_spelling_once_per_item() -> None:
    file = read_code_mappings(
        "local_code,item_codes,description\nBMP,lab-k;LAB-K;LAB-NA,basic panel\nX1,,none\n",
        packaged_catalog(),
    )
    assert file.violations == ()
    assert file.mappings == (
        CodeMapping("BMP", "LAB-K;LAB-NA", "basic panel"),
        CodeMapping("X1", "", "none"),
    )


def test_a_bad_header_reads_no_rows() -> None:
    file = read_code_mappings("local_code,extra\nA,B\n", packaged_catalog())
    assert file.mappings == ()
    assert [v.reason for v in file.violations] == ["UNKNOWN_COLUMN", "MISSING_COLUMN"]
