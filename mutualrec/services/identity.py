"""Patient tokens: the region's identity provider (an administrator's key stands in for it)
vouches for a patient, who then reads their own data with the token."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from mutualrec.identity import InvalidIdentity, parse_identity, patient_key
from mutualrec.security.audit import touched
from mutualrec.security.patient_tokens import (
    DEFAULT_TTL,
    MAX_TTL,
    MIN_TTL,
    IssuedPatientToken,
    mint_patient_token,
)
from mutualrec.violations import Rejected, Violation


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """The patient's identity document as sent, and how long the token should last (0 for
    the default hour). Violations name the fields under ``patient.``."""

    document_type: str
    document_number: str
    issuing_country: str = ""
    ttl_seconds: int = 0


class PatientTokens:
    """Mints patient tokens; pure computation with the server's secrets."""

    def __init__(self, patient_key_secret: bytes, token_secret: bytes) -> None:
        self._patient_key_secret = patient_key_secret
        self._token_secret = token_secret

    def issue(self, request: TokenRequest) -> IssuedPatientToken:
        """A short-lived token reading one patient's own data; raises :class:`Rejected`
        naming every bad field."""
        problems = []
        try:
            document = parse_identity(
                request.document_type,
                request.document_number,
                request.issuing_country,
                field_prefix="patient.",
            )
        except InvalidIdentity as exc:
            problems.append(Violation(exc.field, str(exc), "INVALID_IDENTITY"))
        ttl = dt.timedelta(seconds=request.ttl_seconds) if request.ttl_seconds else DEFAULT_TTL
        if not MIN_TTL <= ttl <= MAX_TTL:
            problems.append(
                Violation(
                    "ttl_seconds",
                    f"must be between {MIN_TTL.total_seconds():.0f} and "
                    f"{MAX_TTL.total_seconds():.0f} (0 for one hour)",
                    "OUT_OF_RANGE",
                )
            )
        if problems:
            raise Rejected("the token request is invalid", problems)
        key = patient_key(document, self._patient_key_secret)
        touched(key, f"patient token valid {ttl.total_seconds():.0f} s")
        return mint_patient_token(self._token_secret, key, ttl)
