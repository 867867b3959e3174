"""CatalogService: any authenticated caller reads the recognized items of a catalog version."""

from __future__ import annotations

import datetime as dt
from typing import TypeAlias

import grpc

from mutualrec.api.auth import caller
from mutualrec.matching.catalog import CatalogItem
from mutualrec.money import yuan
from mutualrec.runtime import Runtime
from mutualrec.services.catalog import ItemRequest, ItemsRequest
from mutualrec.v1 import catalog_pb2, catalog_pb2_grpc

Context: TypeAlias = grpc.aio.ServicerContext
_DAY = dt.timedelta(days=1)
_HOUR = dt.timedelta(hours=1)


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
        reference_price=yuan(item.reference_price_fen),
        satisfies=item.satisfies,
        source=item.source,
        catalog_version=version,
        specimen_loinc=item.specimen_loinc,
        panel_requires=["|".join(analyte) for analyte in item.panel_requires],
    )


class CatalogService(catalog_pb2_grpc.CatalogServiceServicer):  # type: ignore[misc]  # untyped stub
    """Translates catalog reads to :mod:`mutualrec.services.catalog` and back."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.catalog = runtime.catalog

    async def ListItems(
        self, request: catalog_pb2.ListItemsRequest, context: Context
    ) -> catalog_pb2.ListItemsResponse:
        """The items of a catalog version, optionally of one category."""
        caller(self.runtime, context)
        found = await self.runtime.run_blocking(
            self.catalog.items,
            ItemsRequest(catalog_version=request.catalog_version, category=request.category),
        )
        catalog = found.catalog
        return catalog_pb2.ListItemsResponse(
            catalog_version=catalog.version,
            sha256=catalog.sha256,
            items=[item_proto(item, catalog.version) for item in found.items],
        )

    async def GetItem(
        self, request: catalog_pb2.GetItemRequest, context: Context
    ) -> catalog_pb2.CatalogItem:
        """One item of a catalog version; NOT_FOUND when the version has no such code."""
        caller(self.runtime, context)
        catalog, item = await self.runtime.run_blocking(
            self.catalog.item,
            ItemRequest(code=request.code, catalog_version=request.catalog_version),
        )
        return item_proto(item, catalog.version)
