"""What the recognition rules decide over, and what they answer.

Plain values: the API layer builds them from the index, the rules read them, nothing here touches
storage. Every datetime is timezone-aware: hospitals report in local time, the platform runs in
UTC, and a window boundary must mean the same instant for both.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from mutualrec.matching.catalog import CatalogItem, ItemCategory
from mutualrec.matching.language import Reason


def require_aware(value: dt.datetime, name: str) -> None:
    """Raise ValueError unless ``value`` carries a time zone."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")


class ResultStatus(enum.Enum):
    """FHIR ObservationStatus (R4 and R5 codes) of one version of a result."""

    REGISTERED = "registered"
    SPECIMEN_IN_PROCESS = "specimen-in-process"
    PRELIMINARY = "preliminary"
    FINAL = "final"
    AMENDED = "amended"
    CORRECTED = "corrected"
    APPENDED = "appended"
    CANCELLED = "cancelled"
    CANNOT_BE_OBTAINED = "cannot-be-obtained"
    ENTERED_IN_ERROR = "entered-in-error"
    UNKNOWN = "unknown"


FINAL_STATUSES = frozenset(
    {ResultStatus.FINAL, ResultStatus.AMENDED, ResultStatus.CORRECTED, ResultStatus.APPENDED}
)
# A result on its way: never recognizable, but worth telling the doctor to wait for.
PENDING_STATUSES = frozenset(
    {ResultStatus.REGISTERED, ResultStatus.SPECIMEN_IN_PROCESS, ResultStatus.PRELIMINARY}
)


class InstitutionLevel(enum.IntEnum):
    """Hospital grade; results flow freely downwards and sideways, upwards only by policy."""

    PRIMARY = 1
    SECONDARY = 2
    TERTIARY = 3


class Scope(enum.Enum):
    """How far a recognition qualification (the "HR" mark) reaches."""

    CITY = "city"
    REGION = "region"
    NATIONAL = "national"


@dataclass(frozen=True, slots=True)
class InstitutionFacts:
    """An institution as the rules see it."""

    code: str
    name: str
    level: InstitutionLevel
    city: str
    region: str


@dataclass(frozen=True, slots=True)
class Qualification:
    """An institution's "HR" mark for one item or a whole category, held in [from, until).

    ``valid_until`` None means still held.
    """

    institution_code: str
    item_code: str | None
    category: ItemCategory | None
    scope: Scope
    valid_from: dt.datetime
    valid_until: dt.datetime | None

    def __post_init__(self) -> None:
        if (self.item_code is None) == (self.category is None):
            raise ValueError("a qualification names exactly one of item_code and category")
        require_aware(self.valid_from, "valid_from")
        if self.valid_until is not None:
            require_aware(self.valid_until, "valid_until")
            if self.valid_until < self.valid_from:
                raise ValueError("a qualification cannot end before it starts")


@dataclass(frozen=True, slots=True)
class ResultFacts:
    """One version of one result, mapped to one catalog item.

    A result that maps to several items (a panel) appears once per item, with the same
    ``result_ref`` and ``version``.
    """

    result_ref: str
    version: int
    item_code: str
    status: ResultStatus
    report_time: dt.datetime
    issuer: InstitutionFacts
    # Held for review: a study whose declared item contradicts its images. Never recognized; a
    # check says why when nothing else answers the item.
    held: bool = False
    # When the specimen was collected (lab results; FHIR effective time), if known: where the
    # window starts under a collection-anchored policy.
    collected_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        require_aware(self.report_time, "report_time")
        if self.collected_at is not None:
            require_aware(self.collected_at, "collected_at")


class Verdict(enum.Enum):
    """The answer for one ordered item."""

    RECOGNIZABLE = "RECOGNIZABLE"
    EXPIRED = "EXPIRED"
    NO_RESULT = "NO_RESULT"
    ISSUER_NOT_QUALIFIED = "ISSUER_NOT_QUALIFIED"
    PRELIMINARY_ONLY = "PRELIMINARY_ONLY"
    NOT_COVERED = "NOT_COVERED"
    UNKNOWN_CODE = "UNKNOWN_CODE"


@dataclass(frozen=True, slots=True)
class Finding:
    """The verdict for one ordered item, the result it rests on, and a reason a doctor can read.

    ``saving`` is what recognizing would avoid; it is booked only when the doctor accepts.
    ``age`` is never negative: a report stamped within the clock skew after the check is new.
    """

    verdict: Verdict
    item: CatalogItem | None
    result: ResultFacts | None
    valid_until: dt.datetime | None
    age: dt.timedelta | None
    expired_since: dt.datetime | None
    # Integer fen (see mutualrec.money).
    saving_fen: int
    reason: Reason
