"""The catalog of recognized items: versioned package data, validated as a whole when loaded.

The catalog is a CSV file shipped with the package (``data/recognition_items.csv``). The loader
also reads the researched draft's shape (``validity_days`` instead of ``validity``, no
``contrast``/``header_match``/``satisfies``/``specimen_loinc``/``panel_requires`` columns), so
an official list in that shape can be checked with the same code before it replaces the
packaged one.

Two lab columns say how results map beyond their own LOINC code:

- ``specimen_loinc``: LOINC codes of the same analyte measured in another specimen (serum or
  plasma, whole blood, capillary blood) that the region treats as this item. They map like the
  item's own codes; the column is where the equivalence is stated.
- ``panel_requires``: the item is a panel (a complete blood count, a urinalysis). Its ``loinc``
  codes are panel codes, carried by a DiagnosticReport or a grouping Observation, never by a
  result with a value; the panel counts only when the group holds a result for every required
  analyte. Analytes are separated by ``;``, alternative codes of one analyte by ``|``.

And two say how its values are shown: ``unit``, the canonical UCUM unit results are converted
to for display and comparison (mmol/L for glucose, as the region's doctors read it), and
``molar_mass`` in g/mol, for converting a mass concentration (mg/dL) to a substance one.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import functools
import hashlib
import io
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources

from mutualrec.matching.body_part import normalize_body_part
from mutualrec.matching.ucum import is_ucum
from mutualrec.money import to_fen
from mutualrec.violations import Rejected, Violation

CATALOG_VERSION = "2026.2"
_PACKAGED_FILE = "data/recognition_items.csv"

_BASE_COLUMNS = (
    "code",
    "name_zh",
    "name_en",
    "category",
    "loinc",
    "modality",
    "body_part",
    "price_cny",
    "source",
)
_OPTIONAL_COLUMNS = (
    "contrast",
    "header_match",
    "satisfies",
    "specimen_loinc",
    "panel_requires",
    "unit",
    "molar_mass",
)
_VALIDITY_COLUMNS = ("validity", "validity_days")

_ITEM_CODE_SHAPE = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*$")
_LOINC_SHAPE = re.compile(r"^(\d{1,7})-(\d)$")
_MODALITY_SHAPE = re.compile(r"^[A-Z0-9_]{1,16}$")
_VALIDITY_SHAPE = re.compile(r"^(\d{1,5})([dh])$")
_VALIDITY_DAYS_SHAPE = re.compile(r"^\d{1,5}$")
# Yuan to the fen: the saving a regulator sums must not depend on float rounding.
_PRICE_SHAPE = re.compile(r"^\d{1,7}(\.\d{1,2})?$")
_FLAGS = {"yes": True, "no": False}

# Reports one bad field of the row being parsed: (column, description, reason code).
_Fail = Callable[[str, str, str], None]

HeaderKey = tuple[str, str, bool]
"""(modality, normalized body part, contrast): what a DICOM header says about a study."""


class ItemCategory(enum.Enum):
    """Lab results (检验) and exam results (检查: imaging, ECG...), as the catalog names them."""

    LAB = "lab"
    IMAGING = "imaging"


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """One recognized item type, with everything matching needs to know about it."""

    code: str
    name_zh: str
    name_en: str
    category: ItemCategory
    loinc: tuple[str, ...]
    modality: str
    body_part: str
    contrast: bool
    header_match: bool
    validity: dt.timedelta
    # Integer fen (see mutualrec.money).
    reference_price_fen: int
    satisfies: tuple[str, ...]
    source: str
    # Same analyte in another specimen, treated as this item (see the module docstring).
    specimen_loinc: tuple[str, ...] = ()
    # For a panel: per required analyte, its alternative LOINC codes.
    panel_requires: tuple[tuple[str, ...], ...] = ()
    # Canonical UCUM unit of the item's values, and the analyte's molar mass (g/mol).
    unit: str = ""
    molar_mass: Decimal | None = None

    @property
    def is_panel(self) -> bool:
        """Whether the item is a panel, recognized from a group of results."""
        return bool(self.panel_requires)

    @property
    def header_key(self) -> HeaderKey:
        """The DICOM header facts that identify this item's studies."""
        return (self.modality, self.body_part, self.contrast)


class CatalogError(Rejected):
    """A catalog file that cannot be loaded; ``violations`` lists every problem by line."""


class Catalog:
    """A loaded, validated catalog version. Build it with :func:`load_catalog`."""

    __slots__ = (
        "_by_code",
        "_by_header",
        "_by_loinc",
        "_items",
        "_result_by_loinc",
        "_satisfiers",
        "_sha256",
        "_version",
    )

    def __init__(self, version: str, sha256: str, items: Sequence[CatalogItem]) -> None:
        self._version = version
        self._sha256 = sha256
        self._items = tuple(items)
        self._by_code = {item.code.upper(): item for item in self._items}
        self._by_loinc = {
            code: item for item in self._items for code in (*item.loinc, *item.specimen_loinc)
        }
        self._result_by_loinc = {
            code: item for code, item in self._by_loinc.items() if not item.is_panel
        }
        self._by_header = {
            item.header_key: item
            for item in self._items
            if item.category is ItemCategory.IMAGING and item.header_match
        }
        self._satisfiers = _satisfier_closure(self._items)

    @property
    def version(self) -> str:
        """The catalog version answers cite, e.g. ``2026.1``."""
        return self._version

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the source text, to tell two loads of "the same" version apart."""
        return self._sha256

    @property
    def items(self) -> tuple[CatalogItem, ...]:
        """Every item, in file order."""
        return self._items

    def get(self, code: str) -> CatalogItem | None:
        """The item with this code (case-insensitive), or None."""
        return self._by_code.get(code.strip().upper())

    def item_for_loinc(self, loinc: str) -> CatalogItem | None:
        """The item a LOINC code stands for (an ordered code: panels included), or None."""
        return self._by_loinc.get(loinc.strip())

    def item_for_result_loinc(self, loinc: str) -> CatalogItem | None:
        """The item one result with this LOINC code is, or None: never a panel, which only a
        group of results makes (see :meth:`panel_for_loinc`)."""
        return self._result_by_loinc.get(loinc.strip())

    def panel_for_loinc(self, loinc: str) -> CatalogItem | None:
        """The panel item a report or grouping Observation with this LOINC code stands for."""
        item = self._by_loinc.get(loinc.strip())
        return item if item is not None and item.is_panel else None

    def item_for_header(self, modality: str, body_part: str, contrast: bool) -> CatalogItem | None:
        """The item a study maps to from its header alone, or None.

        ``body_part`` must already be normalized (see :func:`normalize_body_part`). Only items
        marked ``header_match`` answer: where several items share a header key, the header
        cannot tell them apart and only the natural default is returned.
        """
        return self._by_header.get((modality.strip().upper(), body_part.strip().upper(), contrast))

    def satisfiers(self, code: str) -> frozenset[str]:
        """``code`` and every item whose result also satisfies an order of it, transitively.

        Raises KeyError for a code the catalog does not hold.
        """
        item = self.get(code)
        if item is None:
            raise KeyError(f"{code!r} is not an item of catalog {self._version}")
        return self._satisfiers[item.code]


def _satisfier_closure(items: Sequence[CatalogItem]) -> dict[str, frozenset[str]]:
    satisfied_by: dict[str, set[str]] = {item.code: set() for item in items}
    for item in items:
        for target in item.satisfies:
            if target in satisfied_by:
                satisfied_by[target].add(item.code)
    closure: dict[str, frozenset[str]] = {}
    for item in items:
        seen = {item.code}
        pending = [item.code]
        while pending:
            for source in satisfied_by[pending.pop()]:
                if source not in seen:
                    seen.add(source)
                    pending.append(source)
        closure[item.code] = frozenset(seen)
    return closure


def loinc_check_digit(body: str) -> int:
    """The LOINC mod-10 check digit of ``body``, the digits before the hyphen.

    From the right, the digits in odd positions form a number that is doubled; the digits in
    even positions are appended; the check digit brings the sum of all those digits up to the
    next multiple of ten.
    """
    reversed_digits = body[::-1]
    doubled = str(int(reversed_digits[0::2]) * 2)
    total = sum(int(digit) for digit in doubled + reversed_digits[1::2])
    return (10 - total % 10) % 10


def is_loinc(code: str) -> bool:
    """Whether ``code`` is shaped like a LOINC code and its check digit is right."""
    match = _LOINC_SHAPE.match(code)
    return match is not None and loinc_check_digit(match.group(1)) == int(match.group(2))


@functools.cache
def packaged_catalog() -> Catalog:
    """The catalog shipped with this package (version :data:`CATALOG_VERSION`)."""
    text = resources.files("mutualrec.matching").joinpath(_PACKAGED_FILE).read_text("utf-8")
    # Its units were checked in full by the tests before it shipped.
    return load_catalog(text, CATALOG_VERSION, units_checked=True)


def load_catalog(text: str, version: str, *, units_checked: bool = False) -> Catalog:
    """Parse and validate a catalog CSV; raise :class:`CatalogError` listing every problem.

    ``units_checked``: the text's UCUM units were parsed when it was first loaded (a recorded
    or the packaged version), so they are not parsed again. The UCUM grammar costs a second and
    about 30 MiB to load, which a server reading its recorded catalog at start-up need not pay.
    """
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    # Spreadsheets save UTF-8 CSV with a byte-order mark.
    text = text.removeprefix("\ufeff")
    violations: list[Violation] = []
    records = list(_records(text))
    if not records:
        raise CatalogError.one(
            f"catalog {version} is empty", "line 1", "the file has no header row", "EMPTY_CATALOG"
        )
    header_line, header = records[0]
    columns = _check_header(header_line, header, violations)
    rows: list[_Row] = []
    if columns is not None:
        for line, cells in records[1:]:
            if len(cells) != len(header):
                violations.append(
                    Violation(
                        f"line {line}",
                        f"the row has {len(cells)} fields, the header names {len(header)}",
                        "BAD_ROW_LENGTH",
                    )
                )
                continue
            rows.append(
                _parse_row(line, dict(zip(columns, cells, strict=True)), violations, units_checked)
            )
        if not rows:
            violations.append(Violation("line 2", "the catalog holds no items", "EMPTY_CATALOG"))
    _check_across_rows(rows, violations)
    if violations:
        raise CatalogError(
            f"catalog {version} has {len(violations)} problem(s)",
            sorted(violations, key=_line_order),
        )
    return Catalog(version, digest, [row.item for row in rows])


def _records(text: str) -> Iterable[tuple[int, list[str]]]:
    """Non-blank CSV records with the line each starts on (a quoted field may span lines)."""
    reader = csv.reader(io.StringIO(text))
    next_line = 1
    for cells in reader:
        line = next_line
        next_line = reader.line_num + 1
        if any(cell.strip() for cell in cells):
            yield line, cells


def _check_header(line: int, header: list[str], violations: list[Violation]) -> list[str] | None:
    """The column names, or None when the header is unusable (the rows would be misread)."""
    columns = [name.strip() for name in header]
    known = set(_BASE_COLUMNS) | set(_OPTIONAL_COLUMNS) | set(_VALIDITY_COLUMNS)
    before = len(violations)
    for name in columns:
        if name not in known:
            violations.append(
                Violation(f"line {line}: {name}", f"unknown column {name!r}", "UNKNOWN_COLUMN")
            )
    for name in sorted({name for name in columns if columns.count(name) > 1}):
        violations.append(
            Violation(f"line {line}: {name}", f"column {name!r} appears twice", "DUPLICATE_COLUMN")
        )
    for name in _BASE_COLUMNS:
        if name not in columns:
            violations.append(
                Violation(f"line {line}: {name}", f"column {name!r} is missing", "MISSING_COLUMN")
            )
    validity = [name for name in _VALIDITY_COLUMNS if name in columns]
    if len(validity) != 1:
        violations.append(
            Violation(
                f"line {line}: validity",
                "exactly one of the columns 'validity' and 'validity_days' is required",
                "MISSING_COLUMN" if not validity else "DUPLICATE_COLUMN",
            )
        )
    return columns if len(violations) == before else None


@dataclass(frozen=True, slots=True)
class _Row:
    """A parsed row; ``item`` holds placeholders where a field was bad."""

    line: int
    item: CatalogItem
    category_known: bool


def _parse_row(
    line: int, cells: Mapping[str, str], violations: list[Violation], units_checked: bool
) -> _Row:
    def fail(column: str, description: str, reason: str) -> None:
        violations.append(Violation(f"line {line}: {column}", description, reason))

    code = cells["code"].strip()
    if not _ITEM_CODE_SHAPE.match(code):
        fail(
            "code",
            f"an item code is upper-case letters and digits joined by '-', got {code!r}",
            "BAD_ITEM_CODE",
        )
    names = {column: cells[column].strip() for column in ("name_zh", "name_en")}
    for column, name in names.items():
        if not name:
            fail(column, "the item needs a name", "MISSING_NAME")

    raw_category = cells["category"].strip().lower()
    modality = cells["modality"].strip()
    body_part = cells["body_part"].strip()
    try:
        category = ItemCategory(raw_category)
        category_known = True
    except ValueError:
        fail(
            "category",
            f"category must be 'lab' or 'imaging', got {cells['category'].strip()!r}",
            "UNKNOWN_CATEGORY",
        )
        # Guess from the row so one wrong word does not bury the file in follow-on complaints.
        category = ItemCategory.IMAGING if modality else ItemCategory.LAB
        category_known = False

    loinc = _loinc_list(cells["loinc"], "loinc", fail)
    specimen_loinc = _loinc_list(cells.get("specimen_loinc", ""), "specimen_loinc", fail)
    panel_requires = tuple(
        _loinc_list(analyte.replace("|", ";"), "panel_requires", fail)
        for analyte in cells.get("panel_requires", "").split(";")
        if analyte.strip()
    )

    imaging = category is ItemCategory.IMAGING
    contrast = _flag(cells, "contrast", default=False, fail=fail)
    header_match = _flag(cells, "header_match", default=imaging, fail=fail)
    if imaging:
        _check_imaging_key(modality, body_part, fail)
        for column, values in (
            ("specimen_loinc", specimen_loinc),
            ("panel_requires", panel_requires),
        ):
            if values:
                fail(column, f"an imaging item has no {column}", "LAB_FIELD_ON_IMAGING_ITEM")
    else:
        if panel_requires and not loinc:
            fail("loinc", "a panel needs the panel codes that stand for it", "PANEL_WITHOUT_CODE")
        for column, present in (
            ("modality", bool(modality)),
            ("body_part", bool(body_part)),
            ("contrast", contrast),
            ("header_match", header_match),
        ):
            if present:
                fail(column, f"a lab item has no {column}", "IMAGING_FIELD_ON_LAB_ITEM")

    unit, molar_mass = _unit_columns(cells, imaging, fail, units_checked)

    validity_column = "validity" if "validity" in cells else "validity_days"
    validity = _validity(cells[validity_column].strip(), validity_column, fail)

    raw_price = cells["price_cny"].strip()
    if _PRICE_SHAPE.match(raw_price):
        price = to_fen(raw_price)
    else:
        fail(
            "price_cny",
            f"a price is a non-negative amount in yuan, at most two decimals; got {raw_price!r}",
            "BAD_PRICE",
        )
        price = 0

    satisfies = tuple(
        part.strip().upper() for part in cells.get("satisfies", "").split(";") if part.strip()
    )
    item = CatalogItem(
        code=code,
        name_zh=names["name_zh"],
        name_en=names["name_en"],
        category=category,
        loinc=loinc,
        modality=modality.upper(),
        body_part=body_part.upper(),
        contrast=contrast,
        header_match=header_match and imaging,
        validity=validity,
        reference_price_fen=price,
        satisfies=satisfies,
        source=cells["source"].strip(),
        specimen_loinc=specimen_loinc,
        panel_requires=panel_requires,
        unit=unit,
        molar_mass=molar_mass,
    )
    return _Row(line, item, category_known)


_MOLAR_MASS_SHAPE = re.compile(r"^\d{1,7}(\.\d{1,4})?$")


def _unit_columns(
    cells: Mapping[str, str], imaging: bool, fail: _Fail, units_checked: bool
) -> tuple[str, Decimal | None]:
    unit = cells.get("unit", "").strip()
    raw_mass = cells.get("molar_mass", "").strip()
    if imaging:
        for column, value in (("unit", unit), ("molar_mass", raw_mass)):
            if value:
                fail(column, f"an imaging item has no {column}", "LAB_FIELD_ON_IMAGING_ITEM")
        return "", None
    if unit and not units_checked and not is_ucum(unit):
        fail("unit", f"{unit!r} is not a UCUM unit", "NOT_UCUM")
    if not raw_mass:
        return unit, None
    if not _MOLAR_MASS_SHAPE.match(raw_mass) or Decimal(raw_mass) <= 0:
        fail(
            "molar_mass",
            f"a molar mass is a positive number of g/mol, got {raw_mass!r}",
            "BAD_MOLAR_MASS",
        )
        return unit, None
    return unit, Decimal(raw_mass)


def _loinc_list(raw: str, column: str, fail: _Fail) -> tuple[str, ...]:
    codes = tuple(part.strip() for part in raw.split(";") if part.strip())
    for code_text in codes:
        match = _LOINC_SHAPE.match(code_text)
        if match is None:
            fail(column, f"{code_text!r} is not a LOINC code (digits-digit)", "BAD_LOINC_SYNTAX")
        elif loinc_check_digit(match.group(1)) != int(match.group(2)):
            fail(
                column,
                f"{code_text}: the LOINC check digit of {match.group(1)} is "
                f"{loinc_check_digit(match.group(1))}, not {match.group(2)}",
                "BAD_LOINC_CHECK_DIGIT",
            )
    return codes


def _flag(cells: Mapping[str, str], column: str, *, default: bool, fail: _Fail) -> bool:
    raw = cells.get(column, "").strip().lower()
    if not raw:
        return default
    if raw not in _FLAGS:
        fail(column, f"{column} must be 'yes' or 'no', got {raw!r}", "BAD_FLAG")
        return default
    return _FLAGS[raw]


def _check_imaging_key(modality: str, body_part: str, fail: _Fail) -> None:
    if not modality:
        fail("modality", "an imaging item needs the DICOM modality", "MISSING_MODALITY")
    elif not _MODALITY_SHAPE.match(modality):
        fail("modality", f"{modality!r} is not a DICOM modality code", "BAD_MODALITY")
    if not body_part:
        fail("body_part", "an imaging item needs the body part", "MISSING_BODY_PART")
        return
    normalized = normalize_body_part(body_part)
    if normalized != body_part:
        hint = (
            f"write {normalized}"
            if normalized
            else "it is not a PS3.16 Annex L term that body_part.py knows"
        )
        fail(
            "body_part",
            f"{body_part!r} is not a normalized body part: {hint}",
            "BODY_PART_NOT_NORMALIZED",
        )


def _validity(raw: str, column: str, fail: _Fail) -> dt.timedelta:
    if column == "validity_days":
        match = _VALIDITY_DAYS_SHAPE.match(raw)
        window = dt.timedelta(days=int(raw)) if match else None
        expected = "a whole number of days"
    else:
        match = _VALIDITY_SHAPE.match(raw)
        window = None
        if match:
            amount = int(match.group(1))
            unit = match.group(2)
            window = dt.timedelta(days=amount) if unit == "d" else dt.timedelta(hours=amount)
        expected = "a whole number of days or hours, written like 30d or 6h"
    if window is None or window <= dt.timedelta(0):
        fail(
            column,
            f"the validity window must be {expected}, above zero; got {raw!r}",
            "BAD_VALIDITY",
        )
        return dt.timedelta(0)
    return window


def _check_across_rows(rows: Sequence[_Row], violations: list[Violation]) -> None:
    by_code: dict[str, _Row] = {}
    for row in rows:
        key = row.item.code.upper()
        if key in by_code:
            violations.append(
                Violation(
                    f"line {row.line}: code",
                    f"item code {row.item.code} is already used on line {by_code[key].line}",
                    "DUPLICATE_ITEM_CODE",
                )
            )
        else:
            by_code[key] = row

    loinc_owner: dict[str, _Row] = {}
    for row in rows:
        codes = (*row.item.loinc, *row.item.specimen_loinc)
        for code in codes:
            owner = loinc_owner.setdefault(code, row)
            if owner is not row or codes.count(code) > 1:
                violations.append(
                    Violation(
                        f"line {row.line}: loinc",
                        f"LOINC {code} already maps to {owner.item.code} (line {owner.line})",
                        "DUPLICATE_LOINC",
                    )
                )

    for row in rows:
        for target in row.item.satisfies:
            target_row = by_code.get(target)
            if target_row is None:
                violations.append(
                    Violation(
                        f"line {row.line}: satisfies",
                        f"{target} is not an item of this catalog",
                        "UNKNOWN_SATISFIES_TARGET",
                    )
                )
            elif (
                row.category_known
                and target_row.category_known
                and target_row.item.category is not row.item.category
            ):
                violations.append(
                    Violation(
                        f"line {row.line}: satisfies",
                        f"a {row.item.category.value} item cannot satisfy {target}, "
                        f"a {target_row.item.category.value} item",
                        "SATISFIES_ACROSS_CATEGORIES",
                    )
                )
    _check_cycles(rows, by_code, violations)
    _check_header_keys(rows, violations)


def _check_cycles(
    rows: Sequence[_Row], by_code: Mapping[str, _Row], violations: list[Violation]
) -> None:
    edges = {
        row.item.code.upper(): [target for target in row.item.satisfies if target in by_code]
        for row in rows
    }
    for row in rows:
        start = row.item.code.upper()
        path = _path_back(start, edges)
        if path is not None:
            chain = " -> ".join(by_code[code].item.code for code in path)
            violations.append(
                Violation(
                    f"line {row.line}: satisfies",
                    f"satisfies relation loops: {chain}",
                    "SATISFIES_CYCLE",
                )
            )


def _path_back(start: str, edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A path start -> ... -> start along ``edges``, or None."""
    parent: dict[str, str] = {}
    pending = [start]
    while pending:
        node = pending.pop()
        for nxt in edges.get(node, ()):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if nxt not in parent:
                parent[nxt] = node
                pending.append(nxt)
    return None


def _check_header_keys(rows: Sequence[_Row], violations: list[Violation]) -> None:
    default_for: dict[HeaderKey, _Row] = {}
    for row in rows:
        item = row.item
        if item.category is not ItemCategory.IMAGING or not item.header_match:
            continue
        first = default_for.setdefault(item.header_key, row)
        if first is not row:
            modality, body_part, contrast = item.header_key
            violations.append(
                Violation(
                    f"line {row.line}: header_match",
                    f"{modality} {body_part} {'with' if contrast else 'without'} contrast already "
                    f"maps to {first.item.code} (line {first.line}); only one item per header key "
                    "may have header_match=yes",
                    "AMBIGUOUS_HEADER_MATCH",
                )
            )


def _line_order(violation: Violation) -> tuple[int, str]:
    match = re.match(r"^line (\d+)", violation.field)
    return (int(match.group(1)) if match else 0, violation.field)
