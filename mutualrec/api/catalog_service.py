"""CatalogService: any authenticated caller reads the recognized items of a catalog version."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TypeAlias

import grpc
from sqlalchemy.exc import SQLAlchemyError

from mutualrec.api.auth import caller
from mutualrec.api.status import abort, abort_with_violations
from mutualrec.matching.catalog import Catalog, CatalogItem, ItemCategory
from mutualrec.runtime import Runtime
from mutualrec.services.outage import is_outage
from mutualrec.storage import catalog_store
from mutualrec.v1 import catalog_pb2, catalog_pb2_grpc
from mutualrec.violations import Violation

Context: TypeAlias = grpc.aio.ServicerContext
_DAY = dt.timedelta(days=1)
_HOUR = dt.timedelta(hours=1)
_FEN = Decimal("0.01")


def validity_text(validity: dt.timedelta) -> str:
    """A validity window as the catalog writes it: ``30d``, or ``6h`` when not whole days."""
    if validity % _DAY:
        return f"{validity // _HOUR}h"
    return f"{validity // _DAY}d"


def item_proto(item: CatalogItem, version: str) -> catalog_pb2.CatalogItem:
    """A catalog item as the API shows it."""
    return catalog_pb2.CatalogItem(
        code=item.code,
        name_zh=item.name_zh,
        name_en=item.name_en,
        category=item.category.value,
        loinc=item.loinc,
        modality=item.modality,
        body_part=item.body_part,
        contrast=item.contrast,
        validity=validity_text(item.validity),
        validity_seconds=int(item.validity.total_seconds()),
        reference_price=str(item.reference_price.quantize(_FEN)),
        satisfies=item.satisfies,
        source=item.source,
        catalog_version=version,
        specimen_loinc=item.specimen_loinc,
        panel_requires=["|".join(analyte) for analyte in item.panel_requires],
    )


class CatalogService(catalog_pb2_grpc.CatalogServiceServicer):  # type: ignore[misc]  # untyped stub
    """Translates catalog reads to :mod:`mutualrec.storage.catalog_store` and back."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def ListItems(
        self, request: catalog_pb2.ListItemsRequest, context: Context
    ) -> catalog_pb2.ListItemsResponse:
        """The items of a catalog version, optionally of one category."""
        caller(self.runtime, context)
        category: ItemCategory | None = None
        if request.category.strip():
            try:
                category = ItemCategory(request.category.strip().lower())
            except ValueError:
                await abort_with_violations(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"unknown category {request.category!r}",
                    [Violation("category", "lab, imaging, or empty for both", "UNKNOWN_CATEGORY")],
                )
        catalog = await self._catalog(request.catalog_version.strip(), context)
        return catalog_pb2.ListItemsResponse(
            catalog_version=catalog.version,
            sha256=catalog.sha256,
            items=[
                item_proto(item, catalog.version)
                for item in catalog.items
                if category is None or item.category is category
            ],
        )

    async def GetItem(
        self, request: catalog_pb2.GetItemRequest, context: Context
    ) -> catalog_pb2.CatalogItem:
        """One item of a catalog version; NOT_FOUND when the version has no such code."""
        caller(self.runtime, context)
        code = request.code.strip()
        if not code:
            await abort_with_violations(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "code is required",
                [Violation("code", "give the item code, e.g. LAB-K", "MISSING_FIELD")],
            )
        catalog = await self._catalog(request.catalog_version.strip(), context)
        item = catalog.get(code)
        if item is None:
            await abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"catalog {catalog.version} has no item {code!r}",
            )
        return item_proto(item, catalog.version)

    async def _catalog(self, version: str, context: Context) -> Catalog:
        """The named version, or the current one for ""; aborts NOT_FOUND or UNAVAILABLE."""
        try:
            catalog = await self.runtime.run_blocking(self._read_catalog, version)
        except (SQLAlchemyError, OSError) as failure:
            if not is_outage(failure):
                raise
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"the catalog cannot be read now ({failure.__class__.__name__}); try again",
            )
        if catalog is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"no catalog version {version!r}")
        return catalog

    def _read_catalog(self, version: str) -> Catalog | None:
        with self.runtime.sessions.begin() as session:
            catalog = (
                catalog_store.catalog_for_version(session, version)
                if version
                else catalog_store.current_catalog(session)
            )
        return catalog
