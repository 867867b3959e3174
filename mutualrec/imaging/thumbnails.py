"""Thumbnails of DICOM instances: one representative frame rendered as a small PNG.

Pure functions of a file on disk: no database, no object store, no network. The caller picks the
instance (see `representative_index`) and decides where the PNG goes.

Rendering follows the DICOM grayscale pipeline far enough for a recognisable preview: Modality
LUT (rescale), then the header's VOI LUT or window, else a window from the pixel values
themselves, then MONOCHROME1 inversion. Colour images come out as RGB. Anything that cannot be
rendered becomes a grey placeholder with a one-line reason, never an exception, because one bad
instance must not break a patient's whole imaging history page.
"""

from __future__ import annotations

import functools
import io
import math
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi
from pydicom.pixels.utils import pixel_array
from pydicom.uid import (
    UID,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
)

from mutualrec.ingest.pydicom_quiet import quiet_pydicom

quiet_pydicom()

_Floats = npt.NDArray[np.float64]
_Bytes = npt.NDArray[np.uint8]

THUMBNAIL_SIZE = 256

# What malformed or unsupported input raises from pydicom, numpy, zlib (deflated files), the
# decoder plugins and Pillow. RuntimeError covers NotImplementedError, LookupError covers KeyError
# and IndexError.
# MemoryError is left out on purpose: it means the process is in trouble, not the file.
_BAD_INPUT: Final = (
    InvalidDicomError,
    BytesLengthException,
    struct.error,
    zlib.error,
    ValueError,
    ArithmeticError,
    LookupError,
    AttributeError,
    TypeError,
    RuntimeError,
    OSError,
    EOFError,
)

# Elements this large are never needed for a thumbnail (private blobs, overlay planes): leaving
# them on disk keeps header reads cheap whatever the file holds before its pixel data.
_DEFER_SIZE: Final = 1 << 20
# Decoding a frame this large needs gigabytes once converted to floating point; no real
# radiograph comes near it, so a header claiming more is broken or hostile.
_MAX_PIXELS: Final = 8192 * 8192
# The fallback decode reads the whole file into memory, so it is only tried on files this small.
_FULL_READ_LIMIT: Final = 64 << 20
# Statistics for the automatic window are taken on about this many pixels, plenty for a
# percentile and much faster than the full frame of a large radiograph.
_STATISTICS_SAMPLE: Final = 1 << 20
# Lanczos keeps the fine detail of radiographs sharp when shrinking them.
_FILTER: Final = Image.Resampling.LANCZOS

# Syntaxes whose decoders allocate whatever size the codestream's own header claims.
_CODESTREAM_SYNTAXES: Final = frozenset(
    [*JPEGTransferSyntaxes, *JPEGLSTransferSyntaxes, *JPEG2000TransferSyntaxes]
)
# Start Of Frame markers of JPEG (ISO/IEC 10918-1 B.1.1.3) and JPEG-LS (SOF55, 0xF7).
_SOF_MARKERS: Final = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
)
_ENCAPSULATED_TAG: Final = b"\xe0\x7f\x10\x00"  # (7FE0,0010) Pixel Data, little endian
_UNDEFINED_LENGTH: Final = b"\xff\xff\xff\xff"
_COLOUR_PHOTOMETRIC: Final = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT"})
_SUPPORTED_PHOTOMETRIC: Final = _COLOUR_PHOTOMETRIC | {
    "MONOCHROME1",
    "MONOCHROME2",
    "PALETTE COLOR",
}
# Projection and photographic modalities store values meant to be looked at as they are; cross
# sectional ones (CT, MR, PT, NM...) store physical quantities that need a window.
_SHOWN_AS_STORED: Final = frozenset(
    {"CR", "DX", "ES", "GM", "IO", "MG", "OP", "OT", "PX", "RF", "SC", "SM", "US", "XA", "XC"}
)
_NO_IMAGE_KIND: Final = {
    "SR": "structured report",
    "KO": "key object selection",
    "PR": "presentation state",
    "DOC": "encapsulated document",
    "ECG": "waveform",
    "RTPLAN": "radiotherapy plan",
    "RTSTRUCT": "radiotherapy structure set",
}
# Functional group macros of enhanced multi-frame objects that hold what a single-frame object
# keeps at the top level: pixel spacing, rescale and window.
_FRAME_MACROS: Final = (
    "PixelMeasuresSequence",
    "PixelValueTransformationSequence",
    "FrameVOILUTSequence",
)


@dataclass(frozen=True, slots=True)
class Thumbnail:
    """A rendered PNG and its size; `reason` says why when it is only a placeholder."""

    png: bytes
    width: int
    height: int
    placeholder: bool
    reason: str


class _Unrenderable(Exception):
    """The file has no image this module can show; the message is the placeholder's reason."""


class _ClampedReader(io.BufferedReader):
    """A file whose read(n) never asks for more bytes than are left in it.

    pydicom reads an element's value with one read(length); a corrupt length of nearly 4 GiB
    would otherwise allocate that much before finding the file is shorter.
    """

    def __init__(self, raw: io.FileIO) -> None:
        super().__init__(raw)
        self._size = os.fstat(raw.fileno()).st_size

    def read(self, size: int | None = -1, /) -> bytes:
        # Small reads cannot hurt, and tell() costs a system call: most reads skip the check.
        if size is not None and size > _DEFER_SIZE:
            size = min(size, max(self._size - self.tell(), 0))
        return super().read(size)


def render_thumbnail(path: Path, max_size: int = THUMBNAIL_SIZE) -> Thumbnail:
    """Render the DICOM file at `path` as a PNG whose longest side is `max_size` pixels.

    Normally only the header and one frame are read (the middle one of a multi-frame object), so
    a large multi-frame file costs one frame of memory. Images smaller than `max_size` are scaled
    up too, so every thumbnail in a list is equally easy to see. Non-square pixels (Pixel Aspect
    Ratio, Pixel Spacing or Imager Pixel Spacing) are corrected, so anatomy keeps its proportions.

    Never raises for bad or unsupported files: those give `placeholder_thumbnail(reason)`.
    Raises ValueError only when `max_size` is below 1, a mistake of the caller.
    """
    _check_size(max_size)
    try:
        with _ClampedReader(io.FileIO(path)) as fp:
            image = _render(fp, max_size)
    except _Unrenderable as exc:
        return placeholder_thumbnail(str(exc), max_size)
    except OSError:
        return placeholder_thumbnail("file could not be read", max_size)
    return Thumbnail(_png(image), image.width, image.height, placeholder=False, reason="")


def placeholder_thumbnail(reason: str, max_size: int = THUMBNAIL_SIZE) -> Thumbnail:
    """A neutral grey `max_size` square with a crossed-out film frame, standing in for an image.

    The PNG bytes depend only on `max_size`, so clients may cache them.
    Raises ValueError when `max_size` is below 1.
    """
    _check_size(max_size)
    return Thumbnail(
        _placeholder_png(max_size), max_size, max_size, placeholder=True, reason=reason
    )


def representative_index(instance_numbers: Sequence[int | None]) -> int:
    """Position in `instance_numbers` of the instance that should represent its series.

    That is the middle instance in Instance Number order (the upper one of the two middles for an
    even count, as for the frames of a multi-frame object): in a stack of slices the middle one
    usually shows the organ, where the first and last show its edges. Instances without a number
    sort last; equal numbers keep the caller's order. Raises ValueError on an empty sequence.
    """
    if not instance_numbers:
        raise ValueError("a series without instances has no representative instance")
    order = sorted(
        range(len(instance_numbers)),
        key=lambda i: (instance_numbers[i] is None, instance_numbers[i] or 0),
    )
    return order[len(order) // 2]


def _check_size(max_size: int) -> None:
    if max_size < 1:
        raise ValueError(f"thumbnail size must be at least 1 pixel, got {max_size}")


class Unrenderable(Exception):
    """A frame that cannot be rendered; the message says why (for DICOMweb's rendered
    resource, which answers an error where a thumbnail shows a placeholder)."""


RENDERED_TYPES: Final = {"image/jpeg": "JPEG", "image/png": "PNG"}


def render_frame(
    path: Path,
    frame: int,
    media_type: str,
    quality: int = 90,
    viewport: tuple[int, int] | None = None,
) -> bytes:
    """Frame ``frame`` (from 0) of the DICOM file at ``path`` as ``media_type`` (a key of
    :data:`RENDERED_TYPES`), through the same pipeline as thumbnails, at its own size (square
    pixels) or fitted into ``viewport`` (width, height). Raises :class:`Unrenderable`."""
    try:
        with _ClampedReader(io.FileIO(path)) as fp:
            image = _render(fp, None, frame)
    except _Unrenderable as exc:
        raise Unrenderable(str(exc)) from exc
    except OSError as exc:
        raise Unrenderable("file could not be read") from exc
    if viewport is not None:
        image.thumbnail(viewport, _FILTER)
    buffer = io.BytesIO()
    if RENDERED_TYPES[media_type] == "JPEG":
        image.save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _render(fp: BinaryIO, max_size: int | None, shown: int | None = None) -> Image.Image:
    """The frame ``shown`` (the middle one when None) as an image whose longest side is
    ``max_size`` (its own size, pixels made square, when None)."""
    header = _read_header(fp)
    try:
        if "Rows" not in header or "Columns" not in header:
            raise _Unrenderable(_no_image_reason(header))
        syntax = _require_decoder(header)
        photometric = str(header.get("PhotometricInterpretation") or "").strip().upper()
        if photometric and photometric not in _SUPPORTED_PHOTOMETRIC:
            raise _Unrenderable(f"unsupported photometric interpretation ({photometric})")
        rows, columns = int(header.Rows), int(header.Columns)
        if rows * columns > _MAX_PIXELS:
            raise _Unrenderable(f"image too large for a thumbnail ({columns}x{rows} pixels)")
        frames = max(int(header.get("NumberOfFrames") or 1), 1)
        index = frames // 2 if shown is None else shown
        if not 0 <= index < frames:
            raise _Unrenderable(f"the instance has {frames} frame(s)")
        if syntax in _CODESTREAM_SYNTAXES:
            _check_codestream(fp, header, index, frames)
        frame = _decode_frame(fp, index)
        _lift_functional_groups(header, index)
        if photometric == "PALETTE COLOR":
            image = Image.fromarray(_palette(frame, header))
        elif frame.ndim == 3:
            image = Image.fromarray(_colour(frame, header))
        else:
            image = Image.fromarray(_grayscale(frame, header, photometric))
        longest = max(image.width, image.height) if max_size is None else max_size
        size = _display_size(header, image.width, image.height, longest)
        return image if size == image.size else image.resize(size, _FILTER)
    except _BAD_INPUT as exc:
        raise _Unrenderable("pixel data could not be decoded") from exc
    except BaseException as exc:
        if _is_decoder_panic(exc):
            raise _Unrenderable("pixel data could not be decoded") from exc
        raise


def _is_decoder_panic(exc: BaseException) -> bool:
    """Whether `exc` is a Rust decoder's panic, such as pylibjpeg-rle's on some corrupt RLE data.

    pyo3 raises a panic as pyo3_runtime.PanicException, a BaseException that neither pydicom's
    loop over decoder plugins nor `except Exception` catches, and that no module exports. The
    panic has already unwound the Rust side, so it only means the data could not be decoded.
    """
    kind = type(exc)
    return kind.__module__ == "pyo3_runtime" and kind.__name__ == "PanicException"


def _read_header(fp: BinaryIO) -> Dataset:
    try:
        return pydicom.dcmread(fp, stop_before_pixels=True, defer_size=_DEFER_SIZE)
    except InvalidDicomError as exc:
        raise _Unrenderable("not a DICOM file") from exc
    except _BAD_INPUT as exc:
        raise _Unrenderable("DICOM header could not be read") from exc


def _no_image_reason(header: Dataset) -> str:
    modality = str(header.get("Modality") or "").strip().upper()
    sop_class = header.get("SOPClassUID")
    # UID.name is the UID itself when pydicom does not know it: no help to a human.
    known = isinstance(sop_class, UID) and sop_class.name != sop_class
    kind = _NO_IMAGE_KIND.get(modality) or (sop_class.name if known else "")
    return f"no pixel data ({kind})" if kind else "no pixel data"


def _require_decoder(header: Dataset) -> UID | None:
    """The file's transfer syntax, provided an installed decoder handles it."""
    syntax = header.file_meta.get("TransferSyntaxUID")
    if syntax is None:
        # pixel_array reports the missing syntax itself, as an undecodable file.
        return None
    try:
        available = bool(get_decoder(UID(syntax)).is_available)
    except NotImplementedError:
        available = False
    if not available:
        raise _Unrenderable(
            f"compressed with a transfer syntax no installed decoder handles ({syntax})"
        )
    return UID(syntax)


def _check_codestream(fp: BinaryIO, header: Dataset, index: int, frames: int) -> None:
    """Refuse compressed frame `index` if its codestream claims another size than the header.

    JPEG, JPEG-LS and JPEG 2000 decoders allocate the size the codestream claims before pydicom
    can compare the result with Rows and Columns: one corrupt JPEG 2000 size marker claiming
    640 x 7 million pixels made OpenJPEG exhaust the machine's memory. `fp` must be positioned
    at the Pixel Data element, where the header read stopped.
    """
    tag, length = fp.read(4), fp.read(4)
    if length[:2] in (b"OB", b"OW"):
        # Explicit VR, as the syntax requires; a body in implicit VR has the length right away.
        length = fp.read(4)
    if tag != _ENCAPSULATED_TAG or length != _UNDEFINED_LENGTH:
        raise ValueError("compressed pixel data must be encapsulated")
    claimed = _codestream_size(get_frame(fp, index, number_of_frames=frames))
    expected = (int(header.Rows), int(header.Columns), int(header.get("SamplesPerPixel") or 1))
    if claimed is not None and claimed != expected:
        raise ValueError(f"codestream size {claimed} differs from the header's {expected}")


def _codestream_size(codestream: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) from a codestream's header; None if it has none to read.

    Parsed here because libjpeg's own get_parameters allocates the image as well.
    """
    if codestream[:4] == b"\xff\x4f\xff\x51" and len(codestream) >= 42:
        # SOC then SIZ, whose layout is fixed: ISO/IEC 15444-1 A.5.1.
        width, height, x_origin, y_origin = struct.unpack_from(">4I", codestream, 8)
        (components,) = struct.unpack_from(">H", codestream, 40)
        return height - y_origin, width - x_origin, components
    offset = 2 if codestream[:2] == b"\xff\xd8" else len(codestream)
    while offset + 10 <= len(codestream) and codestream[offset] == 0xFF:
        marker = codestream[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
        elif marker in _SOF_MARKERS:
            rows, columns, components = struct.unpack_from(">HHB", codestream, offset + 5)
            return rows, columns, components
        else:
            offset += 2 + struct.unpack_from(">H", codestream, offset + 2)[0]
    return None


def _decode_frame(fp: BinaryIO, index: int) -> npt.NDArray[Any]:
    """Decode frame `index`, reading only that frame from the file when it can."""
    try:
        frame: npt.NDArray[Any] = pixel_array(fp, index=index)
    except _BAD_INPUT:
        # Reading from the file trusts its meta header; a full dcmread also copes with a file
        # whose body is not in the declared VR encoding, and with a deflated body. It holds the
        # whole file in memory, hence the size limit.
        if os.fstat(fp.fileno()).st_size > _FULL_READ_LIMIT:
            raise
        fp.seek(0)
        frame = pixel_array(pydicom.dcmread(fp), index=index)
    return frame


def _lift_functional_groups(header: Dataset, index: int) -> None:
    """Copy frame `index`'s spacing, rescale and window from the functional groups to the top.

    Enhanced multi-frame objects keep them there, shared or per frame, where the Modality LUT,
    the window and the aspect correction would not look. Per-frame values override shared ones.
    """
    groups = list(header.get("SharedFunctionalGroupsSequence") or [])[:1]
    per_frame = header.get("PerFrameFunctionalGroupsSequence") or []
    if index < len(per_frame):
        groups.append(per_frame[index])
    for group in groups:
        for keyword in _FRAME_MACROS:
            for item in list(group.get(keyword) or [])[:1]:
                for element in item:
                    header[element.tag] = element


def _grayscale(stored: npt.NDArray[Any], header: Dataset, photometric: str) -> _Bytes:
    values = np.asarray(apply_modality_lut(stored, header), dtype=np.float64)
    unit = _voi(values, header)
    if unit is None:
        informative = values[~_padding(stored, header)]
        if informative.size == 0:
            informative = values.ravel()
        modality = str(header.get("Modality") or "").strip().upper()
        if modality in _SHOWN_AS_STORED:
            low, high = float(informative.min()), float(informative.max())
        else:
            low, high = _percentile_window(informative)
        unit = _stretch(values, low, high)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return _to_bytes(unit)


def _padding(stored: npt.NDArray[Any], header: Dataset) -> npt.NDArray[np.bool_]:
    """Pixels holding Pixel Padding Value: outside the scan, so not part of the image's range."""
    padding = header.get("PixelPaddingValue")
    if isinstance(padding, int):
        return np.asarray(stored == padding, dtype=np.bool_)
    return np.zeros(stored.shape, dtype=np.bool_)


def _percentile_window(values: _Floats) -> tuple[float, float]:
    """0.5th to 99.5th percentile: a few hot or cold pixels must not flatten the whole image."""
    step = max(1, values.size // _STATISTICS_SAMPLE)
    low, high = (float(v) for v in np.percentile(values[::step], (0.5, 99.5)))
    if high <= low:
        # Nearly every pixel has one value (a mask, a blank frame): show whatever else there is.
        low, high = float(values.min()), float(values.max())
    return low, high


def _voi(values: _Floats, header: Dataset) -> _Floats | None:
    """The header's VOI LUT or window applied to `values`, scaled to 0..1; None if it has none.

    A VOI LUT Sequence wins over a window when both are present, as in pydicom's apply_voi_lut.
    """
    items = header.get("VOILUTSequence") or []
    if items and "LUTDescriptor" in items[0] and "LUTData" in items[0]:
        entries, first = int(items[0].LUTDescriptor[0]) or 1 << 16, int(items[0].LUTDescriptor[1])
        # The LUT's own output range maps to black..white, whatever bit depth it declares.
        table = apply_voi(np.arange(first, first + entries, dtype=np.int64), header)
        inputs = np.clip(np.rint(values), first, first + entries - 1).astype(np.int64)
        return _stretch(
            apply_voi(inputs, header).astype(np.float64), float(table.min()), float(table.max())
        )
    center = _first_number(header.get("WindowCenter"))
    width = _first_number(header.get("WindowWidth"))
    if center is None or width is None:
        return None
    function = str(header.get("VOILUTFunction") or "LINEAR").strip().upper()
    # PS3.3 C.11.2.1.2 and C.11.2.1.3, straight to 0..1: pydicom's apply_windowing maps to the
    # stored bit range instead, which would only have to be undone here.
    if function == "LINEAR" and width >= 1:
        # A width of exactly 1 is a hard threshold; max() keeps it from dividing by zero.
        result: _Floats = np.clip((values - center + 0.5) / max(width - 1, 1e-6) + 0.5, 0.0, 1.0)
        return result
    if function == "LINEAR_EXACT" and width > 0:
        result = np.clip((values - center) / width + 0.5, 0.0, 1.0)
        return result
    if function == "SIGMOID" and width > 0:
        result = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
        return result
    return None


def _first_number(value: Any) -> float | None:
    """The first value of a (possibly multi-valued) DS element; None if absent or not finite."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = value[0] if value else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _stretch(values: _Floats, low: float, high: float) -> _Floats:
    if high <= low:
        return np.zeros(values.shape, dtype=np.float64)
    result: _Floats = np.clip((values - low) / (high - low), 0.0, 1.0)
    return result


def _to_bytes(unit: _Floats) -> _Bytes:
    # fmax also turns NaN (possible in Float Pixel Data) into black.
    return np.rint(np.fmax(unit, 0.0) * 255.0).astype(np.uint8)


def _colour(frame: npt.NDArray[Any], header: Dataset) -> _Bytes:
    """RGB bytes of a colour frame, which pixel_array has already converted from YBR to RGB."""
    return _top_byte(frame[..., :3], header.get("BitsStored"))


def _palette(frame: npt.NDArray[Any], header: Dataset) -> _Bytes:
    rgb = apply_color_lut(frame, header)[..., :3]
    return _top_byte(rgb, header.RedPaletteColorLookupTableDescriptor[2])


def _top_byte(samples: npt.NDArray[Any], bits: Any) -> _Bytes:
    """The most significant 8 of `bits` bits per sample (a missing or bad `bits`: all of them)."""
    width = samples.dtype.itemsize * 8
    used = bits if isinstance(bits, int) and 8 <= bits <= width else width
    return np.ascontiguousarray(samples >> (used - 8), dtype=np.uint8)


def _display_size(header: Dataset, columns: int, rows: int, max_size: int) -> tuple[int, int]:
    """Thumbnail size: the longest side `max_size`, the other in proportion to physical size."""
    vertical, horizontal = _pixel_proportions(header)
    width, height = columns * horizontal, rows * vertical
    scale = max_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _pixel_proportions(header: Dataset) -> tuple[float, float]:
    """A pixel's (vertical, horizontal) size, in any unit; square when the header is silent."""
    for keyword in ("PixelAspectRatio", "PixelSpacing", "ImagerPixelSpacing"):
        value = header.get(keyword)
        if isinstance(value, Sequence) and len(value) == 2:
            try:
                vertical, horizontal = float(value[0]), float(value[1])
            except (TypeError, ValueError):
                continue
            # Past 10:1 the values are far more likely wrong than the pixels that oblong.
            if vertical > 0 and horizontal > 0 and 0.1 <= vertical / horizontal <= 10:
                return vertical, horizontal
    return 1.0, 1.0


def _png(image: Image.Image) -> bytes:
    # optimize=False: a few percent smaller PNGs are not worth several times the encoding time.
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


@functools.lru_cache(maxsize=8)
def _placeholder_png(size: int) -> bytes:
    background, film, window = 150, 90, 205
    image = Image.new("L", (size, size), background)
    # Below 16 pixels the icon's parts would collapse into each other; a plain square will do.
    if size >= 16:
        draw = ImageDraw.Draw(image)
        left, right = round(size * 0.14), round(size * 0.86)
        top, bottom = round(size * 0.26), round(size * 0.74)
        draw.rectangle((left, top, right, bottom), fill=film)
        hole = max(1, size // 32)
        for x in range(left + 2 * hole, right - 2 * hole, 4 * hole):
            draw.rectangle((x, top + hole, x + hole, top + 2 * hole), fill=background)
            draw.rectangle((x, bottom - 2 * hole, x + hole, bottom - hole), fill=background)
        frame = (left + 3 * hole, top + 4 * hole, right - 3 * hole, bottom - 4 * hole)
        draw.rectangle(frame, fill=window)
        draw.line((frame[0], frame[3], frame[2], frame[1]), fill=film, width=max(1, size // 64))
    return _png(image)
