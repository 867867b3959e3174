"""The doctor's decision: acceptance takes no reason, a decline needs one, OTHER needs words."""

from __future__ import annotations

import pytest

from mutualrec.matching.decisions import DeclineReason, validate_decision


@pytest.mark.parametrize(
    ("accepted", "reason", "text", "expected"),
    [
        (True, None, "", []),
        (True, None, "adopted after viewing the images", []),
        (True, DeclineReason.EMERGENCY, "", [("reason", "REASON_ON_ACCEPTANCE")]),
        (False, None, "", [("reason", "DECLINE_REASON_REQUIRED")]),
        (False, None, "condition changed", [("reason", "DECLINE_REASON_REQUIRED")]),
        (False, DeclineReason.CONDITION_CHANGED, "", []),
        (False, DeclineReason.IMAGE_QUALITY, "motion artefacts", []),
        (False, DeclineReason.OTHER, "", [("text", "DECLINE_TEXT_REQUIRED")]),
        (False, DeclineReason.OTHER, "   ", [("text", "DECLINE_TEXT_REQUIRED")]),
        (False, DeclineReason.OTHER, "patient enrolled in a trial", []),
    ],
)
def test_validate_decision(
    accepted: bool, reason: DeclineReason | None, text: str, expected: list[tuple[str, str]]
) -> None:
    found = validate_decision(accepted, reason, text)
    assert [(violation.field, violation.reason) for violation in found] == expected


def test_every_decline_reason_but_other_stands_alone() -> None:
    for reason in DeclineReason:
        expected = [("text", "DECLINE_TEXT_REQUIRED")] if reason is DeclineReason.OTHER else []
        found = validate_decision(False, reason, "")
        assert [(violation.field, violation.reason) for violation in found] == expected
