"""What `mutualrec demo` loads, dated relative to the day it runs (pure: no I/O but bytes in,
bytes out).

The samples in ``dicom_samples/`` are dated 2024, past every item's validity window: loaded as
they are, nothing is ever recognizable. The demo loads copies dated a few days before today.
Each copy's UIDs are derived from the original UID and the new date, so running the demo twice
on one day sends the same bytes (the region answers "duplicate") and on another day makes new
studies rather than new versions of old ones.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

RESIDENT_ID_SYSTEM = "https://fhir.mutualrec.org/sid/resident-id-card"
UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class Hospital:
    """A demo institution and the recognition qualifications it holds."""

    code: str
    district: str
    level: str
    # Categories it holds the HR mark for, city scope ("" for none).
    categories: tuple[str, ...]


# The three hospitals of the samples. The community hospital holds no qualification: its chest
# film shows what a check answers for an unqualified issuer.
HOSPITALS = (
    Hospital("H500103001", "Yuzhong", "tertiary", ("imaging", "lab")),
    Hospital("H500106002", "Shapingba", "tertiary", ("imaging",)),
    Hospital("H500112003", "Yubei", "primary", ()),
)
# The qualifications hold from a fixed day in the past: before any demo result, on any date.
QUALIFIED_FROM = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
# Days before today each sample study is dated: all inside their items' windows (90 days for CT
# and MR, 30 for the film and the ultrasound).
DAYS_AGO = {
    "ct_chest_contrast_hosp_a": 3,
    "us_abdomen_hosp_a": 5,
    "dx_chest_2v_hosp_c": 10,
    "ct_head_hosp_b": 20,
    "mr_brain_hosp_b": 19,
}
# Elements holding the sample's own UIDs (not class or syntax UIDs, which stay).
_INSTANCE_UID_KEYWORDS = frozenset(
    {
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
        "ReferencedSOPInstanceUID",
        "MediaStorageSOPInstanceUID",
    }
)


def demo_uid(original: str, day: dt.date) -> str:
    """The UID a sample's ``original`` UID has in the copy dated ``day`` (same input, same UID)."""
    return str(generate_uid(prefix=PYDICOM_ROOT_UID, entropy_srcs=[original, day.isoformat()]))


def redate_instance(data: bytes, day: dt.date) -> bytes:
    """A sample DICOM file as if acquired on ``day``: its dates moved, its UIDs derived anew."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    original = str(dataset.StudyDate)
    new_date = day.strftime("%Y%m%d")
    for element in [*dataset.file_meta, *dataset.iterall()]:
        if element.keyword in _INSTANCE_UID_KEYWORDS and element.value:
            element.value = demo_uid(str(element.value), day)
        elif element.VR == "DA" and element.value == original:
            element.value = new_date
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def accession_number(original: str, day: dt.date) -> str:
    """The copy's accession number: the day makes it the hospital's new order."""
    return f"{original[:40]}-{day:%m%d}"


def lab_bundle(patient_id: str, lis: str, day: dt.date) -> dict[str, Any]:
    """A LIS's batch Bundle: potassium and glucose of ``patient_id`` reported on ``day``.

    Identifiers carry the day: the same day's bundle is the same results (unchanged when sent
    again), another day's are new results.
    """

    def observation(code: str, loinc: str, text: str, value: str, low: str, high: str) -> Any:
        quantity = {"system": UCUM, "code": "mmol/L"}
        return {
            "fullUrl": f"urn:uuid:demo-{code}",
            "resource": {
                "resourceType": "Observation",
                "identifier": [{"system": lis, "value": f"DEMO-{day:%Y%m%d}-{code}"}],
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": loinc}], "text": text},
                "subject": {"reference": "urn:uuid:demo-patient"},
                "effectiveDateTime": f"{day.isoformat()}T08:05:00+08:00",
                "issued": f"{day.isoformat()}T10:12:00+08:00",
                "valueQuantity": {"value": float(value), "unit": "mmol/L", **quantity},
                "referenceRange": [
                    {
                        "low": {"value": float(low), **quantity},
                        "high": {"value": float(high), **quantity},
                    }
                ],
            },
            "request": {"method": "POST", "url": "Observation"},
        }

    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "fullUrl": "urn:uuid:demo-patient",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": RESIDENT_ID_SYSTEM, "value": patient_id}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            observation("K", "2823-3", "钾", "4.1", "3.5", "5.3"),
            observation("GLU", "2345-7", "葡萄糖", "5.2", "3.9", "6.1"),
        ],
    }
