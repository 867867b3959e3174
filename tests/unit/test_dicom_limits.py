"""What reading one instance's header may cost: a decompression bomb and an instance of millions
of empty elements are refused at a limit, not walked to the end."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from mutualrec.ingest.dicom_header import read_header
from mutualrec.ingest.dicom_limits import HeaderLimits
from mutualrec.violations import Rejected
from tests.dicom_bomb import padded_instance
from tests.helpers import study_files


@pytest.fixture(scope="module")
def sample(manifest: dict[str, Any]) -> Path:
    return study_files(manifest["ct_chest_contrast_hosp_a"])[0]


def _refusal(data: bytes, limits: HeaderLimits) -> tuple[str, str]:
    with pytest.raises(Rejected) as refused:
        read_header(io.BytesIO(data), len(data), limits=limits)
    [violation] = refused.value.violations
    return violation.field, violation.reason


def test_a_decompression_bomb_is_refused_by_its_inflation_ratio(sample: Path) -> None:
    # 4.4 million empty elements, 35 MB inflated, some tens of KB sent: 23 s of CPU to walk.
    bomb = padded_instance(sample, 4_400_000, deflated=True)
    assert len(bomb) < 100_000

    assert _refusal(bomb, HeaderLimits()) == ("instance", "INFLATION_RATIO")


def test_a_deflated_dataset_larger_than_allowed_is_refused(sample: Path) -> None:
    data = padded_instance(sample, 3_000_000, deflated=True)
    limits = HeaderLimits(max_inflated_bytes=16 * 1024 * 1024, max_inflate_ratio=2000)

    assert _refusal(data, limits) == ("instance", "INFLATES_TOO_LARGE")


@pytest.mark.parametrize("deflated", [True, False])
def test_an_instance_of_too_many_elements_is_refused(sample: Path, deflated: bool) -> None:
    data = padded_instance(sample, 1001, deflated=deflated)

    assert _refusal(data, HeaderLimits(max_elements=1000)) == ("instance", "TOO_MANY_ELEMENTS")


@pytest.mark.parametrize("deflated", [True, False])
def test_an_instance_within_the_limits_is_read(sample: Path, deflated: bool) -> None:
    data = padded_instance(sample, 100, deflated=deflated)

    header = read_header(io.BytesIO(data), len(data), limits=HeaderLimits(max_elements=1000))

    assert header.study_instance_uid == (
        "1.2.826.0.1.3680043.8.498.42449593810660061441908920099911643823"
    )
