"""Which patient a FHIR identifier names: the identity document behind ``patient_key``.

A hospital's MRN identifies a patient only inside that hospital; the region keys every record by
an identity document, so lab results and imaging of one person meet. The identifier's system
names the document; an identifier typed ``NNCHN`` (HL7 v2 table 0203: national person
identifier of China) is a resident ID card whatever its system.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mutualrec.identity import DocumentType, IdentityDocument, InvalidIdentity, parse_identity
from mutualrec.violations import Violation

SID = "https://fhir.mutualrec.org/sid/"
# Passports name their issuing country as the last path segment: .../sid/passport/CHN.
PASSPORT_SYSTEM = f"{SID}passport/"
DOCUMENT_SYSTEMS: Mapping[str, DocumentType] = {
    f"{SID}resident-id-card": DocumentType.RESIDENT_ID_CARD,
    f"{SID}e-health-card": DocumentType.E_HEALTH_CARD,
    f"{SID}mainland-travel-permit": DocumentType.MAINLAND_TRAVEL_PERMIT,
    f"{SID}foreign-permanent-resident-id": DocumentType.FOREIGN_PERMANENT_RESIDENT_ID,
}
_V2_IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _typed_resident_id(identifier: Mapping[str, Any]) -> bool:
    type_ = identifier.get("type")
    codings = type_.get("coding", []) if isinstance(type_, dict) else []
    return any(
        isinstance(c, dict) and c.get("system") == _V2_IDENTIFIER_TYPE and c.get("code") == "NNCHN"
        for c in codings
    )


def document_kind(identifier: Mapping[str, Any]) -> tuple[DocumentType, str] | None:
    """The document type and issuing country an identifier declares, or None for other ids."""
    system = identifier.get("system")
    if isinstance(system, str):
        if system in DOCUMENT_SYSTEMS:
            return DOCUMENT_SYSTEMS[system], ""
        if system.startswith(PASSPORT_SYSTEM):
            return DocumentType.PASSPORT, system.removeprefix(PASSPORT_SYSTEM)
    if _typed_resident_id(identifier):
        return DocumentType.RESIDENT_ID_CARD, ""
    return None


def identity_from_identifier(
    identifier: Mapping[str, Any], path: str
) -> IdentityDocument | Violation | None:
    """The identity document of one identifier at ``path``.

    None when the identifier is not an identity document (an MRN, say); a violation when it
    declares one whose number is invalid.
    """
    kind = document_kind(identifier)
    if kind is None:
        return None
    document_type, country = kind
    value = identifier.get("value")
    if not isinstance(value, str) or not value.strip():
        return Violation(
            f"{path}.value", "the identity document number is missing", "MISSING_FIELD"
        )
    try:
        return parse_identity(document_type.value, value, country)
    except InvalidIdentity as exc:
        field = f"{path}.value" if exc.field == "document_number" else f"{path}.system"
        return Violation(field, str(exc), "INVALID_IDENTITY")


def identity_from_identifiers(identifiers: Any, path: str) -> IdentityDocument | Violation | None:
    """The first identity document among a Patient's identifiers (``path`` is the list)."""
    if not isinstance(identifiers, list):
        return None
    for position, identifier in enumerate(identifiers):
        if isinstance(identifier, dict):
            found = identity_from_identifier(identifier, f"{path}[{position}]")
            if found is not None:
                return found
    return None
