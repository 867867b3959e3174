"""Catalog reads: the recognized items of a catalog version, for any authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from mutualrec.matching.catalog import Catalog, CatalogItem, ItemCategory
from mutualrec.services.outage import unavailable_on_outage
from mutualrec.storage import catalog_store
from mutualrec.violations import NotFound, Rejected


@dataclass(frozen=True, slots=True)
class ItemsRequest:
    """The items of a catalog version ("" for the current one), of one category ("" for all)."""

    catalog_version: str = ""
    category: str = ""


@dataclass(frozen=True, slots=True)
class ItemRequest:
    """One item by code, of a catalog version ("" for the current one)."""

    code: str
    catalog_version: str = ""


@dataclass(frozen=True, slots=True)
class CatalogItems:
    """The items asked for, with the version and digest of the catalog they are from."""

    catalog: Catalog
    items: list[CatalogItem]


class CatalogReader:
    """Blocking catalog reads; doors run them on worker threads."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def items(self, request: ItemsRequest) -> CatalogItems:
        """The items of the version, of the category if one is named."""
        category: ItemCategory | None = None
        if request.category.strip():
            try:
                category = ItemCategory(request.category.strip().lower())
            except ValueError:
                raise Rejected.one(
                    f"unknown category {request.category!r}",
                    "category",
                    "lab, imaging, or empty for both",
                    "UNKNOWN_CATEGORY",
                ) from None
        catalog = self._catalog(request.catalog_version.strip())
        return CatalogItems(
            catalog,
            [item for item in catalog.items if category is None or item.category is category],
        )

    def item(self, request: ItemRequest) -> tuple[Catalog, CatalogItem]:
        """One item and the catalog it is from; :class:`NotFound` when the version has no
        item of that code."""
        code = request.code.strip()
        if not code:
            raise Rejected.one(
                "code is required", "code", "give the item code, e.g. LAB-K", "MISSING_FIELD"
            )
        catalog = self._catalog(request.catalog_version.strip())
        item = catalog.get(code)
        if item is None:
            raise NotFound(f"catalog {catalog.version} has no item {code!r}")
        return catalog, item

    def _catalog(self, version: str) -> Catalog:
        """The named version, or the current one for ""."""
        with (
            unavailable_on_outage("the catalog cannot be read now"),
            self._sessions.begin() as session,
        ):
            catalog = (
                catalog_store.catalog_for_version(session, version)
                if version
                else catalog_store.current_catalog(session)
            )
        if catalog is None:
            raise NotFound(f"no catalog version {version!r}")
        return catalog
