from mutualrec.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ShareLinkState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SHARE_LINK_STATE_UNSPECIFIED: _ClassVar[ShareLinkState]
    SHARE_LINK_ACTIVE: _ClassVar[ShareLinkState]
    SHARE_LINK_EXPIRED: _ClassVar[ShareLinkState]
    SHARE_LINK_REVOKED: _ClassVar[ShareLinkState]
SHARE_LINK_STATE_UNSPECIFIED: ShareLinkState
SHARE_LINK_ACTIVE: ShareLinkState
SHARE_LINK_EXPIRED: ShareLinkState
SHARE_LINK_REVOKED: ShareLinkState

class ListStudiesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "modality", "from_date", "to_date", "institution_code")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    FROM_DATE_FIELD_NUMBER: _ClassVar[int]
    TO_DATE_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    modality: str
    from_date: str
    to_date: str
    institution_code: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., modality: _Optional[str] = ..., from_date: _Optional[str] = ..., to_date: _Optional[str] = ..., institution_code: _Optional[str] = ...) -> None: ...

class StudyRecognition(_message.Message):
    __slots__ = ("item_code", "item_name", "valid_until", "within_validity")
    ITEM_CODE_FIELD_NUMBER: _ClassVar[int]
    ITEM_NAME_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    WITHIN_VALIDITY_FIELD_NUMBER: _ClassVar[int]
    item_code: str
    item_name: str
    valid_until: str
    within_validity: bool
    def __init__(self, item_code: _Optional[str] = ..., item_name: _Optional[str] = ..., valid_until: _Optional[str] = ..., within_validity: _Optional[bool] = ...) -> None: ...

class StudyListing(_message.Message):
    __slots__ = ("study_instance_uid", "institution_code", "institution_name", "study_date", "study_time", "modalities", "body_parts", "description", "contrast", "series_count", "instance_count", "size_bytes", "accession_number", "recognition", "not_recognized_reason")
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_NAME_FIELD_NUMBER: _ClassVar[int]
    STUDY_DATE_FIELD_NUMBER: _ClassVar[int]
    STUDY_TIME_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    BODY_PARTS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONTRAST_FIELD_NUMBER: _ClassVar[int]
    SERIES_COUNT_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ACCESSION_NUMBER_FIELD_NUMBER: _ClassVar[int]
    RECOGNITION_FIELD_NUMBER: _ClassVar[int]
    NOT_RECOGNIZED_REASON_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    institution_code: str
    institution_name: str
    study_date: str
    study_time: str
    modalities: _containers.RepeatedScalarFieldContainer[str]
    body_parts: _containers.RepeatedScalarFieldContainer[str]
    description: str
    contrast: bool
    series_count: int
    instance_count: int
    size_bytes: int
    accession_number: str
    recognition: _containers.RepeatedCompositeFieldContainer[StudyRecognition]
    not_recognized_reason: str
    def __init__(self, study_instance_uid: _Optional[str] = ..., institution_code: _Optional[str] = ..., institution_name: _Optional[str] = ..., study_date: _Optional[str] = ..., study_time: _Optional[str] = ..., modalities: _Optional[_Iterable[str]] = ..., body_parts: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., contrast: _Optional[bool] = ..., series_count: _Optional[int] = ..., instance_count: _Optional[int] = ..., size_bytes: _Optional[int] = ..., accession_number: _Optional[str] = ..., recognition: _Optional[_Iterable[_Union[StudyRecognition, _Mapping]]] = ..., not_recognized_reason: _Optional[str] = ...) -> None: ...

class ListStudiesResponse(_message.Message):
    __slots__ = ("studies", "next_page_token")
    STUDIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    studies: _containers.RepeatedCompositeFieldContainer[StudyListing]
    next_page_token: str
    def __init__(self, studies: _Optional[_Iterable[_Union[StudyListing, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetStudyRequest(_message.Message):
    __slots__ = ("study_instance_uid",)
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    def __init__(self, study_instance_uid: _Optional[str] = ...) -> None: ...

class SeriesListing(_message.Message):
    __slots__ = ("series_instance_uid", "series_number", "modality", "body_part", "description", "contrast", "instance_count", "size_bytes", "thumbnail_uri")
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_NUMBER_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    BODY_PART_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONTRAST_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_URI_FIELD_NUMBER: _ClassVar[int]
    series_instance_uid: str
    series_number: int
    modality: str
    body_part: str
    description: str
    contrast: bool
    instance_count: int
    size_bytes: int
    thumbnail_uri: str
    def __init__(self, series_instance_uid: _Optional[str] = ..., series_number: _Optional[int] = ..., modality: _Optional[str] = ..., body_part: _Optional[str] = ..., description: _Optional[str] = ..., contrast: _Optional[bool] = ..., instance_count: _Optional[int] = ..., size_bytes: _Optional[int] = ..., thumbnail_uri: _Optional[str] = ...) -> None: ...

class GetStudyResponse(_message.Message):
    __slots__ = ("study", "series")
    STUDY_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    study: StudyListing
    series: _containers.RepeatedCompositeFieldContainer[SeriesListing]
    def __init__(self, study: _Optional[_Union[StudyListing, _Mapping]] = ..., series: _Optional[_Iterable[_Union[SeriesListing, _Mapping]]] = ...) -> None: ...

class GetThumbnailRequest(_message.Message):
    __slots__ = ("study_instance_uid", "series_instance_uid")
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    series_instance_uid: str
    def __init__(self, study_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ...) -> None: ...

class Thumbnail(_message.Message):
    __slots__ = ("content_type", "data", "width", "height", "placeholder", "reason", "sop_instance_uid")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PLACEHOLDER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    data: bytes
    width: int
    height: int
    placeholder: bool
    reason: str
    sop_instance_uid: str
    def __init__(self, content_type: _Optional[str] = ..., data: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., placeholder: _Optional[bool] = ..., reason: _Optional[str] = ..., sop_instance_uid: _Optional[str] = ...) -> None: ...

class DownloadStudyRequest(_message.Message):
    __slots__ = ("study_instance_uid", "series_instance_uid")
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    series_instance_uid: str
    def __init__(self, study_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ...) -> None: ...

class DownloadedInstance(_message.Message):
    __slots__ = ("sop_instance_uid", "series_instance_uid", "version", "size_bytes", "sha256", "file_name")
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    series_instance_uid: str
    version: int
    size_bytes: int
    sha256: str
    file_name: str
    def __init__(self, sop_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ..., version: _Optional[int] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., file_name: _Optional[str] = ...) -> None: ...

class DownloadStudyResponse(_message.Message):
    __slots__ = ("instance", "data", "end_of_instance")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    END_OF_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    instance: DownloadedInstance
    data: bytes
    end_of_instance: bool
    def __init__(self, instance: _Optional[_Union[DownloadedInstance, _Mapping]] = ..., data: _Optional[bytes] = ..., end_of_instance: _Optional[bool] = ...) -> None: ...

class CreateShareLinkRequest(_message.Message):
    __slots__ = ("study_instance_uid", "expire_time", "note")
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    expire_time: str
    note: str
    def __init__(self, study_instance_uid: _Optional[str] = ..., expire_time: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ShareOpening(_message.Message):
    __slots__ = ("time", "rpc", "peer")
    TIME_FIELD_NUMBER: _ClassVar[int]
    RPC_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    time: str
    rpc: str
    peer: str
    def __init__(self, time: _Optional[str] = ..., rpc: _Optional[str] = ..., peer: _Optional[str] = ...) -> None: ...

class ShareLink(_message.Message):
    __slots__ = ("link_id", "study_instance_uid", "note", "create_time", "expire_time", "revoke_time", "state", "opening_count", "openings")
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OPENING_COUNT_FIELD_NUMBER: _ClassVar[int]
    OPENINGS_FIELD_NUMBER: _ClassVar[int]
    link_id: str
    study_instance_uid: str
    note: str
    create_time: str
    expire_time: str
    revoke_time: str
    state: ShareLinkState
    opening_count: int
    openings: _containers.RepeatedCompositeFieldContainer[ShareOpening]
    def __init__(self, link_id: _Optional[str] = ..., study_instance_uid: _Optional[str] = ..., note: _Optional[str] = ..., create_time: _Optional[str] = ..., expire_time: _Optional[str] = ..., revoke_time: _Optional[str] = ..., state: _Optional[_Union[ShareLinkState, str]] = ..., opening_count: _Optional[int] = ..., openings: _Optional[_Iterable[_Union[ShareOpening, _Mapping]]] = ...) -> None: ...

class CreateShareLinkResponse(_message.Message):
    __slots__ = ("link", "token", "uri")
    LINK_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    link: ShareLink
    token: str
    uri: str
    def __init__(self, link: _Optional[_Union[ShareLink, _Mapping]] = ..., token: _Optional[str] = ..., uri: _Optional[str] = ...) -> None: ...

class ListShareLinksRequest(_message.Message):
    __slots__ = ("study_instance_uid",)
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    def __init__(self, study_instance_uid: _Optional[str] = ...) -> None: ...

class ListShareLinksResponse(_message.Message):
    __slots__ = ("links",)
    LINKS_FIELD_NUMBER: _ClassVar[int]
    links: _containers.RepeatedCompositeFieldContainer[ShareLink]
    def __init__(self, links: _Optional[_Iterable[_Union[ShareLink, _Mapping]]] = ...) -> None: ...

class RevokeShareLinkRequest(_message.Message):
    __slots__ = ("link_id",)
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    link_id: str
    def __init__(self, link_id: _Optional[str] = ...) -> None: ...

class IssuePatientTokenRequest(_message.Message):
    __slots__ = ("patient", "ttl_seconds")
    PATIENT_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    patient: _common_pb2.PatientIdentity
    ttl_seconds: int
    def __init__(self, patient: _Optional[_Union[_common_pb2.PatientIdentity, _Mapping]] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class IssuePatientTokenResponse(_message.Message):
    __slots__ = ("token", "expire_time")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    token: str
    expire_time: str
    def __init__(self, token: _Optional[str] = ..., expire_time: _Optional[str] = ...) -> None: ...

class ListAccessesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class DataAccess(_message.Message):
    __slots__ = ("time", "role", "institution_code", "institution_name", "credential", "rpc", "what", "outcome")
    TIME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_NAME_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    RPC_FIELD_NUMBER: _ClassVar[int]
    WHAT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    time: str
    role: str
    institution_code: str
    institution_name: str
    credential: str
    rpc: str
    what: str
    outcome: str
    def __init__(self, time: _Optional[str] = ..., role: _Optional[str] = ..., institution_code: _Optional[str] = ..., institution_name: _Optional[str] = ..., credential: _Optional[str] = ..., rpc: _Optional[str] = ..., what: _Optional[str] = ..., outcome: _Optional[str] = ...) -> None: ...

class ListAccessesResponse(_message.Message):
    __slots__ = ("accesses", "next_page_token")
    ACCESSES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    accesses: _containers.RepeatedCompositeFieldContainer[DataAccess]
    next_page_token: str
    def __init__(self, accesses: _Optional[_Iterable[_Union[DataAccess, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
