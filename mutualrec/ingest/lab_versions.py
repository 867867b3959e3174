"""What a submitted Observation does to the result the region already holds under its identity.

History is never rewritten: changed content becomes a new version that supersedes the earlier
ones; ``entered-in-error`` withdraws the result; a final result does not go back to preliminary,
and a changed final result must say it is an amendment or correction.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from mutualrec.ingest.lab_result import AMENDING_STATUSES
from mutualrec.matching.facts import FINAL_STATUSES, ResultStatus


class Change(enum.Enum):
    """The effect of one submission on the held result."""

    CREATED = "created"
    NEW_VERSION = "new-version"
    UNCHANGED = "unchanged"
    WITHDRAWN = "withdrawn"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class HeldResult:
    """The current version of a held result, and the digests of all its versions."""

    version: int
    status: ResultStatus
    content_sha256: str
    patient_key: str
    versions_by_sha256: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Transition:
    """The decided change; ``version`` is the version the submitted content is held as."""

    change: Change
    version: int
    reason: str = ""
    reason_code: str = ""


_NOT_YET_FINAL = frozenset(
    {
        ResultStatus.REGISTERED,
        ResultStatus.SPECIMEN_IN_PROCESS,
        ResultStatus.PRELIMINARY,
        ResultStatus.UNKNOWN,
    }
)


def _refuse(held: HeldResult, reason: str, code: str) -> Transition:
    return Transition(Change.REFUSED, 0, reason, code)


def decide_transition(
    held: HeldResult | None, status: ResultStatus, content_sha256: str, patient_key: str
) -> Transition:
    """The change a submission with ``status`` and content digest makes to ``held``."""
    if held is None:
        change = Change.WITHDRAWN if status is ResultStatus.ENTERED_IN_ERROR else Change.CREATED
        return Transition(change, 1)
    if content_sha256 in held.versions_by_sha256:
        return Transition(Change.UNCHANGED, held.versions_by_sha256[content_sha256])
    current = f"version {held.version} ({held.status.value})"
    if patient_key != held.patient_key:
        return _refuse(
            held,
            f"this identifier already names a result of another patient ({current}); "
            "an identifier cannot move between patients",
            "IDENTIFIER_OF_OTHER_PATIENT",
        )
    if held.status is ResultStatus.ENTERED_IN_ERROR:
        return _refuse(
            held,
            f"the result was withdrawn as entered-in-error in {current}; "
            "send a corrected result under a new identifier",
            "RESULT_WITHDRAWN",
        )
    next_version = held.version + 1
    if status is ResultStatus.ENTERED_IN_ERROR:
        return Transition(Change.WITHDRAWN, next_version)
    if held.status in FINAL_STATUSES:
        if status in _NOT_YET_FINAL or status not in FINAL_STATUSES:
            return _refuse(
                held,
                f"the result is already {held.status.value} ({current}); going back to "
                f"{status.value} is refused: withdraw it with entered-in-error instead",
                "STATUS_REGRESSION",
            )
        if status not in AMENDING_STATUSES:
            return _refuse(
                held,
                f"the content differs from the held {current}; a changed final result must "
                "have status amended or corrected",
                "AMENDMENT_STATUS_REQUIRED",
            )
    return Transition(Change.NEW_VERSION, next_version)
