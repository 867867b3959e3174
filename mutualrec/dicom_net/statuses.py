"""C-STORE response statuses (PS3.4 B.2.3, PS3.7 C.4.2.1.4) for each outcome of an instance.

| outcome | status |
|---|---|
| stored, new version | 0x0000 success |
| duplicate (the same bytes are held) | 0xB000 warning, ErrorComment says it was held already |
| stored, patient not known yet (held unlinked) | 0xB000 warning, ErrorComment says to link it |
| patient cannot be identified (empty PatientID) | 0xC001 failure, ErrorComment says how |
| refused by validation | 0xC000 failure ("cannot understand"), ErrorComment names the problem |
| storage unavailable | 0xA700 failure ("out of resources"): send again later |

Warnings and failures carry an ErrorComment (VR LO: at most 64 characters, so it is the reason
code and as much of the description as fits) and, where the problem is one attribute, its tag
as OffendingElement. The full reason is in the server's log.

A held unlinked instance is stored durably (a PACS must not send it again), so its status is a
warning, not a failure: 0xB000 like a duplicate (Storage has no warning code of its own for it),
told apart by the ErrorComment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mutualrec.ingest.study_upload import InstanceOutcome, OutcomeKind
from mutualrec.services.dicom_store import PATIENT_NOT_IDENTIFIED

SUCCESS = 0x0000
DUPLICATE = 0xB000
REFUSED = 0xC000
HELD_UNLINKED = 0xB000
PATIENT_UNKNOWN = 0xC001
OUT_OF_RESOURCES = 0xA700
# VR LO's maximum length.
COMMENT_MAX = 64
UNLINKED_COMMENT = "held unlinked: PatientID names no patient; use LinkPatient"
PATIENT_ID_TAG = 0x00100020
_TAG = re.compile(r"^\(([0-9A-F]{4}),([0-9A-F]{4})\)")


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """What the C-STORE response says of one instance."""

    code: int
    comment: str = ""
    offending_tag: int | None = None


def comment(text: str) -> str:
    """``text`` cut to what an ErrorComment holds, in ASCII (LO's default repertoire)."""
    ascii_text = text.encode("ascii", "replace").decode("ascii").replace("\\", "/")
    return ascii_text if len(ascii_text) <= COMMENT_MAX else ascii_text[: COMMENT_MAX - 3] + "..."


def status_of(outcome: InstanceOutcome, *, held_unlinked: bool = False) -> StoreStatus:
    """The status of an instance's outcome (``held_unlinked``: its study awaits LinkPatient)."""
    if outcome.kind is OutcomeKind.DUPLICATE_IDENTICAL:
        return StoreStatus(DUPLICATE, comment(f"duplicate: held already as v{outcome.version}"))
    if outcome.kind is not OutcomeKind.REJECTED:
        if held_unlinked:
            return StoreStatus(HELD_UNLINKED, UNLINKED_COMMENT, PATIENT_ID_TAG)
        return StoreStatus(SUCCESS)
    first = outcome.violations[0] if outcome.violations else None
    if first is None:
        return StoreStatus(REFUSED, comment(outcome.reason))
    tag_match = _TAG.match(first.field)
    tag = int(tag_match[1] + tag_match[2], 16) if tag_match else None
    if first.reason == PATIENT_NOT_IDENTIFIED:
        return StoreStatus(
            PATIENT_UNKNOWN,
            comment("patient unknown: send PatientID or OtherPatientIDsSequence"),
            tag,
        )
    return StoreStatus(REFUSED, comment(f"{first.reason}: {first.description}"), tag)
