"""The pure parts of DICOMweb: query checking and matching (PS3.4 C.2.2.2), Accept headers,
frame lists and frames read from a sample file."""

from __future__ import annotations

import pydicom
import pytest

from mutualrec.http.dicomweb.multipart import accepted
from mutualrec.imaging.dicomweb_query import Level, matches, parse_query
from mutualrec.imaging.frames import parse_frame_list, read_frames
from mutualrec.violations import Rejected
from tests.conftest import SAMPLES


def _fields(error: pytest.ExceptionInfo[Rejected]) -> list[str]:
    return [v.field for v in error.value.violations]


def test_a_query_is_read_with_its_paging_and_includes() -> None:
    query = parse_query(
        [
            ("PatientID", "A1"),
            ("00080050", "ACC*"),
            ("includefield", "StudyDescription,00080080"),
            ("limit", "5000"),
            ("offset", "3"),
            ("fuzzymatching", "false"),
            ("ModalitiesInStudy", ""),
        ],
        Level.STUDY,
    )
    assert dict(query.filters) == {"PatientID": "A1", "AccessionNumber": "ACC*"}
    assert {"StudyDescription", "InstitutionName", "ModalitiesInStudy"} <= query.include
    assert (query.limit, query.offset) == (1000, 3)


def test_every_bad_parameter_is_named() -> None:
    with pytest.raises(Rejected) as error:
        parse_query(
            [("limit", "x"), ("SOPInstanceUID", "1.2"), ("Nonsense", "1"), ("StudyDate", "2024")],
            Level.SERIES,
        )
    assert sorted(_fields(error)) == ["Nonsense", "SOPInstanceUID", "StudyDate", "limit"]


def test_a_study_attribute_is_no_filter_under_a_study_path() -> None:
    with pytest.raises(Rejected) as error:
        parse_query([("PatientID", "A1")], Level.SERIES, [Level.STUDY])
    assert _fields(error) == ["PatientID"]


@pytest.mark.parametrize(
    ("keyword", "wanted", "values", "expected"),
    [
        ("StudyDate", "20240101-20240331", ["20240318"], True),
        ("StudyDate", "20240401-", ["20240318"], False),
        ("StudyDate", "-20240318", ["20240318"], True),
        ("StudyTime", "1400-1430", ["142959"], True),
        ("StudyTime", "1400-1430", ["143100"], False),
        ("StudyInstanceUID", "1.2,1.3", ["1.3"], True),
        ("StudyInstanceUID", "1.2\\1.3", ["1.4"], False),
        ("PatientName", "zhang*", ["ZHANG^WEI"], True),
        ("PatientName", "ZH?NG^WEI", ["ZHANG^WEI"], True),
        ("StudyDescription", "CT*", ["ct chest"], False),
        ("ModalitiesInStudy", "CT", ["CT", "SR"], True),
        ("AccessionNumber", "A[1]", ["A[1]"], True),
        ("PatientID", "A1", [], False),
    ],
)
def test_matching(keyword: str, wanted: str, values: list[str], expected: bool) -> None:
    assert matches(keyword, wanted, values) is expected


def test_accept_ranges_come_by_preference_with_their_parameters() -> None:
    ranges = accepted(
        'image/png;q=0.5, multipart/related; type="application/dicom"; '
        "transfer-syntax=1.2.840.10008.1.2.1, text/html;q=0"
    )
    assert [r.media_type for r in ranges] == ["multipart/related", "image/png"]
    assert ranges[0].parameters == {
        "type": "application/dicom",
        "transfer-syntax": "1.2.840.10008.1.2.1",
    }
    assert ranges[0].part_type_covers("application/dicom")
    assert [r.media_type for r in accepted(None)] == ["*/*"]


@pytest.mark.parametrize("text", ["", "0", "1,", "a", "1-3", "1,2,x", "1" * 10])
def test_bad_frame_lists(text: str) -> None:
    with pytest.raises(Rejected):
        parse_frame_list(text)


def test_native_frames_are_read_at_their_offset() -> None:
    path = next((SAMPLES / "ct_chest_contrast_hosp_a").glob("*.dcm"))
    with path.open("rb") as fp:
        layout, [frame] = read_frames(fp, [1])
    assert layout.native
    assert frame == pydicom.dcmread(path).PixelData
    with path.open("rb") as fp, pytest.raises(Rejected):
        read_frames(fp, [2])
