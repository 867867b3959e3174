#!/usr/bin/env python3
"""Generate small, synthetic but realistic DICOM studies for mutualrec.

Two modes:

* default: (re)write the sample studies next to this script (or under ``--out``) plus
  ``manifest.json``, which tells a test or a demo what to declare when uploading each study
  (patient identity document, institution, accession number, catalog item).
* ``--bench-ct OUTDIR --count N [--series K]``: write N large (512x512) CT instances of one study
  for load tests, quickly.

Everything is deterministic: UIDs are hashes of fixed strings, dates are fixed, and the "noise"
in the phantoms comes from an integer hash rather than a random generator, so two runs (on any
machine with the same pydicom major version) write byte-identical files. That lets tests pin
SHA-256 values and lets the repository diff stay empty after a regeneration.

All people, identity numbers, hospitals and accession numbers are invented.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_ROOT_UID, UID, ExplicitVRLittleEndian, generate_uid

FloatImage = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

HERE = Path(__file__).resolve().parent

# Real storage SOP classes (PS3.4 Annex B); the server keys modality handling on these.
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
DX_IMAGE_STORAGE_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"

# Bumping this string changes every UID; do it only if the samples must become "new" studies.
UID_NAMESPACE = "mutualrec/dicom_samples/v1"
# Fixed implementation identity in the file meta, so output does not depend on the installed
# pydicom version (pydicom would otherwise write its own UID and "PYDICOM x.y.z").
IMPLEMENTATION_VERSION_NAME = "MUTUALREC_SMPL_1"

# GB 11643-1999 check digit: ISO 7064 MOD 11-2 over the first 17 digits.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"


def uid(*parts: str) -> str:
    """A deterministic UID under pydicom's root, derived from ``parts`` by SHA-512.

    A fixed prefix is required: with ``prefix=None`` pydicom 3 returns a random UUID-based UID
    and silently ignores ``entropy_srcs``.
    """
    return str(generate_uid(prefix=PYDICOM_ROOT_UID, entropy_srcs=[UID_NAMESPACE, *parts]))


def resident_id_check_char(first17: str) -> str:
    """Check character of an 18-character resident ID number (GB 11643-1999)."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError(f"need 17 digits, got {first17!r}")
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK_CHARS[total % 11]


def resident_id(region_code: str, birth_date: str, sequence: int) -> str:
    """Build a valid 18-character resident ID: region + YYYYMMDD + 3-digit sequence + check."""
    first17 = f"{region_code}{birth_date}{sequence:03d}"
    return first17 + resident_id_check_char(first17)


# --------------------------------------------------------------------------------------------
# Cast: patients, institutions, studies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Institution:
    """A hospital as the region registers it (code) and as its modalities name it (name)."""

    code: str
    name: str  # what the modalities write into InstitutionName (ASCII, as many PACS do)
    name_zh: str
    # SpecificCharacterSet its PACS writes; None = default repertoire (the tag is left out).
    charset: str | None


@dataclass(frozen=True)
class Patient:
    """A synthetic resident. The resident ID's sequence is chosen with the right sex parity."""

    family: str  # pinyin, upper case as Chinese PACS write it
    given: str
    ideographic: str | None  # "李^秀兰": written as the second PN component group when UTF-8
    sex: str  # "M" / "F"; the 17th ID digit is odd for men, even for women
    birth_date: str  # YYYYMMDD
    region_code: str  # the district where the ID was issued (Chongqing: 5001xx)
    sequence: int

    @property
    def document_number(self) -> str:
        return resident_id(self.region_code, self.birth_date, self.sequence)

    def person_name(self, charset: str | None) -> str:
        alphabetic = f"{self.family}^{self.given}"
        if self.ideographic and charset == "ISO_IR 192":
            return f"{alphabetic}={self.ideographic}"
        return alphabetic


HOSP_A = Institution(
    code="H500103001",
    name="CQ YUZHONG DEMO PEOPLES HOSPITAL",
    name_zh="重庆市渝中区示例人民医院",
    charset="ISO_IR 100",
)
HOSP_B = Institution(
    code="H500106002",
    name="SHAPINGBA DEMO GENERAL HOSPITAL",
    name_zh="沙坪坝区示例综合医院",
    charset="ISO_IR 192",
)
HOSP_C = Institution(
    code="H500112003",
    name="YUBEI DEMO COMMUNITY HOSPITAL",
    name_zh="渝北区示例社区医院",
    charset=None,
)

# ZHANG WEI has a check character "X" on purpose (sequence 109), and studies at A and C.
ZHANG_WEI = Patient("ZHANG", "WEI", "张^伟", "M", "19680315", "500103", 109)
LI_XIULAN = Patient("LI", "XIULAN", "李^秀兰", "F", "19551102", "500106", 102)
WANG_FANG = Patient("WANG", "FANG", "王^芳", "F", "19900721", "500112", 102)

# A builder returns (file name, dataset) pairs for one study.
SeriesBuilder = Callable[["StudyPlan"], list[tuple[str, Dataset]]]


@dataclass(frozen=True)
class StudyPlan:
    """Everything that defines one sample study; the builder adds modality-specific content."""

    folder: str
    patient: Patient
    institution: Institution
    patient_id: str  # the hospital's MRN, different per hospital for the same person
    accession_number: str
    study_date: str
    study_time: str
    study_id: str
    description: str
    modality: str
    body_part_header: str  # as written into (0018,0015), possibly field-style spelling
    body_part: str  # the PS3.16 Annex L term a normalizer should end up with
    contrast: bool
    item_code: str  # recognition catalog code (shared/catalog/recognition_items.csv)
    referring_physician: str
    builder: SeriesBuilder

    @property
    def study_uid(self) -> str:
        return uid("study", self.folder)

    @property
    def frame_of_reference_uid(self) -> str:
        return uid("frame-of-reference", self.folder)

    def series_uid(self, series_number: int) -> str:
        return uid("series", self.folder, str(series_number))

    def sop_uid(self, series_number: int, instance_number: int) -> str:
        return uid("sop", self.folder, str(series_number), str(instance_number))


# --------------------------------------------------------------------------------------------
# Phantom drawing helpers (physical millimetre coordinates, image rows = +y = posterior/feet)
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _grid(rows: int, cols: int, spacing: float) -> tuple[FloatImage, FloatImage]:
    """Pixel-centre coordinates in mm, origin at the image centre (cached, treat as read-only)."""
    ys = (np.arange(rows, dtype=np.float64) - (rows - 1) / 2.0) * spacing
    xs = (np.arange(cols, dtype=np.float64) - (cols - 1) / 2.0) * spacing
    x, y = np.meshgrid(xs, ys)
    return x, y


def _ellipse(
    grid: tuple[FloatImage, FloatImage],
    cx: float,
    cy: float,
    a: float,
    b: float,
    angle_deg: float = 0.0,
) -> Mask:
    """Mask of a (possibly rotated) filled ellipse; only + - * and compares run on arrays."""
    x, y = grid
    dx = x - cx
    dy = y - cy
    if angle_deg:
        c = math.cos(math.radians(angle_deg))
        s = math.sin(math.radians(angle_deg))
        dx, dy = dx * c + dy * s, -dx * s + dy * c
    result: Mask = (dx / a) ** 2 + (dy / b) ** 2 <= 1.0
    return result


def _hash_noise(shape: tuple[int, ...], seed: int) -> FloatImage:
    """Zero-mean, unit-variance noise from an integer hash (murmur3 finaliser).

    Used instead of numpy's random generators because their streams are not promised to stay
    the same across numpy versions, and the samples must be byte-identical everywhere.
    """
    n = int(np.prod(shape))
    h = np.arange(n, dtype=np.uint32) * np.uint32(0x9E3779B1)
    h ^= np.uint32((seed * 0x85EBCA77 + 0x165667B1) & 0xFFFFFFFF)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    lo = (h & np.uint32(0xFFFF)).astype(np.float64) / 65536.0
    hi = (h >> np.uint32(16)).astype(np.float64) / 65536.0
    # The sum of two uniforms is triangular with variance 1/6; scale to unit variance.
    noise: FloatImage = ((lo + hi - 1.0) * math.sqrt(6.0)).reshape(shape)
    return noise


def _box_blur(img: FloatImage, radius: int) -> FloatImage:
    """Separable box blur via cumulative sums: softens the phantoms' hard synthetic edges."""
    if radius <= 0:
        return img
    k = 2 * radius + 1
    out = img
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius + 1, radius)
        c = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis)
        # Window sum = difference of cumulative sums k apart.
        out = (c[k:, :] - c[:-k, :]) / k if axis == 0 else (c[:, k:] - c[:, :-k]) / k
    return out


def _seed(*parts: str) -> int:
    """A stable 32-bit seed from strings (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:4], "little")


# --------------------------------------------------------------------------------------------
# Phantoms
# --------------------------------------------------------------------------------------------


def ct_chest_hu(size: int, spacing: float, t: float, contrast: bool, seed: int) -> FloatImage:
    """Axial chest CT in Hounsfield units at relative level ``t`` (0 = apex, 1 = lung bases).

    Patient left is image right (+x) and posterior is image bottom (+y), as in LPS display.
    """
    g = _grid(size, size, spacing)
    img = np.full((size, size), -1000.0)  # air
    # Table under the patient, a curved carbon top.
    x, y = g
    img[(y > 118.0) & (y < 124.0) & (np.abs(x) < 165.0)] = 150.0
    img[_ellipse(g, 0, 12, 158, 108)] = -100.0  # subcutaneous fat
    img[_ellipse(g, 0, 12, 148, 98)] = 40.0  # muscle / soft tissue
    # Ribs: small bony ovals just inside the body wall.
    for k in range(14):
        ang = math.radians(-160 + k * (320 / 13))
        cx, cy = 138 * math.sin(ang), 12 - 88 * math.cos(ang)
        img[_ellipse(g, cx, cy, 6.5, 4.5, math.degrees(ang))] = 650.0
    # Lungs grow from apex to base; the right (image left) one is a little larger.
    grow = 0.55 + 0.45 * math.sin(math.pi * min(1.0, 0.25 + t))
    img[_ellipse(g, -68, 8, 58 * grow, 78 * grow, -8)] = -860.0
    img[_ellipse(g, 70, 10, 52 * grow, 74 * grow, 8)] = -860.0
    blood = 180.0 if contrast else 40.0
    if t > 0.35:  # heart, left of midline
        s = min(1.0, (t - 0.35) / 0.35)
        img[_ellipse(g, 22, 22, 52 * s + 6, 42 * s + 5, -30)] = 35.0
        if contrast:  # enhancing chambers inside the myocardium
            img[_ellipse(g, 30, 22, 32 * s + 3, 24 * s + 3, -30)] = blood + 60.0
            img[_ellipse(g, 4, 14, 16 * s + 2, 18 * s + 2)] = blood
    else:  # great vessels above the heart
        img[_ellipse(g, 8, -22, 16, 15)] = blood  # ascending aorta
        img[_ellipse(g, -18, -18, 11, 12)] = blood  # superior vena cava
        img[_ellipse(g, 10, 2, 14, 10)] = blood  # pulmonary trunk
        img[_ellipse(g, -2, 30, 8, 8)] = -1000.0  # trachea
    img[_ellipse(g, 24, 48, 12, 12)] = blood + (80.0 if contrast else 0.0)  # descending aorta
    if t > 0.8:  # liver dome on the right at the bases
        img[_ellipse(g, -55, 30, 62 * (t - 0.6) * 2.2, 52 * (t - 0.6) * 2.2)] = (
            110.0 if contrast else 58.0
        )
    # Vertebra: cortex, cancellous bone, canal.
    img[_ellipse(g, 0, 68, 19, 17)] = 900.0
    img[_ellipse(g, 0, 68, 15, 13)] = 260.0
    img[_ellipse(g, 0, 92, 7, 7)] = 20.0
    img[_ellipse(g, 0, 104, 5, 9)] = 700.0  # spinous process
    # Lung vessels: a few soft-tissue dots inside the lungs, shifting with level.
    for k in range(12):
        side = -1 if k % 2 else 1
        px = side * (45 + 7 * ((k * 5) % 6)) + 6 * math.sin(10 * t + k)
        py = -30 + 11 * ((k * 7) % 9) + 5 * math.cos(7 * t + k)
        img[_ellipse(g, px, py, 2.6, 2.6)] = 40.0 + (110.0 if contrast else 0.0)
    img += _hash_noise(img.shape, seed) * 10.0
    return img


def ct_stored(hu: FloatImage, spacing: float, intercept: float = -1024.0) -> npt.NDArray[np.int16]:
    """HU -> stored int16, with the scanner's -2000 padding outside the reconstruction circle."""
    size = hu.shape[0]
    x, y = _grid(size, size, spacing)
    fov_radius = (size / 2.0) * spacing
    stored = np.clip(np.rint(hu - intercept), -2000, 32767)
    stored[x * x + y * y > fov_radius * fov_radius] = -2000  # GE-style PixelPaddingValue
    return stored.astype("<i2")


def ct_head_hu(size: int, spacing: float, t: float, seed: int) -> FloatImage:
    """Axial non-contrast head CT in HU at level ``t`` (0 = skull base, 1 = vertex).

    An old left-sided infarct (hypodense) sits in two mid slices: the same lesion shows on the
    patient's MR, so the pair tells one clinical story.
    """
    g = _grid(size, size, spacing)
    img = np.full((size, size), -1000.0)
    s = math.sqrt(max(0.05, 1.0 - ((t - 0.35) / 0.9) ** 2))
    a, b = 74 * s, 92 * s
    img[_ellipse(g, 0, 0, a + 5, b + 5)] = 30.0  # scalp
    img[_ellipse(g, 0, 0, a, b)] = 1150.0  # skull
    img[_ellipse(g, 0, 0, a - 6, b - 6)] = 8.0  # CSF
    img[_ellipse(g, 0, 0, a - 8, b - 8)] = 38.0  # grey matter
    img[_ellipse(g, 0, 2, (a - 8) * 0.72, (b - 8) * 0.74)] = 28.0  # white matter
    if 0.3 <= t <= 0.7:  # lateral ventricles
        img[_ellipse(g, -9, -6, 6, 26, 12)] = 6.0
        img[_ellipse(g, 9, -6, 6, 26, -12)] = 6.0
    if t < 0.2:  # skull base: petrous bone and sphenoid air
        img[_ellipse(g, -40, 15, 22, 8, -35)] = 1300.0
        img[_ellipse(g, 40, 15, 22, 8, 35)] = 1300.0
        img[_ellipse(g, 0, -25, 12, 10)] = -900.0
    if 0.4 <= t <= 0.6:
        img[_ellipse(g, 32, 18, 11, 8, 20)] = 16.0
    img[_ellipse(g, 0, -1, 1.2, b - 10)] = 50.0  # falx
    img += _hash_noise(img.shape, seed) * 3.0
    return img


def mr_brain_t2(size: int, spacing: float, t: float, seed: int) -> npt.NDArray[np.uint16]:
    """Axial T2-weighted brain (CSF bright), 12-bit unsigned, with coil shading and noise."""
    g = _grid(size, size, spacing)
    img = np.zeros((size, size))
    s = math.sqrt(max(0.05, 1.0 - ((t - 0.35) / 0.9) ** 2))
    a, b = 74 * s, 92 * s
    img[_ellipse(g, 0, 0, a + 5, b + 5)] = 1350.0  # scalp fat, bright on TSE
    img[_ellipse(g, 0, 0, a, b)] = 60.0  # cortical bone, dark
    img[_ellipse(g, 0, 0, a - 6, b - 6)] = 2500.0  # CSF
    img[_ellipse(g, 0, 0, a - 8, b - 8)] = 1150.0  # grey matter
    img[_ellipse(g, 0, 2, (a - 8) * 0.72, (b - 8) * 0.74)] = 780.0  # white matter
    if 0.3 <= t <= 0.7:
        img[_ellipse(g, -9, -6, 6, 26, 12)] = 2650.0
        img[_ellipse(g, 9, -6, 6, 26, -12)] = 2650.0
    if 0.4 <= t <= 0.6:  # the infarct, T2 hyperintense
        img[_ellipse(g, 32, 18, 11, 8, 20)] = 1900.0
    img[_ellipse(g, 0, -1, 1.2, b - 10)] = 400.0  # falx
    img = _box_blur(img, 1)
    _, y = g
    img *= 1.0 + 0.0009 * (-y)  # receive-coil shading: brighter anteriorly
    n1 = _hash_noise(img.shape, seed)
    n2 = _hash_noise(img.shape, seed ^ 0x5BD1E995)
    img = np.sqrt((img + 18.0 * n1) ** 2 + (18.0 * n2) ** 2)  # Rician magnitude noise
    return np.clip(np.rint(img), 0, 4095).astype("<u2")


def dx_chest(size: int, spacing: float, lateral: bool, seed: int) -> npt.NDArray[np.uint16]:
    """Chest radiograph for presentation (MONOCHROME2: bone and soft tissue bright), 12-bit.

    PA: patient's right on image left. Lateral: anterior on image left, spine on the right.
    """
    g = _grid(size, size, spacing)
    x, y = g
    img = np.full((size, size), 160.0)  # direct exposure, near black
    if not lateral:
        img[_ellipse(g, 0, 70, 178, 250)] = 1750.0  # torso
        img[_ellipse(g, 0, -150, 205, 62)] = 1750.0  # shoulders
        img[(np.abs(x) < 48) & (y < -150)] = 1800.0  # neck
        right = _ellipse(g, -78, -8, 70, 128, 4)
        left = _ellipse(g, 76, 0, 63, 120, -4)
        lungs = right | left
        # Lungs: dark, brighter toward the hila where the vessels are.
        img[lungs] = 620.0 + 700.0 * np.exp(-(((np.abs(x[lungs]) - 25.0) / 45.0) ** 2))
        img[(np.abs(x) < 30) & (y > -175) & (y < 70)] = 2350.0  # mediastinum
        img[_ellipse(g, 28, 62, 74, 56, -12)] = 2550.0  # heart shadow
        img[(y > 112 - 0.0009 * x * x) & _ellipse(g, 0, 70, 170, 250)] = 2300.0  # below diaphragm
        thorax = _ellipse(g, 0, 30, 172, 200)
        for k in range(10):  # posterior ribs curve down laterally
            band = np.abs(y - (-128 + 24 * k + 0.0026 * x * x)) < 6.0
            img[band & thorax & (np.abs(x) > 22) & (y < 118 - 0.0009 * x * x)] += 300.0
        img[np.abs(x) < 17] += 380.0  # spine through the mediastinum
        img[_ellipse(g, -72, -128, 76, 7, 9)] += 650.0  # clavicles
        img[_ellipse(g, 72, -128, 76, 7, -9)] += 650.0
    else:
        img[_ellipse(g, 0, 50, 150, 260)] = 1750.0
        img[_ellipse(g, 0, -150, 120, 70)] = 2200.0  # arms raised over the upper chest
        img[_ellipse(g, 8, -8, 104, 132)] = 780.0  # both lungs superimposed
        img[_ellipse(g, -42, 62, 64, 60, 20)] = 2350.0  # heart, anterior-inferior
        img[(y > 108 - 0.0016 * (x - 10) ** 2) & _ellipse(g, 0, 50, 150, 260)] = 2300.0
        spine_band = (np.abs(x - 98) < 26) & _ellipse(g, 0, 50, 150, 260)
        img[spine_band] = np.maximum(img[spine_band], 2050.0)  # paraspinal soft tissue
        for k in range(11):  # vertebral bodies with disc spaces
            yc = -175 + 31 * k
            img[(np.abs(x - 98) < 17) & (np.abs(y - yc) < 12)] = 2950.0
        img[(x > 120) & _ellipse(g, 0, 50, 150, 260)] += 300.0  # posterior elements
        img[_ellipse(g, -128, -40, 7, 70, 8)] = 2650.0  # sternum
    img = _box_blur(img, 3)
    img += _hash_noise(img.shape, seed) * 22.0
    return np.clip(np.rint(img), 0, 4095).astype("<u2")


def us_abdomen_rgb(rows: int, cols: int, view: str, seed: int) -> npt.NDArray[np.uint8]:
    """B-mode sector image as a scanner's RGB screen capture; ``view`` is "LIVER" or "GB".

    The liver view carries a colour Doppler box over the portal vein, so the RGB is really
    colour and not grey copied three times.
    """
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    ax, ay = cols / 2.0, 12.0  # transducer apex
    dx, dy = xx - ax, yy - ay
    r = np.sqrt(dx * dx + dy * dy)
    half_angle = math.tan(math.radians(36.0))
    sector = (dy > 0) & (np.abs(dx) <= half_angle * dy) & (r >= 14.0) & (r <= 222.0)
    echo = np.full((rows, cols), 0.55)  # liver parenchyma
    echo[r < 38] = 0.8  # skin and subcutaneous layers
    echo[(r >= 38) & (r < 44)] = 0.35  # muscle
    echo[(r >= 188) & (r < 194)] = 1.4  # diaphragm, bright curve
    echo[r >= 194] = 0.12
    pgrid = (xx - ax, yy)  # pixel grid for _ellipse
    doppler: Mask | None = None
    if view == "LIVER":
        for cx, cy, a, b in (
            (-38.0, 120.0, 7.0, 6.0),
            (30.0, 95.0, 5.0, 5.0),
            (5.0, 150.0, 4.0, 4.0),
        ):
            echo[_ellipse(pgrid, cx, cy, a, b)] = 0.05  # hepatic veins
        portal = _ellipse(pgrid, 10.0, 118.0, 22.0, 8.0, -15.0)
        echo[portal] = 0.06
        doppler = portal
    else:
        gb = _ellipse(pgrid, 5.0, 115.0, 42.0, 22.0, 10.0)
        wall = _ellipse(pgrid, 5.0, 115.0, 45.0, 25.0, 10.0) & ~gb
        echo[wall] = 1.1
        echo[gb] = 0.03
        # Posterior acoustic enhancement behind fluid, shadow behind the stone.
        behind = (np.abs(xx - ax - 5.0) < 38.0) & (yy > 137) & (yy < 188)
        echo[behind] *= 1.45
        stone = _ellipse(pgrid, 12.0, 128.0, 6.0, 5.0)
        echo[stone] = 1.6
        echo[(np.abs(xx - ax - 12.0) < 6.0) & (yy > 133) & (yy < 194)] *= 0.15
    n1 = _hash_noise((rows, cols), seed)
    n2 = _hash_noise((rows, cols), seed ^ 0x27D4EB2D)
    speckle = np.sqrt(n1 * n1 + n2 * n2) / math.sqrt(2.0)  # Rayleigh-like
    speckle = _box_blur(speckle, 1) * 1.1
    tgc = 1.0 - 0.0018 * np.clip(r - 40.0, 0.0, None)  # imperfect time-gain compensation
    gray = np.clip(echo * speckle * tgc * 200.0, 0.0, 255.0)
    gray[~sector] = 0.0
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    # Depth marks every centimetre (0.06 cm per pixel -> ~16.7 px) at the left edge.
    for cm in range(1, 14):
        row = round(ay + cm / 0.06)
        if row < rows - 1:
            rgb[row : row + 2, 6:10, :] = 220.0
    # Grey-scale bar on the right, as scanners draw it.
    bar = np.linspace(255.0, 0.0, 170)
    rgb[30:200, cols - 14 : cols - 8, :] = bar[:, None, None]
    if doppler is not None:
        box_x0, box_x1, box_y0, box_y1 = int(ax - 30), int(ax + 52), 92, 146
        inside = np.zeros((rows, cols), dtype=np.bool_)
        inside[box_y0:box_y1, box_x0:box_x1] = True
        flow = doppler & inside
        # Hepatopetal flow in red, a band of aliasing blue along the far wall.
        strength = np.clip(0.6 + 0.4 * n1, 0.2, 1.0)
        towards = flow & (yy < 121)
        away = flow & (yy >= 121)
        rgb[towards] = np.stack(
            [230 * strength[towards], 40 * strength[towards], 20 * strength[towards]], axis=1
        )
        rgb[away] = np.stack(
            [20 * strength[away], 60 * strength[away], 230 * strength[away]], axis=1
        )
        for row in (box_y0, box_y1 - 1):
            rgb[row, box_x0:box_x1, :] = (200.0, 200.0, 90.0)
        for col in (box_x0, box_x1 - 1):
            rgb[box_y0:box_y1, col, :] = (200.0, 200.0, 90.0)
        rgb[16:26, cols - 14 : cols - 8, :] = (230.0, 40.0, 20.0)  # colour scale swatches
        rgb[204:214, cols - 14 : cols - 8, :] = (20.0, 60.0, 230.0)
    result: npt.NDArray[np.uint8] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return result


# --------------------------------------------------------------------------------------------
# DICOM assembly
# --------------------------------------------------------------------------------------------


def _age(birth: str, on: str) -> str:
    """PatientAge (AS) such as "056Y"."""
    b = date(int(birth[:4]), int(birth[4:6]), int(birth[6:]))
    d = date(int(on[:4]), int(on[4:6]), int(on[6:]))
    years = d.year - b.year - ((d.month, d.day) < (b.month, b.day))
    return f"{years:03d}Y"


def _add_time(hhmmss: str, seconds: int) -> str:
    """Add seconds to a TM "HHMMSS[.ffffff]" keeping the fraction (series start a bit later)."""
    base, _, frac = hhmmss.partition(".")
    total = int(base[:2]) * 3600 + int(base[2:4]) * 60 + int(base[4:6]) + seconds
    total %= 86400
    out = f"{total // 3600:02d}{total % 3600 // 60:02d}{total % 60:02d}"
    return f"{out}.{frac}" if frac else out


def new_instance(
    plan: StudyPlan,
    sop_class: str,
    series_number: int,
    series_description: str,
    instance_number: int,
    series_offset_s: int,
) -> Dataset:
    """Dataset with file meta and the Patient / Study / Series / Equipment / SOP common modules."""
    sop_uid = plan.sop_uid(series_number, instance_number)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(uid("implementation"))
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME

    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    inst = plan.institution
    if inst.charset:
        ds.SpecificCharacterSet = inst.charset
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.InstanceCreationDate = plan.study_date
    ds.InstanceCreationTime = _add_time(plan.study_time, series_offset_s + 30 + instance_number)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = plan.study_date
    ds.SeriesDate = plan.study_date
    ds.ContentDate = plan.study_date
    ds.StudyTime = plan.study_time
    ds.SeriesTime = _add_time(plan.study_time, series_offset_s)
    ds.ContentTime = _add_time(plan.study_time, series_offset_s + instance_number)
    ds.AccessionNumber = plan.accession_number
    ds.Modality = plan.modality
    ds.Manufacturer = ""  # set per modality below; present (type 2) even if a builder forgets
    ds.InstitutionName = inst.name
    ds.ReferringPhysicianName = plan.referring_physician
    ds.StudyDescription = plan.description
    ds.SeriesDescription = series_description
    ds.PatientName = plan.patient.person_name(inst.charset)
    ds.PatientID = plan.patient_id
    ds.IssuerOfPatientID = inst.code
    ds.PatientBirthDate = plan.patient.birth_date
    ds.PatientSex = plan.patient.sex
    ds.PatientAge = _age(plan.patient.birth_date, plan.study_date)
    with warnings.catch_warnings():
        # "Chest" breaks the CS rules (upper case only) on purpose: modalities send such values,
        # and the ingest must normalize them. Silence pydicom's write-time complaint about it.
        warnings.filterwarnings("ignore", message="Invalid value for VR CS", category=UserWarning)
        ds.BodyPartExamined = plan.body_part_header
    ds.StudyInstanceUID = plan.study_uid
    ds.SeriesInstanceUID = plan.series_uid(series_number)
    ds.StudyID = plan.study_id
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    return ds


def set_pixels(
    ds: Dataset, pixels: npt.NDArray[Any], *, bits_stored: int, photometric: str
) -> None:
    """Image Pixel module from an array, written explicitly so every attribute is visible."""
    samples = 3 if pixels.ndim == 3 else 1
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = 0  # R1G1B1 R2G2B2 ..., what ultrasound carts write
    ds.Rows = int(pixels.shape[0])
    ds.Columns = int(pixels.shape[1])
    bits_allocated = pixels.dtype.itemsize * 8
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    vr = "OW" if bits_allocated > 8 else "OB"
    # Explicitly little-endian bytes: the transfer syntax is Explicit VR Little Endian.
    data = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
    ds["PixelData"] = DataElement(0x7FE00010, vr, data)


def _ct_common(
    ds: Dataset, *, spacing: float, thickness: float, z: float, size: int, frame_of_reference: str
) -> None:
    """CT Image + Image Plane attributes shared by the sample and bench CT writers."""
    ds.PatientPosition = "HFS"
    ds.KVP = 120
    ds.SliceThickness = thickness
    ds.DataCollectionDiameter = 500
    ds.ReconstructionDiameter = round(spacing * size, 3)
    ds.GantryDetectorTilt = 0
    ds.TableHeight = 172
    ds.RotationDirection = "CW"
    ds.ExposureTime = 500
    ds.XRayTubeCurrent = 220
    ds.ConvolutionKernel = "STANDARD"
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = frame_of_reference  # one per study: both chest series share it
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = [
        round(-(size / 2.0 - 0.5) * spacing, 4),
        round(-(size / 2.0 - 0.5) * spacing, 4),
        z,
    ]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = z
    ds.PixelSpacing = [spacing, spacing]
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"


def build_ct_chest(plan: StudyPlan) -> list[tuple[str, Dataset]]:
    """Plain and contrast-enhanced series over the same 6 levels (12 instances)."""
    out: list[tuple[str, Dataset]] = []
    size, spacing, thickness = 256, 1.40625, 5.0
    levels = 6
    for series_number, desc, contrast, offset in (
        (2, "Chest 5.0 Plain", False, 40),
        (3, "Chest 5.0 C+ Venous", True, 130),
    ):
        for i in range(levels):
            n = i + 1
            t = 0.08 + 0.84 * i / (levels - 1)
            z = round(-60.0 - 40.0 * i, 1)  # head first, so z falls towards the feet
            hu = ct_chest_hu(
                size, spacing, t, contrast, _seed(plan.folder, str(series_number), str(n))
            )
            ds = new_instance(plan, CT_IMAGE_STORAGE, series_number, desc, n, offset)
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.Manufacturer = "SIEMENS"
            ds.ManufacturerModelName = "SOMATOM Definition AS"
            ds.StationName = "CTAWP73102"
            ds.SoftwareVersions = "syngo CT VA48A"
            ds.ProtocolName = "Thorax_Routine_C" if contrast else "Thorax_Routine"
            _ct_common(
                ds,
                spacing=spacing,
                thickness=thickness,
                z=z,
                size=size,
                frame_of_reference=plan.frame_of_reference_uid,
            )
            ds.ConvolutionKernel = ["I30f", "3"]  # Siemens: kernel and strength
            if contrast:
                # Contrast/Bolus module: what tells a plain chest CT from an enhanced one.
                ds.ContrastBolusAgent = "Iohexol"
                ds.ContrastBolusRoute = "IV"
                ds.ContrastBolusVolume = 80
                ds.ContrastBolusIngredient = "IODINE"
                ds.ContrastBolusIngredientConcentration = 350
            # Two windows, as scanners often send: mediastinum and lung.
            ds.WindowCenter = [40, -600]
            ds.WindowWidth = [400, 1500]
            ds.WindowCenterWidthExplanation = ["MEDIASTINUM", "LUNG"]
            set_pixels(ds, ct_stored(hu, spacing), bits_stored=16, photometric="MONOCHROME2")
            ds.PixelPaddingValue = -2000
            out.append((f"S{series_number:02d}_I{n:03d}.dcm", ds))
    return out


def build_ct_head(plan: StudyPlan) -> list[tuple[str, Dataset]]:
    """One axial non-contrast series of 8 slices."""
    out: list[tuple[str, Dataset]] = []
    size, spacing, thickness, levels = 256, 0.8984375, 5.0, 8
    for i in range(levels):
        n = i + 1
        t = 0.1 + 0.8 * i / (levels - 1)
        z = round(-20.0 + 12.0 * i, 1)  # acquired from the skull base upwards
        hu = ct_head_hu(size, spacing, t, _seed(plan.folder, str(n)))
        ds = new_instance(plan, CT_IMAGE_STORAGE, 2, "Head 5mm STND", n, 25)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Manufacturer = "GE MEDICAL SYSTEMS"
        ds.ManufacturerModelName = "Optima CT660"
        ds.StationName = "SPB-CT02"
        ds.ProtocolName = "5.1 Routine Head"
        _ct_common(
            ds,
            spacing=spacing,
            thickness=thickness,
            z=z,
            size=size,
            frame_of_reference=plan.frame_of_reference_uid,
        )
        ds.WindowCenter = 40
        ds.WindowWidth = 80
        set_pixels(ds, ct_stored(hu, spacing), bits_stored=16, photometric="MONOCHROME2")
        ds.PixelPaddingValue = -2000
        out.append((f"S02_I{n:03d}.dcm", ds))
    return out


def build_mr_brain(plan: StudyPlan) -> list[tuple[str, Dataset]]:
    """One axial T2 TSE series of 8 slices (Philips-style series number 401)."""
    out: list[tuple[str, Dataset]] = []
    size, spacing, thickness, gap = 256, 0.9375, 5.0, 6.5
    levels = 8
    for i in range(levels):
        n = i + 1
        t = 0.15 + 0.7 * i / (levels - 1)
        z = round(-25.0 + gap * i * 1.6, 2)
        pixels = mr_brain_t2(size, spacing, t, _seed(plan.folder, str(n)))
        ds = new_instance(plan, MR_IMAGE_STORAGE, 401, "T2W_TSE TRA", n, 300)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"]
        ds.Manufacturer = "Philips"
        ds.ManufacturerModelName = "Ingenia"
        ds.StationName = "SPB-MR01"
        ds.SoftwareVersions = "5.7.1"
        ds.ProtocolName = "T2W_TSE TRA"
        # MR Image module (type 1/2 attributes).
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "SK"
        ds.ScanOptions = "PFP"
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = 4000
        ds.EchoTime = 100
        ds.EchoTrainLength = 15
        ds.MagneticFieldStrength = 3
        ds.ImagingFrequency = 127.7
        ds.ImagedNucleus = "1H"
        ds.SpacingBetweenSlices = gap
        ds.SliceThickness = thickness
        ds.PatientPosition = "HFS"
        ds.FrameOfReferenceUID = plan.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        half = (size / 2.0 - 0.5) * spacing
        ds.ImagePositionPatient = [round(-half, 4), round(-half, 4), z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = z
        ds.PixelSpacing = [spacing, spacing]
        ds.WindowCenter = 1200
        ds.WindowWidth = 2400
        set_pixels(ds, pixels, bits_stored=12, photometric="MONOCHROME2")
        out.append((f"S401_I{n:03d}.dcm", ds))
    return out


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    """A Code Sequence item (Basic Code Sequence Macro)."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


# SNOMED CT codes from PS3.16 CID 4010 (DX View) and CID 4031 (Common Anatomic Regions).
_DX_VIEW_CODES = {"PA": ("272479007", "postero-anterior"), "LL": ("399173006", "left lateral")}
_CHEST_CODE = ("43799004", "SCT", "Chest")


def build_dx_chest(plan: StudyPlan) -> list[tuple[str, Dataset]]:
    """PA and left-lateral views, one series each (as many DR consoles export them)."""
    out: list[tuple[str, Dataset]] = []
    size, spacing = 512, 0.8
    for series_number, desc, view, orientation, lateral in (
        (1, "Chest PA", "PA", ["L", "F"], False),
        (2, "Chest LAT", "LL", ["P", "F"], True),
    ):
        pixels = dx_chest(size, spacing, lateral, _seed(plan.folder, view))
        ds = new_instance(
            plan, DX_IMAGE_STORAGE_FOR_PRESENTATION, series_number, desc, 1, 60 * series_number
        )
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.Manufacturer = "UIH"
        ds.ManufacturerModelName = "uDR 588i"
        ds.StationName = "YB-DR1"
        ds.ProtocolName = desc
        # DX Series / DX Image / DX Detector essentials.
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ViewPosition = view
        code_value, meaning = _DX_VIEW_CODES[view]
        view_item = _code(code_value, "SCT", meaning)
        view_item.ViewModifierCodeSequence = DicomSequence()
        ds.ViewCodeSequence = DicomSequence([view_item])
        # The coded body part is right even where the free-text BodyPartExamined is sloppy.
        ds.AnatomicRegionSequence = DicomSequence([_code(*_CHEST_CODE)])
        ds.ImageLaterality = "U"  # unpaired structure
        ds.PositionerType = ""  # type 2: the console does not say
        ds.AcquisitionContextSequence = DicomSequence()
        ds.PresentationLUTShape = "IDENTITY"
        ds.PatientOrientation = orientation
        ds.KVP = 120 if not lateral else 125
        ds.ExposureTime = 10 if not lateral else 25
        ds.DistanceSourceToDetector = 1800
        ds.ImagerPixelSpacing = [spacing, spacing]
        ds.PixelSpacing = [spacing, spacing]
        ds.DetectorType = "SCINTILLATOR"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "US"
        ds.BurnedInAnnotation = "NO"
        ds.LossyImageCompression = "00"
        ds.WindowCenter = 2048
        ds.WindowWidth = 3800
        set_pixels(ds, pixels, bits_stored=12, photometric="MONOCHROME2")
        out.append((f"S{series_number:02d}_I001.dcm", ds))
    return out


def build_us_abdomen(plan: StudyPlan) -> list[tuple[str, Dataset]]:
    """Two frozen B-mode frames (liver with colour Doppler, gallbladder with a stone)."""
    out: list[tuple[str, Dataset]] = []
    rows, cols = 240, 320
    for n, view in ((1, "LIVER"), (2, "GB")):
        pixels = us_abdomen_rgb(rows, cols, view, _seed(plan.folder, view))
        ds = new_instance(plan, US_IMAGE_STORAGE, 1, "Abdomen", n, 20)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL", "0001"]
        ds.Manufacturer = "Mindray"
        ds.ManufacturerModelName = "Resona 7"
        ds.StationName = "YZ-US05"
        ds.ImageComments = "RT LOBE LIVER / PV" if view == "LIVER" else "GALLBLADDER"
        ds.PatientOrientation = ""  # type 2C, unknown for a handheld probe
        ds.BurnedInAnnotation = "NO"
        ds.LossyImageCompression = "00"
        # One calibrated region so a viewer can measure in cm (0.06 cm per pixel).
        region = Dataset()
        region.RegionSpatialFormat = 1  # 2D
        region.RegionDataType = 2 if view == "LIVER" else 1  # colour flow / tissue
        region.RegionFlags = 0
        region.RegionLocationMinX0 = 0
        region.RegionLocationMinY0 = 0
        region.RegionLocationMaxX1 = cols - 1
        region.RegionLocationMaxY1 = rows - 1
        region.ReferencePixelX0 = cols // 2
        region.ReferencePixelY0 = 12
        region.PhysicalUnitsXDirection = 3  # cm
        region.PhysicalUnitsYDirection = 3
        region.PhysicalDeltaX = 0.06
        region.PhysicalDeltaY = 0.06
        ds.SequenceOfUltrasoundRegions = DicomSequence([region])
        set_pixels(ds, pixels, bits_stored=8, photometric="RGB")
        out.append((f"S01_I{n:03d}.dcm", ds))
    return out


STUDIES: tuple[StudyPlan, ...] = (
    StudyPlan(
        folder="ct_chest_contrast_hosp_a",
        patient=ZHANG_WEI,
        institution=HOSP_A,
        patient_id="A00012345",
        accession_number="CT2404020037",
        study_date="20240402",
        study_time="140512",
        study_id="37",
        description="CT Chest with contrast",
        modality="CT",
        body_part_header="CHEST",
        body_part="CHEST",
        contrast=True,
        item_code="IMG-CT-CHEST-C",
        referring_physician="CHEN^JIAN",
        builder=build_ct_chest,
    ),
    StudyPlan(
        folder="ct_head_hosp_b",
        patient=LI_XIULAN,
        institution=HOSP_B,
        patient_id="B00087654",
        accession_number="B24050600871",
        study_date="20240506",
        study_time="213744.123000",  # TM with a fraction, as some GE consoles write it
        study_id="8871",
        description="颅脑CT平扫 HEAD",
        modality="CT",
        body_part_header="HEAD",
        body_part="HEAD",
        contrast=False,
        item_code="IMG-CT-HEAD",
        referring_physician="ZHOU^MIN=周^敏",
        builder=build_ct_head,
    ),
    StudyPlan(
        folder="mr_brain_hosp_b",
        patient=LI_XIULAN,
        institution=HOSP_B,
        patient_id="B00087654",
        accession_number="B24050700312",
        study_date="20240507",
        study_time="101503",
        study_id="312",
        description="颅脑MR平扫 BRAIN",
        modality="MR",
        body_part_header="BRAIN",
        body_part="BRAIN",
        contrast=False,
        item_code="IMG-MR-BRAIN",
        referring_physician="ZHOU^MIN=周^敏",
        builder=build_mr_brain,
    ),
    StudyPlan(
        folder="dx_chest_2v_hosp_c",
        patient=ZHANG_WEI,
        institution=HOSP_C,
        patient_id="0004567890",  # numeric MRN with leading zeros: keep it a string
        accession_number="DR20240318-0045",
        study_date="20240318",
        study_time="094210",
        study_id="45",
        description="Chest PA+LAT",
        modality="DX",
        body_part_header="Chest",  # field-style spelling; normalizes to CHEST
        body_part="CHEST",
        contrast=False,
        item_code="IMG-DX-CHEST-2V",
        referring_physician="",
        builder=build_dx_chest,
    ),
    StudyPlan(
        folder="us_abdomen_hosp_a",
        patient=WANG_FANG,
        institution=HOSP_A,
        patient_id="A00023456",
        accession_number="US2404150112",
        study_date="20240415",
        study_time="085031",
        study_id="112",
        description="US Abdomen (liver, GB, pancreas, spleen)",
        modality="US",
        body_part_header="ABDOMEN",
        body_part="ABDOMEN",
        contrast=False,
        item_code="IMG-US-ABD",
        referring_physician="LIU^YANG",
        builder=build_us_abdomen,
    ),
)


def write_part10(ds: Dataset, path: Path) -> None:
    """Write a Part 10 file: 128-byte preamble, 'DICM', group 2 meta, Explicit VR LE body."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def generate_samples(root: Path) -> dict[str, Any]:
    """Write every sample study under ``root`` and return the manifest (also written there)."""
    studies: dict[str, Any] = {}
    for plan in STUDIES:
        folder = root / plan.folder
        # Remove our previous output first so renamed instances do not linger.
        if folder.exists():
            for old in folder.glob("*.dcm"):
                old.unlink()
        files: list[dict[str, Any]] = []
        series: set[str] = set()
        total = 0
        for name, ds in plan.builder(plan):
            path = folder / name
            write_part10(ds, path)
            blob = path.read_bytes()
            total += len(blob)
            series.add(str(ds.SeriesInstanceUID))
            files.append(
                {
                    "path": f"{plan.folder}/{name}",
                    "series_instance_uid": str(ds.SeriesInstanceUID),
                    "sop_instance_uid": str(ds.SOPInstanceUID),
                    "size_bytes": len(blob),
                    "sha256": hashlib.sha256(blob).hexdigest(),
                }
            )
        studies[plan.folder] = {
            "patient": {
                "document_type": "RESIDENT_ID_CARD",
                "document_number": plan.patient.document_number,
                "name": f"{plan.patient.family}^{plan.patient.given}",
                "sex": plan.patient.sex,
                "birth_date": plan.patient.birth_date,
                "hospital_patient_id": plan.patient_id,
            },
            "institution_code": plan.institution.code,
            "institution_name": plan.institution.name,
            "institution_name_zh": plan.institution.name_zh,
            "accession_number": plan.accession_number,
            "study_instance_uid": plan.study_uid,
            "study_date": plan.study_date,
            "study_time": plan.study_time,
            "modality": plan.modality,
            "body_part_examined": plan.body_part_header,
            "body_part": plan.body_part,
            "contrast": plan.contrast,
            "performed_item_code": plan.item_code,
            "series_count": len(series),
            "instance_count": len(files),
            "size_bytes": total,
            "files": files,
        }
    manifest: dict[str, Any] = {
        "generator": "dicom_samples/make_samples.py",
        "note": "Synthetic data: people, ID numbers, hospitals and accession numbers are invented.",
        "studies": studies,
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    (root / "manifest.json").write_text(text, encoding="utf-8")
    return manifest


# --------------------------------------------------------------------------------------------
# Benchmark mode
# --------------------------------------------------------------------------------------------

BENCH_PATIENT = Patient("BENCH", "CESHI", None, "M", "19800101", "500105", 31)


def generate_bench_ct(out_dir: Path, count: int, series: int, seed: int) -> dict[str, Any]:
    """Write ``count`` 512x512 CT instances of one study, split into ``series`` series.

    Speed matters more than anatomy here: four chest levels are computed once, and each slice is
    one of them plus a rolled noise tile (a cheap copy), so 1,800 files take seconds.
    """
    if count < 1 or series < 1 or series > count:
        raise ValueError("need count >= 1 and 1 <= series <= count")
    size, spacing = 512, 0.703125
    tag = f"bench/{seed}/{count}/{series}"
    plan = StudyPlan(
        folder=tag,
        patient=BENCH_PATIENT,
        institution=HOSP_A,
        patient_id="A09990001",
        accession_number=f"BENCH{seed:04d}{count:05d}"[:16],
        study_date="20240601",
        study_time="080000",
        study_id=str(seed),
        description="CT Chest benchmark",
        modality="CT",
        body_part_header="CHEST",
        body_part="CHEST",
        contrast=False,
        item_code="IMG-CT-CHEST",
        referring_physician="",
        builder=build_ct_chest,  # unused: instances are written below
    )
    levels = [
        ct_stored(ct_chest_hu(size, spacing, t, False, _seed(tag, str(t))), spacing)
        for t in (0.15, 0.4, 0.65, 0.9)
    ]
    padding = levels[0] == -2000  # same circle on every level
    tile = np.rint(_hash_noise((size, size), _seed(tag, "tile")) * 6.0).astype("<i2")
    buf = np.empty((size, size), dtype="<i2")
    # Spread instances evenly (sizes differ by at most one), so exactly ``series`` series exist.
    first_index = [-(-s * count // series) for s in range(series)]  # ceil(s * count / series)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("bench_*.dcm"):
        old.unlink()

    template: Dataset | None = None
    started = time.perf_counter()
    total = 0
    for index in range(count):
        series_number = 1 + index * series // count
        n = 1 + index - first_index[series_number - 1]
        if template is None or n == 1:
            # One template per series; per instance only a handful of elements change.
            template = new_instance(
                plan,
                CT_IMAGE_STORAGE,
                series_number,
                f"Chest 0.625 #{series_number}",
                1,
                10 * series_number,
            )
            template.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            template.Manufacturer = "SIEMENS"
            template.ManufacturerModelName = "SOMATOM Force"
            _ct_common(
                template,
                spacing=spacing,
                thickness=0.625,
                z=0.0,
                size=size,
                frame_of_reference=plan.frame_of_reference_uid,
            )
            template.WindowCenter = [40, -600]
            template.WindowWidth = [400, 1500]
            set_pixels(template, levels[0], bits_stored=16, photometric="MONOCHROME2")
            template.PixelPaddingValue = -2000
        ds = template
        sop = plan.sop_uid(series_number, n)
        ds.file_meta.MediaStorageSOPInstanceUID = UID(sop)
        ds.SOPInstanceUID = sop
        ds.InstanceNumber = n
        z = round(-0.625 * index, 3)
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], z]
        ds.SliceLocation = z
        # Anatomy moves through four levels along z; the rolled tile keeps every slice distinct.
        level = levels[min(3, index * 4 // count)]
        np.add(level, np.roll(tile, index * 7, axis=1), out=buf)
        buf[padding] = -2000  # keep the padding value exact outside the scan circle
        ds["PixelData"] = DataElement(0x7FE00010, "OW", buf.tobytes())
        path = out_dir / f"bench_s{series_number:02d}_i{n:05d}.dcm"
        write_part10(ds, path)
        total += path.stat().st_size
    elapsed = time.perf_counter() - started
    summary: dict[str, Any] = {
        "patient": {
            "document_type": "RESIDENT_ID_CARD",
            "document_number": BENCH_PATIENT.document_number,
            "hospital_patient_id": plan.patient_id,
        },
        "institution_code": plan.institution.code,
        "accession_number": plan.accession_number,
        "study_instance_uid": plan.study_uid,
        "modality": "CT",
        "performed_item_code": plan.item_code,
        "series_count": series,
        "instance_count": count,
        "size_bytes": total,
        "seconds": round(elapsed, 2),
    }
    (out_dir / "bench.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE,
        help="where to write the samples (default: next to this script)",
    )
    parser.add_argument(
        "--bench-ct",
        type=Path,
        metavar="OUTDIR",
        help="instead of the samples, write a large CT study for benchmarks",
    )
    parser.add_argument("--count", type=int, default=1800, help="bench: number of instances")
    parser.add_argument("--series", type=int, default=1, help="bench: number of series")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="bench: vary to get different UIDs (a new study) for the same count",
    )
    args = parser.parse_args(argv)

    if args.bench_ct is not None:
        try:
            summary = generate_bench_ct(args.bench_ct, args.count, args.series, args.seed)
        except ValueError as exc:
            parser.error(str(exc))
        print(json.dumps(summary, indent=2))
        return 0

    manifest = generate_samples(args.out)
    for folder, study in manifest["studies"].items():
        print(
            f"{folder:28} {study['modality']:3} {study['instance_count']:3} instances "
            f"{study['size_bytes'] / 1024:8.0f} KiB  {study['performed_item_code']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
