"""DICOM thumbnails: the samples, pydicom's bundled syntaxes, the grayscale pipeline, bad input."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    MPEG2MPML,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from mutualrec.imaging import thumbnails
from mutualrec.imaging.thumbnails import (
    THUMBNAIL_SIZE,
    Thumbnail,
    placeholder_thumbnail,
    render_thumbnail,
    representative_index,
)
from tests.conftest import PYDICOM_FILES, REPO, SAMPLES

SAMPLE_FILES = sorted(SAMPLES.glob("*/*.dcm"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# pydicom's bundled test files (offline); the comment says what each one proves decodes.
BUNDLED_IMAGES = [
    "CT_small.dcm",  # CT without a window: percentiles
    "MR_small.dcm",  # 64x64, scaled up
    "MR_small_RLE.dcm",  # RLE Lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 Lossless
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS Lossless
    "MR_small_bigendian.dcm",  # Explicit VR Big Endian
    "JPEG2000.dcm",  # JPEG 2000, 1024x256 NM
    "JPGExtended.dcm",  # JPEG Extended 12-bit
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG Lossless SV1, RGB
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG Baseline, YBR_FULL
    "SC_rgb_rle.dcm",  # RLE, RGB
    "SC_rgb_rle_16bit.dcm",  # RLE, 16 bits per sample RGB
    "SC_rgb_rle_2frame.dcm",  # RLE, multi-frame RGB
    "SC_ybr_full_422_uncompressed.dcm",  # native YBR_FULL_422
    "SC_rgb_jls_lossy_line.dcm",  # JPEG-LS near-lossless, RGB
    "examples_jpeg2k.dcm",  # JPEG 2000 Lossless, YBR_RCT
    "examples_ybr_color.dcm",  # JPEG Baseline YBR_FULL_422, 30 frames
    "examples_palette.dcm",  # PALETTE COLOR
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
]
# The same 64x64 MR in other syntaxes: lossless, so it must render pixel for pixel the same.
MR_SMALL_LOSSLESS = [
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
]
# The same 100x100 stripes (red, pink, green, ... white) as SC_rgb_rle.dcm, other encodings.
SC_RGB_VARIANTS = [
    "SC_rgb_rle.dcm",
    "SC_rgb_rle_16bit.dcm",
    "SC_rgb_rle_32bit.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_dcmtk_+eb+cy+np.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_gdcm_KY.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
]


def bundled(name: str) -> Path:
    """One of pydicom's test files bundled with the package (no download)."""
    path = PYDICOM_FILES / name
    assert path.is_file(), name
    return path


def pixels(thumbnail: Thumbnail) -> npt.NDArray[np.int64]:
    """The thumbnail's decoded PNG as integers (rows, columns[, RGB])."""
    image = Image.open(io.BytesIO(thumbnail.png))
    assert image.size == (thumbnail.width, thumbnail.height)
    return np.asarray(image).astype(np.int64)


def fitted(columns: float, rows: float, size: int = THUMBNAIL_SIZE) -> tuple[int, int]:
    """(width, height) of a columns x rows picture scaled so its longest side is `size`."""
    scale = size / max(columns, rows)
    return round(columns * scale), round(rows * scale)


def write_image(
    path: Path,
    stored: npt.NDArray[Any],
    modality: str = "CT",
    sop_class: str = CTImageStorage,
    **attributes: Any,
) -> Path:
    """A minimal grayscale Part 10 file of `stored` (rows, columns) or (frames, rows, columns)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = modality
    ds.set_pixel_data(stored, "MONOCHROME2", stored.dtype.itemsize * 8)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def halves(left: float, right: float, rows: int = 64, columns: int = 128) -> npt.NDArray[np.int16]:
    stored = np.full((rows, columns), left, dtype=np.int16)
    stored[:, columns // 2 :] = right
    return stored


def rewritten(source: Path, target: Path, change: Callable[[Dataset], None]) -> Path:
    ds = pydicom.dcmread(source)
    change(ds)
    ds.save_as(target)
    return target


def assert_placeholder(thumbnail: Thumbnail, reason: str) -> None:
    assert thumbnail.placeholder
    assert reason in thumbnail.reason
    assert thumbnail.png == placeholder_thumbnail(thumbnail.reason).png
    assert (thumbnail.width, thumbnail.height) == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)


# --- real images --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_repository_samples_render_as_images(path: Path) -> None:
    header = pydicom.dcmread(path, stop_before_pixels=True)
    thumbnail = render_thumbnail(path)
    assert not thumbnail.placeholder
    assert thumbnail.reason == ""
    assert thumbnail.png.startswith(PNG_SIGNATURE)
    image = pixels(thumbnail)
    assert (thumbnail.width, thumbnail.height) == fitted(header.Columns, header.Rows)
    assert image.ndim == (3 if header.SamplesPerPixel == 3 else 2)
    # Phantoms of air, fat, soft tissue and bone: a rendered one spans a wide range of greys.
    assert image.std() > 30
    assert image.min() < 40
    assert image.max() > 150


@pytest.mark.filterwarnings("ignore:Expected explicit VR")  # image_dfl.dcm's deflated body
@pytest.mark.parametrize("name", BUNDLED_IMAGES)
def test_bundled_syntaxes_decode(name: str) -> None:
    header = pydicom.dcmread(bundled(name), stop_before_pixels=True)
    thumbnail = render_thumbnail(bundled(name))
    assert not thumbnail.placeholder, thumbnail.reason
    assert thumbnail.png.startswith(PNG_SIGNATURE)
    # All of these have square pixels (or no spacing): the thumbnail keeps the matrix's aspect.
    assert (thumbnail.width, thumbnail.height) == fitted(header.Columns, header.Rows)
    assert pixels(thumbnail).std() > 10


@pytest.mark.filterwarnings("ignore:Expected explicit VR")
def test_body_in_another_vr_encoding_than_declared() -> None:
    # The meta header says explicit VR, the body is implicit VR: reading from the file trusts
    # the former, a full read corrects it. The image is a near-flat colour.
    path = bundled("SC_rgb_jpeg.dcm")
    thumbnail = render_thumbnail(path)
    assert not thumbnail.placeholder
    mean = pixels(thumbnail).mean(axis=(0, 1))
    expected = pydicom.dcmread(path).pixel_array.mean(axis=(0, 1))
    assert np.abs(mean - expected).max() < 2


@pytest.mark.parametrize("name", MR_SMALL_LOSSLESS)
def test_lossless_syntaxes_render_exactly_like_the_uncompressed_file(name: str) -> None:
    reference = pixels(render_thumbnail(bundled("MR_small.dcm")))
    assert np.array_equal(pixels(render_thumbnail(bundled(name))), reference)


@pytest.mark.parametrize("name", SC_RGB_VARIANTS)
def test_colour_comes_out_as_rgb(name: str) -> None:
    image = pixels(render_thumbnail(bundled(name)))
    assert image.shape == (THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3)
    # The first stripe is pure red: YCbCr left unconverted would read about (76, 85, 255).
    red = image[5, THUMBNAIL_SIZE // 2]
    assert red[0] > 220
    assert max(red[1], red[2]) < 35
    # Lossy JPEG aside, every encoding shows the same picture.
    reference = pixels(render_thumbnail(bundled("SC_rgb_rle.dcm")))
    assert np.abs(image - reference).mean() < 4


def test_multi_frame_colour_file_shows_its_middle_frame() -> None:
    # Frame 0's first stripe is red, frame 1's is its complement, cyan; of two frames the
    # middle one is index 1.
    image = pixels(render_thumbnail(bundled("SC_rgb_rle_2frame.dcm")))
    cyan = image[5, THUMBNAIL_SIZE // 2]
    assert cyan[0] < 35
    assert min(cyan[1], cyan[2]) > 220


def test_palette_colour_is_looked_up() -> None:
    image = pixels(render_thumbnail(bundled("examples_palette.dcm")))
    assert image.ndim == 3
    spread = image.max(axis=2) - image.min(axis=2)
    # Grey stored indices would give R == G == B everywhere; this palette has a blue band.
    assert (spread > 30).mean() > 0.05


def _without_window(ds: Dataset) -> None:
    del ds.WindowCenter, ds.WindowWidth


def _keep_window(ds: Dataset) -> None:
    pass


@pytest.mark.parametrize(
    ("source", "prepare"),
    [
        (bundled("MR_small.dcm"), _keep_window),
        (SAMPLES / "dx_chest_2v_hosp_c" / "S01_I001.dcm", _without_window),
    ],
    ids=["windowed-mr", "full-range-dx"],
)
def test_monochrome1_is_inverted(
    source: Path, prepare: Callable[[Dataset], None], tmp_path: Path
) -> None:
    def as_monochrome1(ds: Dataset) -> None:
        prepare(ds)
        ds.PhotometricInterpretation = "MONOCHROME1"

    normal = pixels(render_thumbnail(rewritten(source, tmp_path / "m2.dcm", prepare)))
    flipped = pixels(render_thumbnail(rewritten(source, tmp_path / "m1.dcm", as_monochrome1)))
    assert normal.std() > 30
    assert np.abs(normal + flipped - 255).max() <= 2


# --- the grayscale pipeline on made-up images ---------------------------------------------------


@pytest.mark.parametrize(
    ("center", "width", "function"),
    [
        (40, 400, None),
        ([40, -600], [400, 1500], None),  # mediastinum then lung: the first one applies
        (40, 400, "LINEAR_EXACT"),
        (40, 400, "SIGMOID"),
    ],
)
def test_header_window_maps_hounsfield_units(
    center: Any, width: Any, function: str | None, tmp_path: Path
) -> None:
    # Stored values with intercept -1024: air (-1000 HU) left, soft tissue (+40 HU) right.
    extra = {"VOILUTFunction": function} if function else {}
    path = write_image(
        tmp_path / "ct.dcm",
        halves(24, 1064),
        RescaleIntercept=-1024,
        RescaleSlope=1,
        WindowCenter=center,
        WindowWidth=width,
        **extra,
    )
    image = pixels(render_thumbnail(path, max_size=128))
    assert image.shape == (64, 128)
    # Air is far below the window (black); tissue at its centre is mid-grey.
    assert np.abs(image[:, :60] - 0).max() <= 1
    assert np.abs(image[:, 68:] - 128).max() <= 1


def test_unusable_window_falls_back_to_the_image_range(tmp_path: Path) -> None:
    path = write_image(
        tmp_path / "ct.dcm",
        halves(24, 1064),
        RescaleIntercept=-1024,
        RescaleSlope=1,
        WindowCenter=40,
        WindowWidth=0,
    )
    image = pixels(render_thumbnail(path, max_size=128))
    assert image[:, :60].max() <= 1
    assert image[:, 68:].min() >= 254


def test_without_a_window_percentiles_give_contrast_and_ignore_padding(tmp_path: Path) -> None:
    # A quarter padding (-2000, outside the scan), then air, then soft tissue with a few hot
    # pixels of metal that must not wash the tissue out.
    stored = np.full((64, 128), 1064, dtype=np.int16)
    stored[:, :32] = -2000
    stored[:, 32:80] = 24
    stored[0, 100:104] = 4000
    path = write_image(
        tmp_path / "ct.dcm",
        stored,
        RescaleIntercept=-1024,
        RescaleSlope=1,
        PixelPaddingValue=-2000,
    )
    image = pixels(render_thumbnail(path, max_size=128))
    assert image[2:, 34:78].max() <= 3  # air is the darkest real value: black, not padding-grey
    assert image[2:, 84:].min() >= 250  # tissue is the brightest but for 4 of 8192 pixels


def test_projection_radiographs_use_the_full_stored_range(tmp_path: Path) -> None:
    # DX values are shown as stored: min..max, so one bright marker pixel does count.
    stored = np.full((64, 128), 1000, dtype=np.uint16)
    stored[:, 64:] = 2000
    stored[0, 0] = 4000
    path = write_image(
        tmp_path / "dx.dcm", stored, modality="DX", sop_class=DigitalXRayImageStorageForPresentation
    )
    image = pixels(render_thumbnail(path, max_size=128))
    assert image[2:, :60].max() <= 1
    assert np.abs(image[2:, 68:] - 85).max() <= 1  # (2000 - 1000) / (4000 - 1000) * 255


def test_voi_lut_sequence_wins_over_the_window(tmp_path: Path) -> None:
    item = Dataset()
    item.add(DataElement(0x00283002, "US", [4096, 0, 12]))  # LUT Descriptor
    item.add(DataElement(0x00283006, "US", list(range(4095, -1, -1))))  # LUT Data: inverting
    stored = np.full((64, 128), 1000, dtype=np.uint16)
    stored[:, 64:] = 3000
    path = write_image(
        tmp_path / "dx.dcm",
        stored,
        modality="DX",
        sop_class=DigitalXRayImageStorageForPresentation,
        VOILUTSequence=DicomSequence([item]),
        WindowCenter=2048,
        WindowWidth=4096,
    )
    image = pixels(render_thumbnail(path, max_size=128))
    # Through the inverting LUT: 1000 -> 3095 and 3000 -> 1095, out of 0..4095.
    assert np.abs(image[:, :60] - 193).max() <= 1
    assert np.abs(image[:, 68:] - 68).max() <= 1


def test_multi_frame_shows_the_middle_frame(tmp_path: Path) -> None:
    stored = np.stack([np.full((32, 32), value, dtype=np.uint8) for value in (10, 60, 110, 160)])
    stored = np.concatenate([stored, np.full((1, 32, 32), 210, dtype=np.uint8)])
    path = write_image(
        tmp_path / "mf.dcm",
        stored,
        modality="OT",
        WindowCenter=128,
        WindowWidth=256,
        VOILUTFunction="LINEAR_EXACT",
    )
    image = pixels(render_thumbnail(path, max_size=32))
    # Frame index 2 holds 110; through the window that is 110 / 256 * 255.
    assert np.abs(image - 110).max() <= 1


def test_enhanced_multi_frame_takes_the_frames_functional_groups(tmp_path: Path) -> None:
    def group(**macros: Dataset) -> Dataset:
        result = Dataset()
        for keyword, item in macros.items():
            setattr(result, keyword, DicomSequence([item]))
        return result

    def item(**attributes: Any) -> Dataset:
        result = Dataset()
        for keyword, value in attributes.items():
            setattr(result, keyword, value)
        return result

    shared = group(
        PixelMeasuresSequence=item(PixelSpacing=[2.0, 1.0]),
        PixelValueTransformationSequence=item(RescaleSlope=2, RescaleIntercept=0),
        FrameVOILUTSequence=item(WindowCenter=0, WindowWidth=2000),
    )
    frame_window = group(
        FrameVOILUTSequence=item(WindowCenter=400, WindowWidth=800, VOILUTFunction="LINEAR_EXACT")
    )
    stored = np.stack([halves(100, 300, rows=32, columns=64)] * 3)
    path = write_image(
        tmp_path / "enhanced.dcm",
        stored,
        sop_class=EnhancedCTImageStorage,
        SharedFunctionalGroupsSequence=DicomSequence([shared]),
        PerFrameFunctionalGroupsSequence=DicomSequence([group(), frame_window, group()]),
    )
    thumbnail = render_thumbnail(path, max_size=128)
    # Rows 2 mm apart, columns 1 mm: the 64x32 matrix is a physical square.
    assert (thumbnail.width, thumbnail.height) == (128, 128)
    image = pixels(thumbnail)
    # Rescaled to 200 and 600, then frame 1's own window: 0.25 and 0.75 of white.
    assert np.abs(image[:, :56] - 64).max() <= 1
    assert np.abs(image[:, 72:] - 191).max() <= 1


@pytest.mark.parametrize(
    ("attributes", "size"),
    [
        ({"PixelSpacing": [1.0, 0.5]}, (128, 256)),  # columns half as far apart as rows
        ({"PixelAspectRatio": [2, 1]}, (128, 256)),  # pixels twice as tall as wide
        ({"ImagerPixelSpacing": [0.5, 1.0]}, (256, 128)),
        ({"PixelSpacing": [1.0, 100.0]}, (256, 256)),  # implausible: ignored
        ({}, (256, 256)),
    ],
)
def test_non_square_pixels_keep_anatomy_in_proportion(
    attributes: dict[str, Any], size: tuple[int, int], tmp_path: Path
) -> None:
    stored = np.arange(100 * 100, dtype=np.int16).reshape(100, 100)
    path = write_image(tmp_path / "ct.dcm", stored, **attributes)
    thumbnail = render_thumbnail(path)
    assert (thumbnail.width, thumbnail.height) == size


def test_max_size_bounds_the_longest_side() -> None:
    thumbnail = render_thumbnail(SAMPLES / "us_abdomen_hosp_a" / "S01_I001.dcm", max_size=64)
    assert (thumbnail.width, thumbnail.height) == (64, 48)
    assert pixels(thumbnail).shape == (48, 64, 3)
    with pytest.raises(ValueError, match="at least 1"):
        render_thumbnail(SAMPLES / "us_abdomen_hosp_a" / "S01_I001.dcm", max_size=0)


# --- what cannot be shown -----------------------------------------------------------------------


def test_placeholder_is_a_deterministic_grey_square() -> None:
    first = placeholder_thumbnail("one reason")
    second = placeholder_thumbnail("another reason")
    assert first.png == second.png
    assert first.placeholder
    assert first.reason == "one reason"
    image = pixels(first)
    assert image.shape == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    assert image.std() > 5  # the film frame icon is drawn
    assert 100 < np.median(image) < 200  # on a neutral grey
    tiny = pixels(placeholder_thumbnail("tiny", max_size=8))
    assert tiny.shape == (8, 8)
    with pytest.raises(ValueError, match="at least 1"):
        placeholder_thumbnail("none", max_size=0)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"Patient: ZHANG^WEI\nResult: normal\n" * 20, "not a DICOM file"),
        (b"", "not a DICOM file"),
    ],
    ids=["text", "empty"],
)
def test_files_that_are_not_dicom(content: bytes, reason: str, tmp_path: Path) -> None:
    path = tmp_path / "file.dcm"
    path.write_bytes(content)
    assert_placeholder(render_thumbnail(path), reason)


def test_unreadable_paths(tmp_path: Path) -> None:
    assert_placeholder(render_thumbnail(tmp_path / "missing.dcm"), "file could not be read")
    assert_placeholder(render_thumbnail(tmp_path), "file could not be read")


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("length", [200, 1000, 20_000])
def test_truncated_file(length: int, tmp_path: Path) -> None:
    path = tmp_path / "truncated.dcm"
    path.write_bytes((SAMPLES / "ct_head_hosp_b" / "S02_I001.dcm").read_bytes()[:length])
    thumbnail = render_thumbnail(path)
    assert thumbnail.placeholder
    assert thumbnail.reason


@pytest.mark.filterwarnings("ignore")
def test_body_that_is_not_a_dataset(tmp_path: Path) -> None:
    sample = SAMPLES / "ct_head_hosp_b" / "S02_I001.dcm"
    meta = pydicom.dcmread(sample, stop_before_pixels=True).file_meta
    # Preamble, "DICM", the group length element (12 bytes) and the group it counts.
    meta_end = 128 + 4 + 12 + meta.FileMetaInformationGroupLength
    path = tmp_path / "junk.dcm"
    path.write_bytes(sample.read_bytes()[:meta_end] + b"\xff" * 64)
    assert_placeholder(render_thumbnail(path), "DICOM header could not be read")


def test_corrupt_element_length_is_not_allocated(tmp_path: Path) -> None:
    # An element in a sequence item claiming 4 GiB: reading it must cost what the file holds.
    # Run in a child process whose address space is capped at 2 GiB, where allocating the
    # claimed length would raise MemoryError.
    pytest.importorskip("resource")
    ds = pydicom.dcmread(bundled("MR_small.dcm"))
    item = Dataset()
    item.TextValue = "x" * 8
    item.is_undefined_length_sequence_item = True
    ds.ContentSequence = DicomSequence([item])
    ds["ContentSequence"].is_undefined_length = True
    ds.save_as(tmp_path / "item.dcm")
    text_value = b"\x40\x00\x60\xa1UT\x00\x00"  # (0040,A160) UT, then its 4-byte length
    path = _patched(
        tmp_path / "item.dcm", text_value, 8, struct.pack("<I", 0xFFFF_FFF0), tmp_path / "long"
    )
    script = (
        "import resource, sys; from pathlib import Path;"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30));"
        "from mutualrec.imaging.thumbnails import render_thumbnail;"
        "print(render_thumbnail(Path(sys.argv[1])).reason)"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "DICOM header could not be read"


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    "name",
    [
        "MR_truncated.dcm",  # pixel data cut short
        "JPEG2000-embedded-sequence-delimiter.dcm",  # codestream bytes overwritten
        "badVR.dcm",  # Number of Frames "1A"
    ],
)
def test_corrupt_bundled_files(name: str) -> None:
    assert_placeholder(render_thumbnail(bundled(name)), "pixel data could not be decoded")


def test_structured_report_has_no_pixel_data() -> None:
    thumbnail = render_thumbnail(bundled("test-SR.dcm"))
    assert_placeholder(thumbnail, "no pixel data (structured report)")


@pytest.mark.filterwarnings("ignore")
def test_pixel_data_shorter_than_rows_times_columns(tmp_path: Path) -> None:
    def shorten(ds: Dataset) -> None:
        ds.PixelData = ds.PixelData[:1000]

    path = rewritten(SAMPLES / "ct_head_hosp_b" / "S02_I001.dcm", tmp_path / "short.dcm", shorten)
    assert_placeholder(render_thumbnail(path), "pixel data could not be decoded")


def test_transfer_syntax_without_a_decoder_is_named(tmp_path: Path) -> None:
    def as_mpeg2(ds: Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = MPEG2MPML

    path = rewritten(bundled("SC_rgb_jpeg_dcmtk.dcm"), tmp_path / "mpeg2.dcm", as_mpeg2)
    thumbnail = render_thumbnail(path)
    assert_placeholder(thumbnail, "no installed decoder handles (1.2.840.10008.1.2.4.100)")


def test_unsupported_photometric_interpretation_is_named(tmp_path: Path) -> None:
    def as_argb(ds: Dataset) -> None:
        ds.PhotometricInterpretation = "ARGB"

    path = rewritten(bundled("MR_small.dcm"), tmp_path / "argb.dcm", as_argb)
    assert_placeholder(render_thumbnail(path), "unsupported photometric interpretation (ARGB)")


def test_header_claiming_a_huge_image_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def huge(ds: Dataset) -> None:
        ds.Rows = ds.Columns = 60_000

    monkeypatch.setattr(thumbnails, "pixel_array", _must_not_decode)
    path = rewritten(bundled("MR_small.dcm"), tmp_path / "huge.dcm", huge)
    assert_placeholder(render_thumbnail(path), "image too large for a thumbnail (60000x60000")


def _must_not_decode(*args: object, **kwargs: object) -> None:
    raise AssertionError("the decoder must not be called")


def _patched(path: Path, find: bytes, offset: int, replacement: bytes, target: Path) -> Path:
    data = bytearray(path.read_bytes())
    at = data.index(find) + offset
    data[at : at + len(replacement)] = replacement
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize(
    ("name", "marker", "offset", "replacement"),
    [
        # JPEG SOF0: marker, length, precision, then rows and columns.
        ("SC_rgb_jpeg_dcmtk.dcm", b"\xff\xc0", 5, struct.pack(">HH", 0xFFF0, 0xFFF0)),
        # JPEG 2000 SOC, SIZ: Xsiz at 8, Ysiz at 12 (a real fuzzing find: 640 x 7143904).
        ("examples_jpeg2k.dcm", b"\xff\x4f\xff\x51", 12, struct.pack(">I", 7_143_904)),
    ],
    ids=["jpeg", "jpeg2000"],
)
def test_codestream_claiming_another_size_is_refused_before_decoding(
    name: str,
    marker: bytes,
    offset: int,
    replacement: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The decoders would allocate the claimed size: gigabytes, enough to get the process killed.
    path = _patched(bundled(name), marker, offset, replacement, tmp_path / name)
    monkeypatch.setattr(thumbnails, "pixel_array", _must_not_decode)
    assert_placeholder(render_thumbnail(path), "pixel data could not be decoded")


def test_decoder_panic_becomes_a_placeholder(tmp_path: Path) -> None:
    # pylibjpeg-rle (Rust) panics on this RLE header, whose second segment offset is moved
    # 156 bytes back; the panic is a BaseException, outside pydicom's plugin error handling.
    path = _patched(
        bundled("MR_small_RLE.dcm"), b"\x02\x00\x00\x00\x40\x00\x00\x00", 8, b"\x00", tmp_path / "r"
    )
    assert_placeholder(render_thumbnail(path), "pixel data could not be decoded")


@pytest.mark.parametrize("error", [MemoryError, KeyboardInterrupt])
def test_trouble_of_the_process_is_not_hidden(
    error: type[BaseException], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(thumbnails, "pixel_array", fail)
    with pytest.raises(error):
        render_thumbnail(bundled("MR_small.dcm"))


# --- representative instance --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        ([5, 1, 3, 2, 4], 2),  # sorted 1 2 [3] 4 5: the 3 is at list position 2
        ([30, 10, 20], 2),
        ([7], 0),
        ([2, 1], 0),  # of two, the upper middle (as for frames): the 2
        ([None, 1, None, 2, 3], 4),  # 1 2 [3] None None
        ([None, None, None], 1),
        ([4, 4, 4, 1], 1),  # 1 4 [4] 4: ties keep list order, so the second 4 (position 1)
    ],
)
def test_representative_index_is_the_middle_by_instance_number(
    numbers: list[int | None], expected: int
) -> None:
    assert representative_index(numbers) == expected


def test_representative_index_of_nothing() -> None:
    with pytest.raises(ValueError, match="without instances"):
        representative_index([])


# --- fuzzing ------------------------------------------------------------------------------------

FUZZ_BASES = [
    SAMPLES / "ct_chest_contrast_hosp_a" / "S03_I001.dcm",
    bundled("MR_small_RLE.dcm"),
    bundled("MR_small_jp2klossless.dcm"),
    bundled("SC_rgb_jpeg_dcmtk.dcm"),
    bundled("examples_palette.dcm"),
]


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "input.dcm"


def _renders_or_explains(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    thumbnail = render_thumbnail(path, max_size=64)
    assert isinstance(thumbnail, Thumbnail)
    assert thumbnail.png.startswith(PNG_SIGNATURE)
    assert thumbnail.placeholder == bool(thumbnail.reason)


FUZZ_SETTINGS = settings(max_examples=150, deadline=None, database=None)


@pytest.mark.filterwarnings("ignore")
@FUZZ_SETTINGS
@given(
    content=st.one_of(
        st.binary(max_size=2048),
        st.binary(max_size=2048).map(lambda body: b"\0" * 128 + b"DICM" + body),
    )
)
def test_random_bytes_never_raise(fuzz_file: Path, content: bytes) -> None:
    _renders_or_explains(fuzz_file, content)


@pytest.mark.filterwarnings("ignore")
@FUZZ_SETTINGS
@given(data=st.data())
def test_mutated_real_files_never_raise(fuzz_file: Path, data: st.DataObject) -> None:
    base = bytearray(data.draw(st.sampled_from(FUZZ_BASES)).read_bytes())
    # Mostly in the first 2 KiB, where the header and the codestream headers are.
    position = st.one_of(st.integers(0, 2047), st.integers(0, len(base) - 1))
    for at, value in data.draw(st.lists(st.tuples(position, st.integers(0, 255)), max_size=8)):
        base[at] = value
    end = data.draw(st.one_of(st.just(len(base)), st.integers(0, len(base))))
    _renders_or_explains(fuzz_file, bytes(base[:end]))
