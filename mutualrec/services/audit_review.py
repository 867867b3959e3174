"""Reading the audit trail as an auditor: a patient's accesses, and the chains' integrity."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from mutualrec.identity import parse_identity, patient_key
from mutualrec.storage import audit_log
from mutualrec.storage.audit_log import Access, ChainProblem


@dataclass(frozen=True, slots=True)
class PatientAccesses:
    """Whose accesses to list: a patient by an identity document, and how many entries."""

    document_type: str
    document_number: str
    issuing_country: str
    limit: int


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """The audit trail's hash chains recomputed."""

    checked: int
    problems: tuple[ChainProblem, ...]


class AuditReview:
    """The audit trail of one index, read back."""

    def __init__(self, sessions: sessionmaker[Session], patient_key_secret: bytes) -> None:
        self._sessions = sessions
        self._patient_key_secret = patient_key_secret

    def accesses(self, request: PatientAccesses) -> list[Access]:
        """The patient's entries, newest first."""
        key = patient_key(
            parse_identity(request.document_type, request.document_number, request.issuing_country),
            self._patient_key_secret,
        )
        with self._sessions() as session:
            return [access for _row_id, access in audit_log.accesses(session, key, request.limit)]

    def verify(self) -> ChainCheck:
        """Recompute every chain: an edited, removed or cut entry is a problem."""
        with self._sessions() as session:
            checked, problems = audit_log.verify(session)
        return ChainCheck(checked, tuple(problems))
