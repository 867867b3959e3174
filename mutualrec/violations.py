"""Field violations (what is wrong with submitted data, and where in it) and the domain errors
the services raise with them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self


@dataclass(frozen=True, slots=True)
class Violation:
    """One problem, with a path into what was submitted and a stable reason code.

    ``field`` points into the caller's data: ``header.patient.document_number``, or a DICOM
    attribute as ``(0020,000D) StudyInstanceUID``.
    """

    field: str
    description: str
    reason: str


class DomainError(Exception):
    """A request the services refuse, with what every door needs to say why.

    The services raise these; each door maps them in one place (gRPC status, HTTP problem,
    DICOM failure status) by their class, never by their text.
    """

    def __init__(self, summary: str, violations: list[Violation] | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.violations = violations or []

    @classmethod
    def one(cls, summary: str, field: str, description: str, reason: str) -> Self:
        """The error for a single violation."""
        return cls(summary, [Violation(field, description, reason)])


class Rejected(DomainError):
    """Submitted data that cannot be accepted, with every violation found."""

    def __init__(self, summary: str, violations: list[Violation]) -> None:
        super().__init__(summary, violations)


class NotFound(DomainError):
    """What the request names does not exist, or is not the caller's to see."""


class Conflict(DomainError):
    """Valid on its face, but the stored state does not allow it (a decision already taken,
    a document older than the one held)."""


class TooLarge(DomainError):
    """More than a request may carry; split it."""


class Unavailable(DomainError):
    """Storage cannot be reached or is busy now; the same request may succeed later."""


class DataLost(DomainError):
    """Something accepted earlier can no longer be read back intact."""


# How much of a caller's value an error message repeats: enough to recognize it, never so much
# that a 100 KB value swells a reply's metadata past what gRPC carries.
ECHO_LIMIT = 100


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote(value: str, limit: int = ECHO_LIMIT) -> str:
    """A caller's value as an error message repeats it: quoted, at most ``limit`` characters."""
    return repr(clip(value, limit))
