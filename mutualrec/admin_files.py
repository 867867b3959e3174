"""Administrators' CSV files, read and checked against the catalog: an institution's local code
mapping and its own price list. Pure: nothing here touches the index, so every rule is tested
alone; storage receives only the checked rows.

Every row is checked first and every problem is reported at once, with the line it is on, so an
administrator fixes the whole file in one pass.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mutualrec.matching.catalog import Catalog
from mutualrec.money import to_fen
from mutualrec.violations import Violation

# Yuan to the fen, as in the catalog: savings are summed from these.
_PRICE_SHAPE = re.compile(r"^\d{1,7}(\.\d{1,2})?$")
# Column widths of code_mapping, checked up front so a long cell is a violation, not a crash.
_LOCAL_CODE_MAX = 64
_ITEM_CODES_MAX = 400
_DESCRIPTION_MAX = 200


@dataclass(frozen=True, slots=True)
class CodeMapping:
    """One local code of an institution and the catalog items it stands for."""

    local_code: str
    # Catalog spelling, ';'-joined, each once; empty: the code maps to no recognized item.
    item_codes: str
    description: str


@dataclass(frozen=True, slots=True)
class ItemPrice:
    """An institution's own price of one catalog item."""

    item_code: str
    # Integer fen: yuan with at most two decimals, exactly.
    price_fen: int


@dataclass(frozen=True, slots=True)
class CodeMappingFile:
    """A code mapping file as read: its rows, and its problems (none: it may be loaded)."""

    mappings: tuple[CodeMapping, ...]
    violations: tuple[Violation, ...]


@dataclass(frozen=True, slots=True)
class PriceFile:
    """A price list file as read: its rows, and its problems (none: it may be loaded)."""

    prices: tuple[ItemPrice, ...]
    violations: tuple[Violation, ...]


def csv_rows(
    text: str, required: Sequence[str], optional: Sequence[str], violations: list[Violation]
) -> list[tuple[int, dict[str, str]]]:
    """The non-blank data rows of a CSV file with the line each starts on.

    Header problems are added to ``violations`` and no rows are returned: with an unusable
    header every row would be misread.
    """
    # Spreadsheets save UTF-8 CSV with a byte-order mark.
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    records: list[tuple[int, list[str]]] = []
    next_line = 1
    for cells in reader:
        line = next_line
        next_line = reader.line_num + 1
        if any(cell.strip() for cell in cells):
            records.append((line, cells))
    if not records:
        violations.append(Violation("line 1", "the file has no header row", "EMPTY_FILE"))
        return []
    header_line, header = records[0]
    columns = [name.strip() for name in header]
    before = len(violations)
    for name in columns:
        if name not in required and name not in optional:
            violations.append(
                Violation(
                    f"line {header_line}: {name}", f"unknown column {name!r}", "UNKNOWN_COLUMN"
                )
            )
    for name in sorted({name for name in columns if columns.count(name) > 1}):
        violations.append(
            Violation(
                f"line {header_line}: {name}", f"column {name!r} appears twice", "DUPLICATE_COLUMN"
            )
        )
    for name in required:
        if name not in columns:
            violations.append(
                Violation(
                    f"line {header_line}: {name}", f"column {name!r} is missing", "MISSING_COLUMN"
                )
            )
    if len(violations) > before:
        return []
    rows: list[tuple[int, dict[str, str]]] = []
    for line, cells in records[1:]:
        if len(cells) != len(columns):
            violations.append(
                Violation(
                    f"line {line}",
                    f"the row has {len(cells)} fields, the header names {len(columns)}",
                    "BAD_ROW_LENGTH",
                )
            )
            continue
        row = dict.fromkeys(optional, "")
        row.update(zip(columns, (cell.strip() for cell in cells), strict=True))
        rows.append((line, row))
    if len(records) == 1:
        violations.append(
            Violation(f"line {header_line + 1}", "the file has no rows after its header", "NO_ROWS")
        )
    return rows


def read_code_mappings(csv_text: str, catalog: Catalog) -> CodeMappingFile:
    """An institution's local code mapping file, checked against ``catalog``.

    Columns ``local_code,item_codes,description``; ``item_codes`` is ';'-separated catalog codes
    (a panel lists each item), empty for a code known to map to no recognized item.
    """
    violations: list[Violation] = []
    rows = csv_rows(csv_text, ("local_code", "item_codes"), ("description",), violations)
    mapped: dict[str, tuple[int, CodeMapping]] = {}
    for line, cells in rows:
        local_code = cells["local_code"]
        if not local_code:
            violations.append(
                Violation(
                    f"line {line}: local_code", "the local code is empty", "MISSING_LOCAL_CODE"
                )
            )
        elif len(local_code) > _LOCAL_CODE_MAX:
            violations.append(
                Violation(
                    f"line {line}: local_code",
                    f"a local code has at most {_LOCAL_CODE_MAX} characters",
                    "LOCAL_CODE_TOO_LONG",
                )
            )
        elif local_code in mapped:
            violations.append(
                Violation(
                    f"line {line}: local_code",
                    f"{local_code} is already mapped on line {mapped[local_code][0]}",
                    "DUPLICATE_LOCAL_CODE",
                )
            )
        item_codes = _mapped_items(line, cells["item_codes"], catalog, violations)
        if len(item_codes) > _ITEM_CODES_MAX:
            violations.append(
                Violation(
                    f"line {line}: item_codes",
                    f"the item codes take at most {_ITEM_CODES_MAX} characters",
                    "ITEM_CODES_TOO_LONG",
                )
            )
        if len(cells["description"]) > _DESCRIPTION_MAX:
            violations.append(
                Violation(
                    f"line {line}: description",
                    f"a description has at most {_DESCRIPTION_MAX} characters",
                    "DESCRIPTION_TOO_LONG",
                )
            )
        mapped.setdefault(
            local_code, (line, CodeMapping(local_code, item_codes, cells["description"]))
        )
    return CodeMappingFile(tuple(row for _line, row in mapped.values()), tuple(violations))


def _mapped_items(line: int, raw: str, catalog: Catalog, violations: list[Violation]) -> str:
    """The row's item codes as stored: catalog spelling, ';'-joined, each once."""
    codes: dict[str, None] = {}
    for part in (part.strip() for part in raw.split(";")):
        if not part:
            continue
        item = catalog.get(part)
        if item is None:
            violations.append(
                Violation(
                    f"line {line}: item_codes",
                    f"{part} is not an item of catalog {catalog.version}",
                    "UNKNOWN_ITEM_CODE",
                )
            )
        else:
            codes[item.code] = None
    return ";".join(codes)


def read_prices(csv_text: str, catalog: Catalog) -> PriceFile:
    """An institution's own price list file, checked against ``catalog``.

    Columns ``item_code,price_cny``; a price is yuan, at most two decimals, not negative.
    """
    violations: list[Violation] = []
    rows = csv_rows(csv_text, ("item_code", "price_cny"), (), violations)
    prices: dict[str, tuple[int, int]] = {}
    for line, cells in rows:
        item = catalog.get(cells["item_code"])
        if item is None:
            violations.append(
                Violation(
                    f"line {line}: item_code",
                    f"{cells['item_code']!r} is not an item of catalog {catalog.version}",
                    "UNKNOWN_ITEM_CODE",
                )
            )
        elif item.code in prices:
            violations.append(
                Violation(
                    f"line {line}: item_code",
                    f"{item.code} already has a price on line {prices[item.code][0]}",
                    "DUPLICATE_ITEM_CODE",
                )
            )
        raw = cells["price_cny"]
        if not _PRICE_SHAPE.match(raw):
            violations.append(
                Violation(
                    f"line {line}: price_cny",
                    f"a price is a non-negative amount in yuan, at most two decimals; got {raw!r}",
                    "BAD_PRICE",
                )
            )
        elif item is not None:
            prices.setdefault(item.code, (line, to_fen(raw)))
    return PriceFile(
        tuple(ItemPrice(code, fen) for code, (_line, fen) in prices.items()), tuple(violations)
    )
