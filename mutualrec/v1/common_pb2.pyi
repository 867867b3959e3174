from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IdentityDocumentType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IDENTITY_DOCUMENT_TYPE_UNSPECIFIED: _ClassVar[IdentityDocumentType]
    RESIDENT_ID_CARD: _ClassVar[IdentityDocumentType]
    PASSPORT: _ClassVar[IdentityDocumentType]
    E_HEALTH_CARD: _ClassVar[IdentityDocumentType]
    MAINLAND_TRAVEL_PERMIT: _ClassVar[IdentityDocumentType]
    FOREIGN_PERMANENT_RESIDENT_ID: _ClassVar[IdentityDocumentType]
IDENTITY_DOCUMENT_TYPE_UNSPECIFIED: IdentityDocumentType
RESIDENT_ID_CARD: IdentityDocumentType
PASSPORT: IdentityDocumentType
E_HEALTH_CARD: IdentityDocumentType
MAINLAND_TRAVEL_PERMIT: IdentityDocumentType
FOREIGN_PERMANENT_RESIDENT_ID: IdentityDocumentType

class PatientIdentity(_message.Message):
    __slots__ = ("document_type", "document_number", "issuing_country")
    DOCUMENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ISSUING_COUNTRY_FIELD_NUMBER: _ClassVar[int]
    document_type: IdentityDocumentType
    document_number: str
    issuing_country: str
    def __init__(self, document_type: _Optional[_Union[IdentityDocumentType, str]] = ..., document_number: _Optional[str] = ..., issuing_country: _Optional[str] = ...) -> None: ...

class FieldViolation(_message.Message):
    __slots__ = ("field", "description", "reason")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    reason: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
