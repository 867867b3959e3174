"""Field violations: what is wrong with submitted data, and where in it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Violation:
    """One problem, with a path into what was submitted and a stable reason code.

    ``field`` points into the caller's data: ``header.patient.document_number``, or a DICOM
    attribute as ``(0020,000D) StudyInstanceUID``.
    """

    field: str
    description: str
    reason: str


class Rejected(Exception):
    """Submitted data that cannot be accepted, with every violation found."""

    def __init__(self, summary: str, violations: list[Violation]) -> None:
        super().__init__(summary)
        self.summary = summary
        self.violations = violations

    @classmethod
    def one(cls, summary: str, field: str, description: str, reason: str) -> Rejected:
        """A rejection for a single violation."""
        return cls(summary, [Violation(field, description, reason)])


# How much of a caller's value an error message repeats: enough to recognize it, never so much
# that a 100 KB value swells a reply's metadata past what gRPC carries.
ECHO_LIMIT = 100


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote(value: str, limit: int = ECHO_LIMIT) -> str:
    """A caller's value as an error message repeats it: quoted, at most ``limit`` characters."""
    return repr(clip(value, limit))
