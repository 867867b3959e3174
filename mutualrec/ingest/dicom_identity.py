"""The patient's identity document as a DICOM instance may carry it: an item of
OtherPatientIDsSequence whose issuer says which document the ID is.

C-STORE has no upload header declaring the patient, so the C-STORE door looks here first. Items
whose issuer names no document the region accepts (another hospital's MRN, say) are passed
over; an item that names one but holds an unusable number is refused, never passed over: the
sender meant it as the patient's identity.
"""

from __future__ import annotations

import warnings
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset

from mutualrec.identity import DocumentType, IdentityDocument, InvalidIdentity, parse_identity
from mutualrec.ingest.dicom_header import attribute
from mutualrec.violations import Rejected

# IssuerOfPatientID (0010,0021) values naming a document: our document type names, and the
# Chinese names a RIS writes.
ISSUERS: dict[str, DocumentType] = {
    **{kind.value: kind for kind in DocumentType},
    "居民身份证": DocumentType.RESIDENT_ID_CARD,
    "护照": DocumentType.PASSPORT,
    "电子健康卡": DocumentType.E_HEALTH_CARD,
}
# IdentifierTypeCode (0040,0035) of IssuerOfPatientIDQualifiersSequence: HL7 v2 table 0203, as
# FHIR identifiers use it (NNCHN: China's national person identifier; PPN: passport number).
TYPE_CODES: dict[str, DocumentType] = {
    "NNCHN": DocumentType.RESIDENT_ID_CARD,
    "PPN": DocumentType.PASSPORT,
}
_SEQUENCE = "OtherPatientIDsSequence"


def _text(dataset: Dataset, keyword: str) -> str:
    value: Any = dataset.get(keyword, "")
    return str(value or "").strip()


def _first(dataset: Dataset, keyword: str) -> Dataset | None:
    items: Any = dataset.get(keyword)
    return items[0] if items else None


def _document_type(item: Dataset) -> tuple[DocumentType | None, str]:
    """The document an item's issuer names (None: none the region accepts) and, for a
    passport, the issuing country its qualifiers give."""
    qualifiers = _first(item, "IssuerOfPatientIDQualifiersSequence")
    country = ""
    kind = ISSUERS.get(_text(item, "IssuerOfPatientID").upper()) or ISSUERS.get(
        _text(item, "IssuerOfPatientID")
    )
    if qualifiers is not None:
        jurisdiction = _first(qualifiers, "AssigningJurisdictionCodeSequence")
        if jurisdiction is not None:
            country = _text(jurisdiction, "CodeValue")
        if kind is None:
            kind = TYPE_CODES.get(_text(qualifiers, "IdentifierTypeCode").upper())
    return kind, country


def identity_in(dataset: Dataset) -> IdentityDocument | None:
    """The identity document the first item of OtherPatientIDsSequence naming one holds; None
    when no item does. :class:`Rejected` when that item's number or country is unusable."""
    items: Any = dataset.get(_SEQUENCE) or []
    for position, item in enumerate(items):
        kind, country = _document_type(item)
        if kind is None:
            continue
        field = f"{attribute(_SEQUENCE)}[{position}]."
        try:
            return parse_identity(kind.value, _text(item, "PatientID"), country, field_prefix=field)
        except InvalidIdentity as bad:
            path = bad.field.replace("document_number", "PatientID").replace(
                "issuing_country", "AssigningJurisdictionCodeSequence[0].CodeValue"
            )
            raise Rejected.one(
                "the identity document in OtherPatientIDsSequence is invalid",
                path,
                str(bad),
                "INVALID_IDENTITY",
            ) from None
    return None


def identity_of_instance(fp: BinaryIO) -> IdentityDocument | None:
    """:func:`identity_in` the instance held in ``fp`` (a Part 10 file whose header
    :func:`~mutualrec.ingest.dicom_header.read_header` has accepted)."""
    fp.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset = dcmread(fp, force=True, stop_before_pixels=True, specific_tags=[_SEQUENCE])
            # Elements are converted on access, so a corrupt sequence fails in here.
            return identity_in(dataset)
        except Rejected:
            raise
        # Untrusted bytes make pydicom raise almost any exception type.
        except Exception as exc:
            raise Rejected.one(
                "OtherPatientIDsSequence cannot be read",
                attribute(_SEQUENCE),
                f"the sequence is malformed: {str(exc)[:200]}",
                "MALFORMED_ATTRIBUTE",
            ) from None
