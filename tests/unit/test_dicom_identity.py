"""The identity document in OtherPatientIDsSequence (the C-STORE door's first way to a patient)."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from mutualrec.identity import DocumentType, IdentityDocument
from mutualrec.ingest.dicom_identity import identity_in, identity_of_instance
from mutualrec.violations import Rejected

RESIDENT_ID = "50010319680315109X"


def _item(number: str, issuer: str = "", type_code: str = "", country: str = "") -> Dataset:
    item = Dataset()
    item.PatientID = number
    if issuer:
        item.IssuerOfPatientID = issuer
    if type_code or country:
        qualifiers = Dataset()
        if type_code:
            qualifiers.IdentifierTypeCode = type_code
        if country:
            jurisdiction = Dataset()
            jurisdiction.CodeValue = country
            jurisdiction.CodingSchemeDesignator = "ISO3166_1"
            jurisdiction.CodeMeaning = country
            qualifiers.AssigningJurisdictionCodeSequence = [jurisdiction]
        item.IssuerOfPatientIDQualifiersSequence = [qualifiers]
    return item


def _with(*items: Dataset) -> Dataset:
    ds = Dataset()
    ds.PatientID = "A00012345"
    ds.OtherPatientIDsSequence = list(items)
    return ds


def test_issuer_naming_a_document_type() -> None:
    found = identity_in(_with(_item(RESIDENT_ID.lower(), issuer="RESIDENT_ID_CARD")))
    assert found == IdentityDocument(DocumentType.RESIDENT_ID_CARD, RESIDENT_ID)


def test_chinese_issuer_name() -> None:
    found = identity_in(_with(_item(RESIDENT_ID, issuer="居民身份证")))
    assert found == IdentityDocument(DocumentType.RESIDENT_ID_CARD, RESIDENT_ID)


def test_hl7_type_code_in_the_qualifiers() -> None:
    found = identity_in(_with(_item(RESIDENT_ID, issuer="CQ-EMPI", type_code="NNCHN")))
    assert found == IdentityDocument(DocumentType.RESIDENT_ID_CARD, RESIDENT_ID)


def test_passport_takes_its_country_from_the_jurisdiction() -> None:
    found = identity_in(_with(_item("E1234 5678", type_code="PPN", country="usa")))
    assert found == IdentityDocument(DocumentType.PASSPORT, "E12345678", "USA")


def test_items_naming_no_document_are_passed_over() -> None:
    other_mrn = _item("B00087654", issuer="H500106002")
    assert identity_in(_with(other_mrn)) is None
    found = identity_in(_with(other_mrn, _item(RESIDENT_ID, issuer="RESIDENT_ID_CARD")))
    assert found == IdentityDocument(DocumentType.RESIDENT_ID_CARD, RESIDENT_ID)


def test_no_sequence_names_no_one() -> None:
    assert identity_in(Dataset()) is None


def test_a_bad_check_digit_is_refused_not_passed_over() -> None:
    bad = _item("500103196803151091", issuer="RESIDENT_ID_CARD")
    with pytest.raises(Rejected) as refused:
        identity_in(_with(_item("B00087654", issuer="H500106002"), bad))
    [violation] = refused.value.violations
    assert violation.reason == "INVALID_IDENTITY"
    assert violation.field == "(0010,1002) OtherPatientIDsSequence[1].PatientID"


def test_a_passport_without_its_country_is_refused() -> None:
    with pytest.raises(Rejected) as refused:
        identity_in(_with(_item("E12345678", issuer="PASSPORT")))
    [violation] = refused.value.violations
    assert violation.field.endswith("AssigningJurisdictionCodeSequence[0].CodeValue")


def _instance_file(ds: Dataset) -> bytes:
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def test_read_from_an_instance_file() -> None:
    data = _instance_file(_with(_item(RESIDENT_ID, issuer="RESIDENT_ID_CARD")))
    found = identity_of_instance(io.BytesIO(data))
    assert found == IdentityDocument(DocumentType.RESIDENT_ID_CARD, RESIDENT_ID)
