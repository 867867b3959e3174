"""Micro-benchmarks of the ingest hot path (run with `pytest tests/benchmarks --benchmark-only`).

Skipped in the normal test run (`--benchmark-skip` in pyproject); figures go to
docs/benchmarks.md. Each still asserts its result, so a broken hot path fails here too.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from mutualrec.identity import parse_identity, patient_key
from mutualrec.imaging.dicom_json import metadata_json
from mutualrec.imaging.raw_dicom_json import instance_metadata
from mutualrec.ingest.dicom_header import DicomHeader, read_header
from tests.conftest import SAMPLES


@pytest.fixture(scope="module")
def ct_instance(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 512x512 16-bit CT instance (about 0.5 MB), the benchmark study's shape."""
    ds = pydicom.dcmread(next(SAMPLES.glob("ct_chest_contrast_hosp_a/*.dcm")))
    ds.Rows = ds.Columns = 512
    ds.PixelData = bytes(512 * 512 * 2)
    path: Path = tmp_path_factory.mktemp("bench") / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def test_read_header_of_a_ct_instance(benchmark: BenchmarkFixture, ct_instance: bytes) -> None:
    header: DicomHeader = benchmark(lambda: read_header(io.BytesIO(ct_instance), len(ct_instance)))
    assert header.modality == "CT"


def test_patient_key_of_a_resident_id(benchmark: BenchmarkFixture) -> None:
    secret = b"s" * 32
    key: str = benchmark(
        lambda: patient_key(parse_identity("RESIDENT_ID_CARD", "11010519491231002X"), secret)
    )
    assert len(key) == 64


def test_metadata_json_of_a_ct_instance_raw(
    benchmark: BenchmarkFixture, ct_instance: bytes
) -> None:
    """WADO-RS metadata of one instance, the raw walk (the same instance again: its values'
    checks are then remembered, as for a study's instances that share most values)."""
    prefix = ct_instance[: 64 * 1024]
    built: bytes = benchmark(
        lambda: instance_metadata(prefix, complete=False, header=lambda: pydicom.Dataset())
    )
    assert b'"00080060":{"vr":"CS","Value":["CT"]}' in built


def test_metadata_json_of_a_ct_instance_pydicom(
    benchmark: BenchmarkFixture, ct_instance: bytes
) -> None:
    """The same through pydicom (dcmread of the header, to_json_dict): the fallback path."""
    prefix = ct_instance[: 64 * 1024]
    built: dict[str, Any] = benchmark(
        lambda: metadata_json(pydicom.dcmread(io.BytesIO(prefix), stop_before_pixels=True))
    )
    assert built["00080060"] == {"vr": "CS", "Value": ["CT"]}
