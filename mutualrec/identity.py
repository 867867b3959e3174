"""Patient identity documents and the pseudonymous ``patient_key`` derived from them.

The region knows a patient by an identity document (type + number). The index never stores the
number: every record is keyed by an HMAC of the normalized document, so the same person sent by
two hospitals meets in one key while a leaked index reveals no ID numbers.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import re
from dataclasses import dataclass


class DocumentType(enum.Enum):
    """Identity documents the region accepts; values are the stable names used in keys."""

    RESIDENT_ID_CARD = "RESIDENT_ID_CARD"
    PASSPORT = "PASSPORT"
    E_HEALTH_CARD = "E_HEALTH_CARD"
    MAINLAND_TRAVEL_PERMIT = "MAINLAND_TRAVEL_PERMIT"
    FOREIGN_PERMANENT_RESIDENT_ID = "FOREIGN_PERMANENT_RESIDENT_ID"


class InvalidIdentity(ValueError):
    """An identity document that cannot name a patient; ``field`` says which part is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class IdentityDocument:
    """A validated, normalized identity document. Build it with :func:`parse_identity`."""

    document_type: DocumentType
    number: str
    issuing_country: str = ""

    def canonical(self) -> str:
        """The exact text the patient key is computed over; changing it re-keys every patient."""
        return f"{self.document_type.value}|{self.issuing_country}|{self.number}"


_RESIDENT_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RESIDENT_ID_CHECK = "10X98765432"
_RESIDENT_ID_SHAPE = re.compile(r"^\d{17}[\dX]$")
_GENERIC_NUMBER_SHAPE = re.compile(r"^[A-Z0-9]{5,32}$")
_COUNTRY_SHAPE = re.compile(r"^[A-Z]{3}$")


def resident_id_check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a GB 11643 resident ID's first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _RESIDENT_ID_WEIGHTS, strict=True))
    return _RESIDENT_ID_CHECK[total % 11]


def _validate_resident_id(number: str, field: str) -> str:
    normalized = number.strip().upper()
    if not _RESIDENT_ID_SHAPE.match(normalized):
        raise InvalidIdentity(field, "a resident ID number has 17 digits followed by a digit or X")
    try:
        dt.date(int(normalized[6:10]), int(normalized[10:12]), int(normalized[12:14]))
    except ValueError:
        raise InvalidIdentity(
            field,
            f"digits 7-14 of a resident ID number must be a birth date, got {normalized[6:14]}",
        ) from None
    expected = resident_id_check_digit(normalized[:17])
    if normalized[17] != expected:
        raise InvalidIdentity(field, "the check digit of the resident ID number does not match")
    return normalized


def parse_identity(
    document_type: str, number: str, issuing_country: str = "", *, field_prefix: str = ""
) -> IdentityDocument:
    """Validate and normalize an identity document.

    ``field_prefix`` is prepended to the names of offending fields, so a caller can point into its
    own message (``header.patient.``).
    """
    try:
        kind = DocumentType(document_type)
    except ValueError:
        raise InvalidIdentity(
            f"{field_prefix}document_type", "the identity document type is missing or unknown"
        ) from None
    number_field = f"{field_prefix}document_number"
    if kind is DocumentType.RESIDENT_ID_CARD:
        return IdentityDocument(kind, _validate_resident_id(number, number_field))
    normalized = re.sub(r"[\s-]", "", number).upper()
    if not _GENERIC_NUMBER_SHAPE.match(normalized):
        raise InvalidIdentity(number_field, "a document number has 5 to 32 letters or digits")
    country = issuing_country.strip().upper()
    if kind is DocumentType.PASSPORT:
        if not _COUNTRY_SHAPE.match(country):
            raise InvalidIdentity(
                f"{field_prefix}issuing_country",
                "a passport needs its issuing country as an ISO 3166-1 alpha-3 code",
            )
    else:
        country = ""
    return IdentityDocument(kind, normalized, country)


def patient_key(document: IdentityDocument, secret: bytes) -> str:
    """The pseudonymous key of the patient a document names: hex HMAC-SHA256 under ``secret``."""
    return hmac.new(secret, document.canonical().encode("utf-8"), hashlib.sha256).hexdigest()
