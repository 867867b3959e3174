from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Granularity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRANULARITY_UNSPECIFIED: _ClassVar[Granularity]
    GRANULARITY_DAY: _ClassVar[Granularity]
    GRANULARITY_WEEK: _ClassVar[Granularity]
    GRANULARITY_MONTH: _ClassVar[Granularity]

class GroupBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GROUP_BY_UNSPECIFIED: _ClassVar[GroupBy]
    GROUP_BY_DISTRICT: _ClassVar[GroupBy]
    GROUP_BY_ASKING_INSTITUTION: _ClassVar[GroupBy]
    GROUP_BY_ISSUING_INSTITUTION: _ClassVar[GroupBy]
    GROUP_BY_ISSUER_ASKER_PAIR: _ClassVar[GroupBy]
    GROUP_BY_ITEM: _ClassVar[GroupBy]
    GROUP_BY_CATEGORY: _ClassVar[GroupBy]
GRANULARITY_UNSPECIFIED: Granularity
GRANULARITY_DAY: Granularity
GRANULARITY_WEEK: Granularity
GRANULARITY_MONTH: Granularity
GROUP_BY_UNSPECIFIED: GroupBy
GROUP_BY_DISTRICT: GroupBy
GROUP_BY_ASKING_INSTITUTION: GroupBy
GROUP_BY_ISSUING_INSTITUTION: GroupBy
GROUP_BY_ISSUER_ASKER_PAIR: GroupBy
GROUP_BY_ITEM: GroupBy
GROUP_BY_CATEGORY: GroupBy

class ReportRequest(_message.Message):
    __slots__ = ("from_date", "to_date", "granularity", "group_by")
    FROM_DATE_FIELD_NUMBER: _ClassVar[int]
    TO_DATE_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    from_date: str
    to_date: str
    granularity: Granularity
    group_by: GroupBy
    def __init__(self, from_date: _Optional[str] = ..., to_date: _Optional[str] = ..., granularity: _Optional[_Union[Granularity, str]] = ..., group_by: _Optional[_Union[GroupBy, str]] = ...) -> None: ...

class DeclineCount(_message.Message):
    __slots__ = ("reason", "count")
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    reason: str
    count: int
    def __init__(self, reason: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class ReportRow(_message.Message):
    __slots__ = ("period_start", "period_end", "group_key", "group_label", "checks", "items_checked", "items_recognizable", "accepted", "declined", "declined_by_reason", "recognition_rate", "saving", "items_recognizable_own_institution", "accepted_own_institution", "saving_own_institution")
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    GROUP_KEY_FIELD_NUMBER: _ClassVar[int]
    GROUP_LABEL_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    ITEMS_RECOGNIZABLE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DECLINED_FIELD_NUMBER: _ClassVar[int]
    DECLINED_BY_REASON_FIELD_NUMBER: _ClassVar[int]
    RECOGNITION_RATE_FIELD_NUMBER: _ClassVar[int]
    SAVING_FIELD_NUMBER: _ClassVar[int]
    ITEMS_RECOGNIZABLE_OWN_INSTITUTION_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_OWN_INSTITUTION_FIELD_NUMBER: _ClassVar[int]
    SAVING_OWN_INSTITUTION_FIELD_NUMBER: _ClassVar[int]
    period_start: str
    period_end: str
    group_key: str
    group_label: str
    checks: int
    items_checked: int
    items_recognizable: int
    accepted: int
    declined: int
    declined_by_reason: _containers.RepeatedCompositeFieldContainer[DeclineCount]
    recognition_rate: str
    saving: str
    items_recognizable_own_institution: int
    accepted_own_institution: int
    saving_own_institution: str
    def __init__(self, period_start: _Optional[str] = ..., period_end: _Optional[str] = ..., group_key: _Optional[str] = ..., group_label: _Optional[str] = ..., checks: _Optional[int] = ..., items_checked: _Optional[int] = ..., items_recognizable: _Optional[int] = ..., accepted: _Optional[int] = ..., declined: _Optional[int] = ..., declined_by_reason: _Optional[_Iterable[_Union[DeclineCount, _Mapping]]] = ..., recognition_rate: _Optional[str] = ..., saving: _Optional[str] = ..., items_recognizable_own_institution: _Optional[int] = ..., accepted_own_institution: _Optional[int] = ..., saving_own_institution: _Optional[str] = ...) -> None: ...

class SavingsReport(_message.Message):
    __slots__ = ("from_date", "to_date", "granularity", "group_by", "rows", "totals", "suppressed_rows", "min_group_size", "generated_at", "own_institution_counted")
    FROM_DATE_FIELD_NUMBER: _ClassVar[int]
    TO_DATE_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_ROWS_FIELD_NUMBER: _ClassVar[int]
    MIN_GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    GENERATED_AT_FIELD_NUMBER: _ClassVar[int]
    OWN_INSTITUTION_COUNTED_FIELD_NUMBER: _ClassVar[int]
    from_date: str
    to_date: str
    granularity: Granularity
    group_by: GroupBy
    rows: _containers.RepeatedCompositeFieldContainer[ReportRow]
    totals: ReportRow
    suppressed_rows: int
    min_group_size: int
    generated_at: str
    own_institution_counted: bool
    def __init__(self, from_date: _Optional[str] = ..., to_date: _Optional[str] = ..., granularity: _Optional[_Union[Granularity, str]] = ..., group_by: _Optional[_Union[GroupBy, str]] = ..., rows: _Optional[_Iterable[_Union[ReportRow, _Mapping]]] = ..., totals: _Optional[_Union[ReportRow, _Mapping]] = ..., suppressed_rows: _Optional[int] = ..., min_group_size: _Optional[int] = ..., generated_at: _Optional[str] = ..., own_institution_counted: _Optional[bool] = ...) -> None: ...

class CsvChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...
