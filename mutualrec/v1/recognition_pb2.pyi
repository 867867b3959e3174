from mutualrec.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    RECOGNIZABLE: _ClassVar[Verdict]
    EXPIRED: _ClassVar[Verdict]
    NO_RESULT: _ClassVar[Verdict]
    ISSUER_NOT_QUALIFIED: _ClassVar[Verdict]
    PRELIMINARY_ONLY: _ClassVar[Verdict]
    NOT_COVERED: _ClassVar[Verdict]
    UNKNOWN_CODE: _ClassVar[Verdict]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    ACCEPTED: _ClassVar[Decision]
    DECLINED: _ClassVar[Decision]

class DeclineReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECLINE_REASON_UNSPECIFIED: _ClassVar[DeclineReason]
    CONDITION_CHANGED: _ClassVar[DeclineReason]
    FAST_CHANGING_VALUE: _ClassVar[DeclineReason]
    BEFORE_SURGERY_OR_TRANSFUSION: _ClassVar[DeclineReason]
    EMERGENCY: _ClassVar[DeclineReason]
    FORENSIC_ASSESSMENT: _ClassVar[DeclineReason]
    PATIENT_REQUEST: _ClassVar[DeclineReason]
    ISSUER_FAILED_QUALITY_ASSESSMENT: _ClassVar[DeclineReason]
    IMAGE_QUALITY: _ClassVar[DeclineReason]
    BODY_PART_MISMATCH: _ClassVar[DeclineReason]
    OTHER: _ClassVar[DeclineReason]
VERDICT_UNSPECIFIED: Verdict
RECOGNIZABLE: Verdict
EXPIRED: Verdict
NO_RESULT: Verdict
ISSUER_NOT_QUALIFIED: Verdict
PRELIMINARY_ONLY: Verdict
NOT_COVERED: Verdict
UNKNOWN_CODE: Verdict
DECISION_UNSPECIFIED: Decision
ACCEPTED: Decision
DECLINED: Decision
DECLINE_REASON_UNSPECIFIED: DeclineReason
CONDITION_CHANGED: DeclineReason
FAST_CHANGING_VALUE: DeclineReason
BEFORE_SURGERY_OR_TRANSFUSION: DeclineReason
EMERGENCY: DeclineReason
FORENSIC_ASSESSMENT: DeclineReason
PATIENT_REQUEST: DeclineReason
ISSUER_FAILED_QUALITY_ASSESSMENT: DeclineReason
IMAGE_QUALITY: DeclineReason
BODY_PART_MISMATCH: DeclineReason
OTHER: DeclineReason

class CheckOrderRequest(_message.Message):
    __slots__ = ("patient", "ordered_codes", "context", "accept_language")
    PATIENT_FIELD_NUMBER: _ClassVar[int]
    ORDERED_CODES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    patient: _common_pb2.PatientIdentity
    ordered_codes: _containers.RepeatedScalarFieldContainer[str]
    context: ClinicalContext
    accept_language: str
    def __init__(self, patient: _Optional[_Union[_common_pb2.PatientIdentity, _Mapping]] = ..., ordered_codes: _Optional[_Iterable[str]] = ..., context: _Optional[_Union[ClinicalContext, _Mapping]] = ..., accept_language: _Optional[str] = ...) -> None: ...

class ClinicalContext(_message.Message):
    __slots__ = ("order_id", "department", "emergency")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    EMERGENCY_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    department: str
    emergency: bool
    def __init__(self, order_id: _Optional[str] = ..., department: _Optional[str] = ..., emergency: _Optional[bool] = ...) -> None: ...

class CheckLine(_message.Message):
    __slots__ = ("line", "ordered_code", "item_code", "item_name", "verdict", "reason", "result", "estimated_saving", "expired_since")
    LINE_FIELD_NUMBER: _ClassVar[int]
    ORDERED_CODE_FIELD_NUMBER: _ClassVar[int]
    ITEM_CODE_FIELD_NUMBER: _ClassVar[int]
    ITEM_NAME_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_SAVING_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_SINCE_FIELD_NUMBER: _ClassVar[int]
    line: int
    ordered_code: str
    item_code: str
    item_name: str
    verdict: Verdict
    reason: str
    result: RecognizedResult
    estimated_saving: str
    expired_since: str
    def __init__(self, line: _Optional[int] = ..., ordered_code: _Optional[str] = ..., item_code: _Optional[str] = ..., item_name: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., reason: _Optional[str] = ..., result: _Optional[_Union[RecognizedResult, _Mapping]] = ..., estimated_saving: _Optional[str] = ..., expired_since: _Optional[str] = ...) -> None: ...

class RecognizedResult(_message.Message):
    __slots__ = ("kind", "result_ref", "version", "status", "issuer_code", "issuer_name", "report_time", "age_seconds", "valid_until", "item_code", "lab", "imaging")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RESULT_REF_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ISSUER_CODE_FIELD_NUMBER: _ClassVar[int]
    ISSUER_NAME_FIELD_NUMBER: _ClassVar[int]
    REPORT_TIME_FIELD_NUMBER: _ClassVar[int]
    AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    ITEM_CODE_FIELD_NUMBER: _ClassVar[int]
    LAB_FIELD_NUMBER: _ClassVar[int]
    IMAGING_FIELD_NUMBER: _ClassVar[int]
    kind: str
    result_ref: str
    version: int
    status: str
    issuer_code: str
    issuer_name: str
    report_time: str
    age_seconds: int
    valid_until: str
    item_code: str
    lab: LabValue
    imaging: ImagingStudyRef
    def __init__(self, kind: _Optional[str] = ..., result_ref: _Optional[str] = ..., version: _Optional[int] = ..., status: _Optional[str] = ..., issuer_code: _Optional[str] = ..., issuer_name: _Optional[str] = ..., report_time: _Optional[str] = ..., age_seconds: _Optional[int] = ..., valid_until: _Optional[str] = ..., item_code: _Optional[str] = ..., lab: _Optional[_Union[LabValue, _Mapping]] = ..., imaging: _Optional[_Union[ImagingStudyRef, _Mapping]] = ...) -> None: ...

class LabValue(_message.Message):
    __slots__ = ("loinc", "display", "value", "unit", "reference_range", "interpretation", "canonical_value", "canonical_unit", "unit_note")
    LOINC_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_RANGE_FIELD_NUMBER: _ClassVar[int]
    INTERPRETATION_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_VALUE_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_UNIT_FIELD_NUMBER: _ClassVar[int]
    UNIT_NOTE_FIELD_NUMBER: _ClassVar[int]
    loinc: str
    display: str
    value: str
    unit: str
    reference_range: str
    interpretation: str
    canonical_value: str
    canonical_unit: str
    unit_note: str
    def __init__(self, loinc: _Optional[str] = ..., display: _Optional[str] = ..., value: _Optional[str] = ..., unit: _Optional[str] = ..., reference_range: _Optional[str] = ..., interpretation: _Optional[str] = ..., canonical_value: _Optional[str] = ..., canonical_unit: _Optional[str] = ..., unit_note: _Optional[str] = ...) -> None: ...

class ImagingStudyRef(_message.Message):
    __slots__ = ("study_instance_uid", "accession_number", "modalities", "body_parts", "contrast", "description", "instance_count", "open_url")
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    ACCESSION_NUMBER_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    BODY_PARTS_FIELD_NUMBER: _ClassVar[int]
    CONTRAST_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    OPEN_URL_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    accession_number: str
    modalities: str
    body_parts: str
    contrast: bool
    description: str
    instance_count: int
    open_url: str
    def __init__(self, study_instance_uid: _Optional[str] = ..., accession_number: _Optional[str] = ..., modalities: _Optional[str] = ..., body_parts: _Optional[str] = ..., contrast: _Optional[bool] = ..., description: _Optional[str] = ..., instance_count: _Optional[int] = ..., open_url: _Optional[str] = ...) -> None: ...

class CheckOrderResponse(_message.Message):
    __slots__ = ("check_id", "received_at", "catalog_version", "lines", "total_estimated_saving")
    CHECK_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ESTIMATED_SAVING_FIELD_NUMBER: _ClassVar[int]
    check_id: str
    received_at: str
    catalog_version: str
    lines: _containers.RepeatedCompositeFieldContainer[CheckLine]
    total_estimated_saving: str
    def __init__(self, check_id: _Optional[str] = ..., received_at: _Optional[str] = ..., catalog_version: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[CheckLine, _Mapping]]] = ..., total_estimated_saving: _Optional[str] = ...) -> None: ...

class RecordDecisionRequest(_message.Message):
    __slots__ = ("check_id", "line", "item_code", "decision", "reason", "reason_text")
    CHECK_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    ITEM_CODE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REASON_TEXT_FIELD_NUMBER: _ClassVar[int]
    check_id: str
    line: int
    item_code: str
    decision: Decision
    reason: DeclineReason
    reason_text: str
    def __init__(self, check_id: _Optional[str] = ..., line: _Optional[int] = ..., item_code: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., reason: _Optional[_Union[DeclineReason, str]] = ..., reason_text: _Optional[str] = ...) -> None: ...

class RecordDecisionResponse(_message.Message):
    __slots__ = ("check_id", "line", "decision", "reason", "booked_saving", "already_recorded", "decided_at")
    CHECK_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    BOOKED_SAVING_FIELD_NUMBER: _ClassVar[int]
    ALREADY_RECORDED_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    check_id: str
    line: int
    decision: Decision
    reason: DeclineReason
    booked_saving: str
    already_recorded: bool
    decided_at: str
    def __init__(self, check_id: _Optional[str] = ..., line: _Optional[int] = ..., decision: _Optional[_Union[Decision, str]] = ..., reason: _Optional[_Union[DeclineReason, str]] = ..., booked_saving: _Optional[str] = ..., already_recorded: _Optional[bool] = ..., decided_at: _Optional[str] = ...) -> None: ...
