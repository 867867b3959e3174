from mutualrec.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InstanceOutcomeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSTANCE_OUTCOME_KIND_UNSPECIFIED: _ClassVar[InstanceOutcomeKind]
    STORED: _ClassVar[InstanceOutcomeKind]
    DUPLICATE_IDENTICAL: _ClassVar[InstanceOutcomeKind]
    NEW_VERSION: _ClassVar[InstanceOutcomeKind]
    REJECTED: _ClassVar[InstanceOutcomeKind]

class FhirVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FHIR_VERSION_UNSPECIFIED: _ClassVar[FhirVersion]
    FHIR_R4: _ClassVar[FhirVersion]
    FHIR_R5: _ClassVar[FhirVersion]

class EntryOutcomeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTRY_OUTCOME_KIND_UNSPECIFIED: _ClassVar[EntryOutcomeKind]
    CREATED: _ClassVar[EntryOutcomeKind]
    UPDATED_NEW_VERSION: _ClassVar[EntryOutcomeKind]
    UNCHANGED: _ClassVar[EntryOutcomeKind]
    WITHDRAWN: _ClassVar[EntryOutcomeKind]
    ENTRY_REJECTED: _ClassVar[EntryOutcomeKind]
    CONTEXT: _ClassVar[EntryOutcomeKind]
    IGNORED: _ClassVar[EntryOutcomeKind]
INSTANCE_OUTCOME_KIND_UNSPECIFIED: InstanceOutcomeKind
STORED: InstanceOutcomeKind
DUPLICATE_IDENTICAL: InstanceOutcomeKind
NEW_VERSION: InstanceOutcomeKind
REJECTED: InstanceOutcomeKind
FHIR_VERSION_UNSPECIFIED: FhirVersion
FHIR_R4: FhirVersion
FHIR_R5: FhirVersion
ENTRY_OUTCOME_KIND_UNSPECIFIED: EntryOutcomeKind
CREATED: EntryOutcomeKind
UPDATED_NEW_VERSION: EntryOutcomeKind
UNCHANGED: EntryOutcomeKind
WITHDRAWN: EntryOutcomeKind
ENTRY_REJECTED: EntryOutcomeKind
CONTEXT: EntryOutcomeKind
IGNORED: EntryOutcomeKind

class LinkPatientRequest(_message.Message):
    __slots__ = ("patient", "patient_id")
    PATIENT_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    patient: _common_pb2.PatientIdentity
    patient_id: str
    def __init__(self, patient: _Optional[_Union[_common_pb2.PatientIdentity, _Mapping]] = ..., patient_id: _Optional[str] = ...) -> None: ...

class LinkPatientResponse(_message.Message):
    __slots__ = ("linked_study_instance_uids",)
    LINKED_STUDY_INSTANCE_UIDS_FIELD_NUMBER: _ClassVar[int]
    linked_study_instance_uids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, linked_study_instance_uids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListUnlinkedStudiesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class UnlinkedStudy(_message.Message):
    __slots__ = ("study_instance_uid", "patient_id", "study_date", "description", "modalities", "instance_count", "held_at")
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    STUDY_DATE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    HELD_AT_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    patient_id: str
    study_date: str
    description: str
    modalities: _containers.RepeatedScalarFieldContainer[str]
    instance_count: int
    held_at: str
    def __init__(self, study_instance_uid: _Optional[str] = ..., patient_id: _Optional[str] = ..., study_date: _Optional[str] = ..., description: _Optional[str] = ..., modalities: _Optional[_Iterable[str]] = ..., instance_count: _Optional[int] = ..., held_at: _Optional[str] = ...) -> None: ...

class ListUnlinkedStudiesResponse(_message.Message):
    __slots__ = ("studies", "next_page_token")
    STUDIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    studies: _containers.RepeatedCompositeFieldContainer[UnlinkedStudy]
    next_page_token: str
    def __init__(self, studies: _Optional[_Iterable[_Union[UnlinkedStudy, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UploadStudyRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: InstanceChunk
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[_Union[InstanceChunk, _Mapping]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("patient", "accession_number", "performed_item_code")
    PATIENT_FIELD_NUMBER: _ClassVar[int]
    ACCESSION_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PERFORMED_ITEM_CODE_FIELD_NUMBER: _ClassVar[int]
    patient: _common_pb2.PatientIdentity
    accession_number: str
    performed_item_code: str
    def __init__(self, patient: _Optional[_Union[_common_pb2.PatientIdentity, _Mapping]] = ..., accession_number: _Optional[str] = ..., performed_item_code: _Optional[str] = ...) -> None: ...

class InstanceChunk(_message.Message):
    __slots__ = ("source_name", "data", "end_of_instance")
    SOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    END_OF_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    source_name: str
    data: bytes
    end_of_instance: bool
    def __init__(self, source_name: _Optional[str] = ..., data: _Optional[bytes] = ..., end_of_instance: _Optional[bool] = ...) -> None: ...

class InstanceOutcome(_message.Message):
    __slots__ = ("index", "source_name", "sop_instance_uid", "series_instance_uid", "outcome", "version", "size_bytes", "sha256", "reason", "violations")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    index: int
    source_name: str
    sop_instance_uid: str
    series_instance_uid: str
    outcome: InstanceOutcomeKind
    version: int
    size_bytes: int
    sha256: str
    reason: str
    violations: _containers.RepeatedCompositeFieldContainer[_common_pb2.FieldViolation]
    def __init__(self, index: _Optional[int] = ..., source_name: _Optional[str] = ..., sop_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ..., outcome: _Optional[_Union[InstanceOutcomeKind, str]] = ..., version: _Optional[int] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., reason: _Optional[str] = ..., violations: _Optional[_Iterable[_Union[_common_pb2.FieldViolation, _Mapping]]] = ...) -> None: ...

class UploadCounts(_message.Message):
    __slots__ = ("stored", "duplicate_identical", "new_version", "rejected")
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_IDENTICAL_FIELD_NUMBER: _ClassVar[int]
    NEW_VERSION_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    duplicate_identical: int
    new_version: int
    rejected: int
    def __init__(self, stored: _Optional[int] = ..., duplicate_identical: _Optional[int] = ..., new_version: _Optional[int] = ..., rejected: _Optional[int] = ...) -> None: ...

class StudySummary(_message.Message):
    __slots__ = ("study_instance_uid", "institution_code", "accession_number", "study_date", "study_time", "description", "modalities", "body_parts", "contrast", "performed_item_code", "series_count", "instance_count", "size_bytes", "not_recognized_reason")
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    ACCESSION_NUMBER_FIELD_NUMBER: _ClassVar[int]
    STUDY_DATE_FIELD_NUMBER: _ClassVar[int]
    STUDY_TIME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    BODY_PARTS_FIELD_NUMBER: _ClassVar[int]
    CONTRAST_FIELD_NUMBER: _ClassVar[int]
    PERFORMED_ITEM_CODE_FIELD_NUMBER: _ClassVar[int]
    SERIES_COUNT_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    NOT_RECOGNIZED_REASON_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    institution_code: str
    accession_number: str
    study_date: str
    study_time: str
    description: str
    modalities: _containers.RepeatedScalarFieldContainer[str]
    body_parts: _containers.RepeatedScalarFieldContainer[str]
    contrast: bool
    performed_item_code: str
    series_count: int
    instance_count: int
    size_bytes: int
    not_recognized_reason: str
    def __init__(self, study_instance_uid: _Optional[str] = ..., institution_code: _Optional[str] = ..., accession_number: _Optional[str] = ..., study_date: _Optional[str] = ..., study_time: _Optional[str] = ..., description: _Optional[str] = ..., modalities: _Optional[_Iterable[str]] = ..., body_parts: _Optional[_Iterable[str]] = ..., contrast: _Optional[bool] = ..., performed_item_code: _Optional[str] = ..., series_count: _Optional[int] = ..., instance_count: _Optional[int] = ..., size_bytes: _Optional[int] = ..., not_recognized_reason: _Optional[str] = ...) -> None: ...

class UploadStudyResponse(_message.Message):
    __slots__ = ("instances", "counts", "study")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    STUDY_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[InstanceOutcome]
    counts: UploadCounts
    study: StudySummary
    def __init__(self, instances: _Optional[_Iterable[_Union[InstanceOutcome, _Mapping]]] = ..., counts: _Optional[_Union[UploadCounts, _Mapping]] = ..., study: _Optional[_Union[StudySummary, _Mapping]] = ...) -> None: ...

class GetStudyStatusRequest(_message.Message):
    __slots__ = ("study_instance_uid",)
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    def __init__(self, study_instance_uid: _Optional[str] = ...) -> None: ...

class HeldInstance(_message.Message):
    __slots__ = ("sop_instance_uid", "series_instance_uid", "version", "size_bytes", "sha256")
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    series_instance_uid: str
    version: int
    size_bytes: int
    sha256: str
    def __init__(self, sop_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ..., version: _Optional[int] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class GetStudyStatusResponse(_message.Message):
    __slots__ = ("study", "instances")
    STUDY_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    study: StudySummary
    instances: _containers.RepeatedCompositeFieldContainer[HeldInstance]
    def __init__(self, study: _Optional[_Union[StudySummary, _Mapping]] = ..., instances: _Optional[_Iterable[_Union[HeldInstance, _Mapping]]] = ...) -> None: ...

class SubmitObservationsRequest(_message.Message):
    __slots__ = ("body", "fhir_version")
    BODY_FIELD_NUMBER: _ClassVar[int]
    FHIR_VERSION_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    fhir_version: FhirVersion
    def __init__(self, body: _Optional[bytes] = ..., fhir_version: _Optional[_Union[FhirVersion, str]] = ...) -> None: ...

class EntryOutcome(_message.Message):
    __slots__ = ("index", "full_url", "resource_type", "identity", "outcome", "version", "status", "reason", "violations")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FULL_URL_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    index: int
    full_url: str
    resource_type: str
    identity: str
    outcome: EntryOutcomeKind
    version: int
    status: str
    reason: str
    violations: _containers.RepeatedCompositeFieldContainer[_common_pb2.FieldViolation]
    def __init__(self, index: _Optional[int] = ..., full_url: _Optional[str] = ..., resource_type: _Optional[str] = ..., identity: _Optional[str] = ..., outcome: _Optional[_Union[EntryOutcomeKind, str]] = ..., version: _Optional[int] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., violations: _Optional[_Iterable[_Union[_common_pb2.FieldViolation, _Mapping]]] = ...) -> None: ...

class SubmitCounts(_message.Message):
    __slots__ = ("created", "updated_new_version", "unchanged", "withdrawn", "rejected", "context", "ignored")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_NEW_VERSION_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    created: int
    updated_new_version: int
    unchanged: int
    withdrawn: int
    rejected: int
    context: int
    ignored: int
    def __init__(self, created: _Optional[int] = ..., updated_new_version: _Optional[int] = ..., unchanged: _Optional[int] = ..., withdrawn: _Optional[int] = ..., rejected: _Optional[int] = ..., context: _Optional[int] = ..., ignored: _Optional[int] = ...) -> None: ...

class SubmitObservationsResponse(_message.Message):
    __slots__ = ("bundle_type", "entries", "counts", "document_sha256")
    BUNDLE_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    bundle_type: str
    entries: _containers.RepeatedCompositeFieldContainer[EntryOutcome]
    counts: SubmitCounts
    document_sha256: str
    def __init__(self, bundle_type: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[EntryOutcome, _Mapping]]] = ..., counts: _Optional[_Union[SubmitCounts, _Mapping]] = ..., document_sha256: _Optional[str] = ...) -> None: ...
