"""Attributes archives leave empty or write the ACR-NEMA way: the header is read all the same."""

from __future__ import annotations

import datetime as dt
import io

import pytest

from mutualrec.ingest.dicom_header import DicomHeader, read_header
from mutualrec.violations import Rejected
from tests.conftest import SAMPLES
from tests.dicom_vendor import rewritten

CT_SAMPLE = sorted((SAMPLES / "ct_chest_contrast_hosp_a").glob("*.dcm"))[0]
NO_DATES = {"StudyDate": None, "SeriesDate": None, "AcquisitionDate": None, "ContentDate": None}
TODAY = dt.date(2026, 3, 1)


def _read(**changes: str | None) -> DicomHeader:
    data = rewritten(CT_SAMPLE, **changes)
    return read_header(io.BytesIO(data), len(data), today=TODAY)


def test_an_empty_patient_id_is_read_as_empty() -> None:
    assert _read(PatientID="").patient_id == ""


def test_an_acr_nema_dotted_study_date_is_parsed() -> None:
    header = _read(StudyDate="1996.10.29")

    assert (header.study_date, header.date_source) == (dt.date(1996, 10, 29), "StudyDate")


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        ({"StudyDate": "20250102"}, (dt.date(2025, 1, 2), "StudyDate")),
        ({"SeriesDate": "20250103"}, (dt.date(2025, 1, 3), "SeriesDate")),
        (
            {"AcquisitionDate": "2025.01.04", "ContentDate": "20250105"},
            (dt.date(2025, 1, 4), "AcquisitionDate"),
        ),
        ({"ContentDate": "20250105"}, (dt.date(2025, 1, 5), "ContentDate")),
        ({}, (None, "")),
    ],
)
def test_the_study_date_falls_back_to_series_acquisition_content(
    dates: dict[str, str], expected: tuple[dt.date | None, str]
) -> None:
    header = _read(**{**NO_DATES, **dates})

    assert (header.study_date, header.date_source) == expected


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"StudyDate": "1996.1029"}, "(0008,0020) StudyDate", "MALFORMED_DATE"),
        ({"StudyDate": "1996-10-29"}, "(0008,0020) StudyDate", "MALFORMED_DATE"),
        ({**NO_DATES, "SeriesDate": "2025.02.30"}, "(0008,0021) SeriesDate", "MALFORMED_DATE"),
        ({"StudyDate": "2026.03.03"}, "(0008,0020) StudyDate", "FUTURE_DATE"),
        ({**NO_DATES, "ContentDate": "18991231"}, "(0008,0023) ContentDate", "MALFORMED_DATE"),
    ],
)
def test_a_date_present_but_wrong_is_refused(
    changes: dict[str, str | None], field: str, reason: str
) -> None:
    with pytest.raises(Rejected) as refused:
        _read(**changes)

    assert [(v.field, v.reason) for v in refused.value.violations] == [(field, reason)]
