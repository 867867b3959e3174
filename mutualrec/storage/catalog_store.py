"""Reference data in the index: catalog versions, code mappings, qualifications, prices.

Catalog versions are append-only: each is recorded once with the SHA-256 and the full text of
the file it came from, so any past check can be explained against the catalog it used. The
current catalog is the version loaded last. An institution's code mapping and price list are
replaced as a whole on reload; a qualification is added as one row per held period.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from mutualrec.matching.catalog import Catalog, ItemCategory, load_catalog, packaged_catalog
from mutualrec.matching.facts import InstitutionFacts, InstitutionLevel, Qualification, Scope
from mutualrec.storage import admin_changes
from mutualrec.storage.models import CatalogVersion, CodeMapping, Institution, ItemPrice
from mutualrec.storage.models import Qualification as QualificationRow
from mutualrec.storage.sql import as_utc, insert_ignoring_conflicts
from mutualrec.violations import Rejected, Violation

_PACKAGED_FILE = "data/recognition_items.csv"
# Fits catalog_version.version (32 characters) and reads well in a check's record: 2026.1.
_VERSION_SHAPE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,31}$")
# Yuan to the fen, as in the catalog: savings are summed from these.
_PRICE_SHAPE = re.compile(r"^\d{1,7}(\.\d{1,2})?$")
_FEN = Decimal("0.01")
_LEVELS = {
    "tertiary": InstitutionLevel.TERTIARY,
    "secondary": InstitutionLevel.SECONDARY,
    "primary": InstitutionLevel.PRIMARY,
}
# Column widths of code_mapping, checked up front so a long cell is a violation, not a crash.
_LOCAL_CODE_MAX = 64
_ITEM_CODES_MAX = 400
_DESCRIPTION_MAX = 200

# Parsed catalogs by (sha256, version): parsing 112+ rows on every check would cost more than
# the check. The version is part of the key because the same file may be loaded under two.
_parsed: dict[tuple[str, str], Catalog] = {}


class CatalogConflict(Rejected):
    """A catalog version that is already recorded with other content."""


class NoCatalog(LookupError):
    """No catalog version is recorded yet; see :func:`ensure_packaged_catalog`."""


@dataclass(frozen=True, slots=True)
class CatalogVersionInfo:
    """A recorded catalog version, for listing."""

    version: str
    sha256: str
    loaded_at: dt.datetime
    item_count: int


def ensure_catalog(session: Session, catalog: Catalog, source_text: str) -> bool:
    """Record ``catalog`` (parsed from ``source_text``) as a version; True when newly recorded.

    Recording a version again with the same content is a no-op (False); with other content it
    raises :class:`CatalogConflict`, because a version, once cited by checks, never changes.
    """
    if hashlib.sha256(source_text.encode("utf-8")).hexdigest() != catalog.sha256:
        raise ValueError(f"catalog {catalog.version} was not loaded from the source text given")
    if not _VERSION_SHAPE.match(catalog.version):
        raise Rejected.one(
            f"{catalog.version!r} cannot name a catalog version",
            "version",
            "a version is up to 32 letters, digits, '.', '_' or '-', e.g. 2026.2",
            "BAD_CATALOG_VERSION",
        )
    # The unique constraint on version decides between concurrent loads (two servers starting).
    if insert_ignoring_conflicts(
        session,
        CatalogVersion,
        {
            "version": catalog.version,
            "sha256": catalog.sha256,
            "source_text": source_text,
            "loaded_at": dt.datetime.now(dt.UTC),
        },
    ):
        admin_changes.bump(session)
        return True
    recorded = session.scalar(
        select(CatalogVersion.sha256).where(CatalogVersion.version == catalog.version)
    )
    if recorded == catalog.sha256:
        return False
    raise CatalogConflict(
        f"catalog {catalog.version} is already recorded with other content",
        [
            Violation(
                "version",
                f"catalog {catalog.version} was loaded from a file with SHA-256 {recorded}, "
                f"this one has {catalog.sha256}; a version never changes: load it as a new one",
                "CATALOG_VERSION_EXISTS",
            )
        ],
    )


def ensure_packaged_catalog(session: Session) -> None:
    """Record the catalog shipped with the package when no catalog version is recorded yet."""
    if session.scalar(select(CatalogVersion.id).limit(1)) is not None:
        return
    text = resources.files("mutualrec.matching").joinpath(_PACKAGED_FILE).read_text("utf-8")
    ensure_catalog(session, packaged_catalog(), text)


def _parsed_catalog(session: Session, row_id: int, version: str, sha256: str) -> Catalog:
    catalog = _parsed.get((sha256, version))
    if catalog is None:
        text = session.scalar(select(CatalogVersion.source_text).where(CatalogVersion.id == row_id))
        if text is None:
            raise NoCatalog(f"catalog {version} disappeared while being read")
        catalog = load_catalog(text, version)
        _parsed[(sha256, version)] = catalog
    return catalog


def current_catalog(session: Session) -> Catalog:
    """The catalog version loaded last; raises :class:`NoCatalog` when none is recorded."""
    row = session.execute(
        select(CatalogVersion.id, CatalogVersion.version, CatalogVersion.sha256)
        .order_by(CatalogVersion.id.desc())
        .limit(1)
    ).one_or_none()
    if row is None:
        raise NoCatalog("no catalog version is recorded yet")
    return _parsed_catalog(session, row.id, row.version, row.sha256)


def catalog_for_version(session: Session, version: str) -> Catalog | None:
    """The catalog recorded as ``version``, or None."""
    row = session.execute(
        select(CatalogVersion.id, CatalogVersion.version, CatalogVersion.sha256).where(
            CatalogVersion.version == version
        )
    ).one_or_none()
    return None if row is None else _parsed_catalog(session, row.id, row.version, row.sha256)


def catalog_versions(session: Session) -> list[CatalogVersionInfo]:
    """Every recorded catalog version, oldest first (the last one is current)."""
    rows = session.execute(
        select(
            CatalogVersion.id,
            CatalogVersion.version,
            CatalogVersion.sha256,
            CatalogVersion.loaded_at,
        ).order_by(CatalogVersion.id)
    ).all()
    return [
        CatalogVersionInfo(
            version=row.version,
            sha256=row.sha256,
            loaded_at=as_utc(row.loaded_at),
            item_count=len(_parsed_catalog(session, row.id, row.version, row.sha256).items),
        )
        for row in rows
    ]


def _institution(
    session: Session, code: str, violations: list[Violation], *, lock: bool = False
) -> Institution | None:
    statement = select(Institution).where(Institution.code == code.strip())
    # Locking the institution's row serializes concurrent reloads of its lists on PostgreSQL;
    # SQLite already serializes writers (BEGIN IMMEDIATE).
    institution = session.scalar(statement.with_for_update() if lock else statement)
    if institution is None:
        violations.append(
            Violation("institution", f"no institution with code {code!r}", "UNKNOWN_INSTITUTION")
        )
    return institution


def _csv_rows(
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


def _rejected(what: str, violations: list[Violation]) -> Rejected:
    return Rejected(f"{what} has {len(violations)} problem(s)", violations)


def load_code_mappings(
    session: Session, institution_code: str, csv_text: str, catalog: Catalog
) -> int:
    """Replace an institution's local code mapping with a CSV file; returns the row count.

    Columns ``local_code,item_codes,description``; ``item_codes`` is ';'-separated catalog codes
    (a panel lists each item), empty for a code known to map to no recognized item. Every row is
    checked first: any problem raises :class:`Rejected` listing them all and changes nothing.
    """
    violations: list[Violation] = []
    institution = _institution(session, institution_code, violations, lock=True)
    rows = _csv_rows(csv_text, ("local_code", "item_codes"), ("description",), violations)
    mapped: dict[str, tuple[int, str, str]] = {}
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
        mapped.setdefault(local_code, (line, item_codes, cells["description"]))
    if violations or institution is None:
        raise _rejected(f"the code mapping for {institution_code}", violations)
    session.execute(delete(CodeMapping).where(CodeMapping.institution_id == institution.id))
    loaded_at = dt.datetime.now(dt.UTC)
    session.execute(
        insert(CodeMapping),
        [
            {
                "institution_id": institution.id,
                "local_code": local_code,
                "item_codes": item_codes,
                "description": description,
                "loaded_at": loaded_at,
            }
            for local_code, (_line, item_codes, description) in mapped.items()
        ],
    )
    admin_changes.bump(session)
    return len(mapped)


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


def institution_mappings(session: Session, institution_id: int) -> dict[str, tuple[str, ...]]:
    """An institution's local codes and the item codes each stands for (empty: none)."""
    rows = session.execute(
        select(CodeMapping.local_code, CodeMapping.item_codes).where(
            CodeMapping.institution_id == institution_id
        )
    )
    return {
        local_code: tuple(code for code in item_codes.split(";") if code)
        for local_code, item_codes in rows
    }


def all_institution_mappings(session: Session) -> dict[int, dict[str, tuple[str, ...]]]:
    """Every institution's local code mapping, by institution id (institutions without one
    are absent)."""
    found: dict[int, dict[str, tuple[str, ...]]] = {}
    rows = session.execute(
        select(CodeMapping.institution_id, CodeMapping.local_code, CodeMapping.item_codes)
    )
    for institution_id, local_code, item_codes in rows:
        found.setdefault(institution_id, {})[local_code] = tuple(
            code for code in item_codes.split(";") if code
        )
    return found


def add_qualification(
    session: Session,
    institution_code: str,
    *,
    item_code: str | None,
    category: str | None,
    scope: str,
    valid_from: dt.datetime,
    valid_until: dt.datetime | None,
    catalog: Catalog,
) -> int:
    """Record that an institution holds the "HR" mark for an item or a category; returns its id.

    The mark holds from ``valid_from`` until ``valid_until`` (exclusive; None: still held).
    Raises :class:`Rejected` listing every problem.
    """
    violations: list[Violation] = []
    institution = _institution(session, institution_code, violations)
    stored_item: str | None = None
    stored_category: str | None = None
    if (item_code is None) == (category is None):
        violations.append(
            Violation(
                "item_code",
                "a qualification names exactly one of an item and a category",
                "ITEM_OR_CATEGORY",
            )
        )
    elif item_code is not None:
        item = catalog.get(item_code)
        if item is None:
            violations.append(
                Violation(
                    "item_code",
                    f"{item_code} is not an item of catalog {catalog.version}",
                    "UNKNOWN_ITEM_CODE",
                )
            )
        else:
            stored_item = item.code
    elif category is not None:
        try:
            stored_category = ItemCategory(category.strip().lower()).value
        except ValueError:
            violations.append(
                Violation(
                    "category", f"category is lab or imaging, got {category!r}", "UNKNOWN_CATEGORY"
                )
            )
    try:
        stored_scope = Scope(scope.strip().lower()).value
    except ValueError:
        violations.append(
            Violation("scope", f"scope is city, region or national, got {scope!r}", "UNKNOWN_SCOPE")
        )
    _check_period(valid_from, valid_until, violations)
    if violations or institution is None:
        raise _rejected(f"the qualification of {institution_code}", violations)
    row = QualificationRow(
        institution_id=institution.id,
        item_code=stored_item,
        category=stored_category,
        scope=stored_scope,
        # SQLite drops the offset of what it stores: write UTC everywhere.
        valid_from=valid_from.astimezone(dt.UTC),
        valid_until=None if valid_until is None else valid_until.astimezone(dt.UTC),
    )
    session.add(row)
    session.flush()
    admin_changes.bump(session)
    return row.id


def _check_period(
    valid_from: dt.datetime, valid_until: dt.datetime | None, violations: list[Violation]
) -> None:
    aware = True
    for name, moment in (("valid_from", valid_from), ("valid_until", valid_until)):
        if moment is not None and moment.utcoffset() is None:
            aware = False
            violations.append(
                Violation(
                    name,
                    f"{moment.isoformat()} has no time zone; give one, e.g. +08:00",
                    "NAIVE_DATETIME",
                )
            )
    if aware and valid_until is not None and valid_until <= valid_from:
        violations.append(
            Violation(
                "valid_until",
                f"the qualification must end after it starts ({valid_from.isoformat()})",
                "ENDS_BEFORE_START",
            )
        )


def qualifications(session: Session) -> list[Qualification]:
    """Every recorded qualification, with its institution's code, in the order added."""
    rows = session.execute(
        select(QualificationRow, Institution.code)
        .join(Institution, Institution.id == QualificationRow.institution_id)
        .order_by(QualificationRow.id)
    )
    return [
        Qualification(
            institution_code=code,
            item_code=row.item_code,
            category=None if row.category is None else ItemCategory(row.category),
            scope=Scope(row.scope),
            valid_from=as_utc(row.valid_from),
            valid_until=None if row.valid_until is None else as_utc(row.valid_until),
        )
        for row, code in rows
    ]


def load_prices(session: Session, institution_code: str, csv_text: str, catalog: Catalog) -> int:
    """Replace an institution's own price list with a CSV file; returns the row count.

    Columns ``item_code,price_cny``; a price is yuan, at most two decimals, not negative. Every
    row is checked first: any problem raises :class:`Rejected` listing them all.
    """
    violations: list[Violation] = []
    institution = _institution(session, institution_code, violations, lock=True)
    rows = _csv_rows(csv_text, ("item_code", "price_cny"), (), violations)
    prices: dict[str, tuple[int, Decimal]] = {}
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
            prices.setdefault(item.code, (line, Decimal(raw).quantize(_FEN)))
    if violations or institution is None:
        raise _rejected(f"the price list of {institution_code}", violations)
    session.execute(delete(ItemPrice).where(ItemPrice.institution_id == institution.id))
    loaded_at = dt.datetime.now(dt.UTC)
    session.execute(
        insert(ItemPrice),
        [
            {
                "institution_id": institution.id,
                "item_code": item_code,
                "price": str(price),
                "loaded_at": loaded_at,
            }
            for item_code, (_line, price) in prices.items()
        ],
    )
    admin_changes.bump(session)
    return len(prices)


def price_list(session: Session, institution_id: int) -> dict[str, Decimal]:
    """An institution's own prices by item code (empty when it loaded none)."""
    rows = session.execute(
        select(ItemPrice.item_code, ItemPrice.price).where(
            ItemPrice.institution_id == institution_id
        )
    )
    return {item_code: Decimal(price) for item_code, price in rows}


def institution_facts(session: Session) -> dict[int, InstitutionFacts]:
    """Every institution as the recognition rules see it, by id."""
    return {
        row.id: InstitutionFacts(
            code=row.code,
            name=row.name,
            level=_LEVELS[row.level],
            city=row.city,
            region=row.region,
        )
        for row in session.scalars(select(Institution))
    }
