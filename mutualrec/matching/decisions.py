"""The doctor's decision on a recognizable result: adopted, or declined with a recorded reason.

The national rules let the receiving doctor re-order despite a recognizable result, but the
reason must be recorded (and explained to the patient); regulators count declines by reason.
"""

from __future__ import annotations

import enum

from mutualrec.violations import Violation


class DeclineReason(enum.Enum):
    """Why a doctor re-orders despite a recognizable result (the national list of exceptions)."""

    CONDITION_CHANGED = "CONDITION_CHANGED"
    FAST_CHANGING_VALUE = "FAST_CHANGING_VALUE"
    BEFORE_SURGERY_OR_TRANSFUSION = "BEFORE_SURGERY_OR_TRANSFUSION"
    EMERGENCY = "EMERGENCY"
    FORENSIC_ASSESSMENT = "FORENSIC_ASSESSMENT"
    PATIENT_REQUEST = "PATIENT_REQUEST"
    ISSUER_FAILED_QUALITY_ASSESSMENT = "ISSUER_FAILED_QUALITY_ASSESSMENT"
    IMAGE_QUALITY = "IMAGE_QUALITY"
    BODY_PART_MISMATCH = "BODY_PART_MISMATCH"
    OTHER = "OTHER"


def validate_decision(accepted: bool, reason: DeclineReason | None, text: str) -> list[Violation]:
    """Problems with a reported decision; empty when it can be recorded.

    A decline needs a reason, and OTHER needs the doctor's own words in ``text``; an acceptance
    takes no decline reason.
    """
    if accepted:
        if reason is not None:
            return [
                Violation(
                    "reason",
                    f"an accepted result takes no decline reason, got {reason.value}",
                    "REASON_ON_ACCEPTANCE",
                )
            ]
        return []
    if reason is None:
        return [Violation("reason", "a decline needs a reason", "DECLINE_REASON_REQUIRED")]
    if reason is DeclineReason.OTHER and not text.strip():
        return [
            Violation(
                "text", "a decline for another reason needs it in words", "DECLINE_TEXT_REQUIRED"
            )
        ]
    return []
