"""Reference data in the index: catalog versions, code mappings, qualifications, prices.

Catalog versions are append-only: each is recorded once with the SHA-256 and the full text of
the file it came from, so any past check can be explained against the catalog it used. The
current catalog is the version loaded last. An institution's code mapping and price list are
replaced as a whole on reload; a qualification is added as one row per held period.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from mutualrec.admin_files import CodeMappingFile, PriceFile
from mutualrec.matching.catalog import Catalog, ItemCategory, load_catalog, packaged_catalog
from mutualrec.matching.facts import InstitutionFacts, InstitutionLevel, Qualification, Scope
from mutualrec.money import to_fen, yuan
from mutualrec.storage import admin_changes
from mutualrec.storage.models import CatalogVersion, CodeMapping, Institution, ItemPrice
from mutualrec.storage.models import Qualification as QualificationRow
from mutualrec.storage.sql import as_utc, insert_ignoring_conflicts
from mutualrec.violations import Rejected, Violation

_PACKAGED_FILE = "data/recognition_items.csv"
# Fits catalog_version.version (32 characters) and reads well in a check's record: 2026.1.
_VERSION_SHAPE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,31}$")
_LEVELS = {
    "tertiary": InstitutionLevel.TERTIARY,
    "secondary": InstitutionLevel.SECONDARY,
    "primary": InstitutionLevel.PRIMARY,
}

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
        # Recorded only after a full validation.
        catalog = load_catalog(text, version, units_checked=True)
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


def _rejected(what: str, violations: list[Violation]) -> Rejected:
    return Rejected(f"{what} has {len(violations)} problem(s)", violations)


def replace_code_mappings(session: Session, institution_code: str, file: CodeMappingFile) -> int:
    """Replace an institution's local code mapping with a file's rows; returns the row count.

    Any problem of the file, or an unknown institution, raises :class:`Rejected` listing them
    all and changes nothing.
    """
    violations: list[Violation] = []
    institution = _institution(session, institution_code, violations, lock=True)
    violations.extend(file.violations)
    if violations or institution is None:
        raise _rejected(f"the code mapping for {institution_code}", violations)
    session.execute(delete(CodeMapping).where(CodeMapping.institution_id == institution.id))
    loaded_at = dt.datetime.now(dt.UTC)
    session.execute(
        insert(CodeMapping),
        [
            {
                "institution_id": institution.id,
                "local_code": row.local_code,
                "item_codes": row.item_codes,
                "description": row.description,
                "loaded_at": loaded_at,
            }
            for row in file.mappings
        ],
    )
    admin_changes.bump(session)
    return len(file.mappings)


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


def replace_prices(session: Session, institution_code: str, file: PriceFile) -> int:
    """Replace an institution's own price list with a file's rows; returns the row count.

    Any problem of the file, or an unknown institution, raises :class:`Rejected` listing them
    all and changes nothing.
    """
    violations: list[Violation] = []
    institution = _institution(session, institution_code, violations, lock=True)
    violations.extend(file.violations)
    if violations or institution is None:
        raise _rejected(f"the price list of {institution_code}", violations)
    session.execute(delete(ItemPrice).where(ItemPrice.institution_id == institution.id))
    loaded_at = dt.datetime.now(dt.UTC)
    session.execute(
        insert(ItemPrice),
        [
            {
                "institution_id": institution.id,
                "item_code": row.item_code,
                # Yuan text, as the column has always held it.
                "price": yuan(row.price_fen),
                "loaded_at": loaded_at,
            }
            for row in file.prices
        ],
    )
    admin_changes.bump(session)
    return len(file.prices)


def price_list(session: Session, institution_id: int) -> dict[str, int]:
    """An institution's own prices in fen by item code (empty when it loaded none)."""
    rows = session.execute(
        select(ItemPrice.item_code, ItemPrice.price).where(
            ItemPrice.institution_id == institution_id
        )
    )
    return {item_code: to_fen(price) for item_code, price in rows}


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
