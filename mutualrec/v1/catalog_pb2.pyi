from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListItemsRequest(_message.Message):
    __slots__ = ("catalog_version", "category")
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    catalog_version: str
    category: str
    def __init__(self, catalog_version: _Optional[str] = ..., category: _Optional[str] = ...) -> None: ...

class ListItemsResponse(_message.Message):
    __slots__ = ("catalog_version", "sha256", "items")
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    catalog_version: str
    sha256: str
    items: _containers.RepeatedCompositeFieldContainer[CatalogItem]
    def __init__(self, catalog_version: _Optional[str] = ..., sha256: _Optional[str] = ..., items: _Optional[_Iterable[_Union[CatalogItem, _Mapping]]] = ...) -> None: ...

class GetItemRequest(_message.Message):
    __slots__ = ("code", "catalog_version")
    CODE_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    code: str
    catalog_version: str
    def __init__(self, code: _Optional[str] = ..., catalog_version: _Optional[str] = ...) -> None: ...

class CatalogItem(_message.Message):
    __slots__ = ("code", "name_zh", "name_en", "category", "loinc", "modality", "body_part", "contrast", "validity", "validity_seconds", "reference_price", "satisfies", "source", "catalog_version", "specimen_loinc", "panel_requires")
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_ZH_FIELD_NUMBER: _ClassVar[int]
    NAME_EN_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    LOINC_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    BODY_PART_FIELD_NUMBER: _ClassVar[int]
    CONTRAST_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_PRICE_FIELD_NUMBER: _ClassVar[int]
    SATISFIES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPECIMEN_LOINC_FIELD_NUMBER: _ClassVar[int]
    PANEL_REQUIRES_FIELD_NUMBER: _ClassVar[int]
    code: str
    name_zh: str
    name_en: str
    category: str
    loinc: _containers.RepeatedScalarFieldContainer[str]
    modality: str
    body_part: str
    contrast: bool
    validity: str
    validity_seconds: int
    reference_price: str
    satisfies: _containers.RepeatedScalarFieldContainer[str]
    source: str
    catalog_version: str
    specimen_loinc: _containers.RepeatedScalarFieldContainer[str]
    panel_requires: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, code: _Optional[str] = ..., name_zh: _Optional[str] = ..., name_en: _Optional[str] = ..., category: _Optional[str] = ..., loinc: _Optional[_Iterable[str]] = ..., modality: _Optional[str] = ..., body_part: _Optional[str] = ..., contrast: _Optional[bool] = ..., validity: _Optional[str] = ..., validity_seconds: _Optional[int] = ..., reference_price: _Optional[str] = ..., satisfies: _Optional[_Iterable[str]] = ..., source: _Optional[str] = ..., catalog_version: _Optional[str] = ..., specimen_loinc: _Optional[_Iterable[str]] = ..., panel_requires: _Optional[_Iterable[str]] = ...) -> None: ...
