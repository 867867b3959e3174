"""A patient's identity document as the messages carry it, read into the domain's form."""

from __future__ import annotations

from mutualrec.identity import IdentityDocument, parse_identity
from mutualrec.v1 import common_pb2


def document_type_name(patient: common_pb2.PatientIdentity) -> str:
    """The document type's enum name; "" when unset or a number this service does not know
    (proto3 enums are open: a newer client may send one), which the identity check refuses."""
    names = common_pb2.IdentityDocumentType.DESCRIPTOR.values_by_number
    value = names.get(patient.document_type)
    return value.name if value is not None and patient.document_type else ""


def identity_document(patient: common_pb2.PatientIdentity, field_prefix: str) -> IdentityDocument:
    """The validated document; raises :class:`mutualrec.identity.InvalidIdentity` naming the
    field (under ``field_prefix``) that is wrong."""
    return parse_identity(
        document_type_name(patient),
        patient.document_number,
        patient.issuing_country,
        field_prefix=field_prefix,
    )
