"""Micro-benchmarks of thumbnail rendering (pytest-benchmark).

Skipped in the normal test run; figures go to docs/benchmarks.md. Each asserts its result, so a
broken renderer fails here too.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless
from pytest_benchmark.fixture import BenchmarkFixture

from mutualrec.imaging.thumbnails import THUMBNAIL_SIZE, Thumbnail, render_thumbnail
from tests.conftest import SAMPLES


@pytest.fixture(scope="module")
def ct_dataset() -> pydicom.Dataset:
    """A 512x512 16-bit CT instance with real-looking content: a chest sample at twice the size."""
    ds = pydicom.dcmread(SAMPLES / "ct_chest_contrast_hosp_a" / "S03_I003.dcm")
    pixels = np.repeat(np.repeat(ds.pixel_array, 2, axis=0), 2, axis=1)
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [value / 2 for value in ds.PixelSpacing]
    ds.PixelData = pixels.astype("<i2").tobytes()
    return ds


@pytest.fixture(scope="module")
def ct_file(ct_dataset: pydicom.Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("thumbnails") / "ct.dcm"
    ct_dataset.save_as(path, enforce_file_format=True)
    return path


def _render_ok(benchmark: BenchmarkFixture, path: Path) -> None:
    thumbnail: Thumbnail = benchmark(render_thumbnail, path)
    assert not thumbnail.placeholder, thumbnail.reason
    assert (thumbnail.width, thumbnail.height) == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)


def test_render_a_512_ct_instance(benchmark: BenchmarkFixture, ct_file: Path) -> None:
    _render_ok(benchmark, ct_file)


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless], ids=["j2k-lossless", "rle"])
def test_render_a_compressed_512_ct_instance(
    benchmark: BenchmarkFixture,
    ct_dataset: pydicom.Dataset,
    syntax: str,
    tmp_path: Path,
) -> None:
    compressed = copy.deepcopy(ct_dataset)  # compress() changes the file meta too
    compressed.compress(syntax)
    path = tmp_path / "ct.dcm"
    compressed.save_as(path, enforce_file_format=True)
    _render_ok(benchmark, path)
