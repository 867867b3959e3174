"""Reading and validating the header of one DICOM instance, without loading its pixel data."""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import tempfile
import warnings
from dataclasses import dataclass
from typing import BinaryIO, cast

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from mutualrec.ingest.dicom_file_meta import FileMeta, not_dicom, read_file_meta
from mutualrec.ingest.dicom_limits import (
    DEFAULT_LIMITS,
    ElementCount,
    HeaderLimits,
    InflationGuard,
    OverLimit,
)
from mutualrec.ingest.dicom_structure import Truncated, inflate_dataset, walk_dataset
from mutualrec.ingest.pydicom_quiet import quiet_pydicom
from mutualrec.matching.body_part import has_contrast, normalize_body_part
from mutualrec.violations import Rejected, Violation, quote

quiet_pydicom()

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_CS_SHAPE = re.compile(r"^[A-Z0-9_ ]{1,16}$")
_INSTANCE = "instance"
# The attributes the index needs. All are short string VRs (UI, CS, DA, TM, IS, SH, LO), whose
# bytes do not depend on byte order or VR encoding, so the structural walk can collect them raw.
_KEYWORDS = (
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "StudyTime",
    "AccessionNumber",
    "Modality",
    "StudyDescription",
    "SeriesDescription",
    "PatientID",
    "ContrastBolusAgent",
    "BodyPartExamined",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "InstanceNumber",
)
_TAGS = {int(Tag(keyword)): keyword for keyword in _KEYWORDS}
_CAPTURE = frozenset(_TAGS)
# Values that may hold text in the instance's character set; the rest are ASCII by definition.
_TEXT_KEYWORDS = {
    "StudyDescription",
    "SeriesDescription",
    "PatientID",
    "AccessionNumber",
    "ContrastBolusAgent",
    "BodyPartExamined",
}
_CHARSET_TAG = int(Tag("SpecificCharacterSet"))
# The codecs of the single-byte and Chinese character sets, in which ASCII bytes are ASCII
# characters (ISO 2022 switching and Shift JIS are not among them).
_ASCII_SUPERSETS = frozenset({"iso8859", "latin_1", "UTF8", "GB18030", "GBK"})
# A deflated dataset inflates into memory up to this size, beyond it into a temporary file.
_INFLATE_IN_MEMORY = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DicomHeader:
    """The attributes of one instance that the index, history view and matching engine need."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    # None when the instance carries no date at all: stored for the history, never recognized.
    study_date: dt.date | None
    # The attribute the date was read from (StudyDate, else SeriesDate, ...); empty when none.
    date_source: str
    study_time: dt.time | None
    patient_id: str
    accession_number: str
    study_description: str
    series_description: str
    series_number: int | None
    instance_number: int | None
    body_part_examined: str
    body_part: str
    contrast_agent: str
    contrast: bool
    transfer_syntax_uid: str


@functools.cache
def attribute(keyword: str) -> str:
    """The field path of a DICOM attribute: ``(0020,000D) StudyInstanceUID``."""
    tag = Tag(keyword)
    return f"({tag.group:04X},{tag.element:04X}) {keyword}"


def _encoding(meta: FileMeta, fp: BinaryIO) -> tuple[str, bool, bool]:
    """Transfer syntax UID, implicit VR?, little endian? of the dataset."""
    syntax = meta.transfer_syntax_uid
    if syntax:
        if syntax == ImplicitVRLittleEndian:
            return syntax, True, True
        return syntax, False, syntax != ExplicitVRBigEndian
    # No file meta (old, pre-Part 10 files): sniff the first element as every toolkit does. A
    # valid VR right after the tag means explicit VR; the group's byte order tells endianness.
    fp.seek(meta.dataset_start)
    first = fp.read(6)
    little = first[:1] != b"\x00"
    if first[4:6].isalpha() and first[4:6].isupper():
        return (ExplicitVRLittleEndian if little else ExplicitVRBigEndian), False, little
    return ImplicitVRLittleEndian, True, True


def _raw_values(
    fp: BinaryIO,
    size: int,
    start: int,
    syntax: str,
    implicit: bool,
    little: bool,
    limits: HeaderLimits,
) -> dict[int, bytes]:
    count = ElementCount(limits.max_elements)
    if syntax != DeflatedExplicitVRLittleEndian:
        return walk_dataset(
            fp, size, start, implicit=implicit, little=little, capture=_CAPTURE, on_element=count
        )
    with tempfile.SpooledTemporaryFile(max_size=_INFLATE_IN_MEMORY) as spooled:
        inflated = cast(BinaryIO, spooled)
        length = inflate_dataset(fp, start, inflated, InflationGuard(limits))
        return walk_dataset(
            inflated, length, 0, implicit=False, little=True, capture=_CAPTURE, on_element=count
        )


@functools.lru_cache(maxsize=64)
def _encodings(charset: bytes) -> tuple[tuple[str, ...], bool]:
    """The Python codecs of a Specific Character Set value, and whether a value of ASCII bytes
    reads as those ASCII characters in it (then no codec is needed). Cached: an upload's
    instances all carry the same value, and pydicom's lookup costs as much as a whole walk."""
    text = charset.decode("ascii", "replace")
    terms = [t.strip() for t in text.split("\\")] if text.strip("\0 ") else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            encodings = tuple(convert_encodings(terms or ["ISO_IR 6"]))
        except (LookupError, ValueError):
            raise Rejected.one(
                "the character set is not one DICOM defines",
                attribute("SpecificCharacterSet"),
                "Specific Character Set names no known character set",
                "UNKNOWN_CHARACTER_SET",
            ) from None
    return encodings, len(encodings) == 1 and encodings[0] in _ASCII_SUPERSETS


def _decode(raw: dict[int, bytes]) -> dict[str, str]:
    """Raw values as text: the first value of each, decoded in the instance's character set."""
    encodings, ascii_superset = _encodings(raw.get(_CHARSET_TAG, b""))
    values: dict[str, str] = {}
    for tag, value in raw.items():
        keyword = _TAGS[tag]
        if keyword not in _TEXT_KEYWORDS or (ascii_superset and value.isascii()):
            text = value.decode("ascii", "replace")
        else:
            with warnings.catch_warnings():
                # pydicom warns about undecodable bytes; we replace them.
                warnings.simplefilter("ignore")
                text = decode_bytes(value, list(encodings), set())
        values[keyword] = text.split("\\")[0].strip("\0 ")
    return values


def _uid(values: dict[str, str], keyword: str, problems: list[Violation]) -> str:
    value = values.get(keyword, "")
    if not value:
        problems.append(Violation(attribute(keyword), f"{keyword} is missing", "MISSING_ATTRIBUTE"))
    elif not UID(value).is_valid:
        problems.append(
            Violation(
                attribute(keyword),
                f"{keyword} {value[:80]!r} is not a valid UID (digits and dots, at most 64 "
                "characters, no leading zeros in a component)",
                "MALFORMED_UID",
            )
        )
    return value


# Where the study's date is taken from, in order: archives hold instances whose StudyDate is
# empty (anonymised or imported studies) but whose series, acquisition or content date is not.
_DATE_KEYWORDS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
# DA is YYYYMMDD; ACR-NEMA wrote YYYY.MM.DD, which archives still hold (PS3.5 6.2, DA note).
_DATE_SHAPE = re.compile(r"^(\d{4})(\.?)(\d{2})\2(\d{2})$")


def _study_date(
    values: dict[str, str], problems: list[Violation], today: dt.date
) -> tuple[dt.date | None, str]:
    """The first date present among :data:`_DATE_KEYWORDS` and its keyword; None, "" if none."""
    keyword = next((k for k in _DATE_KEYWORDS if values.get(k)), None)
    if keyword is None:
        return None, ""
    value = values[keyword]
    field = attribute(keyword)
    match = _DATE_SHAPE.match(value)
    try:
        if match is None:
            raise ValueError(value)
        year, _, month, day = match.groups()
        parsed = dt.date(int(year), int(month), int(day))
    except ValueError:
        problems.append(
            Violation(
                field, f"{keyword} {value[:20]!r} is not a date as YYYYMMDD", "MALFORMED_DATE"
            )
        )
        return None, keyword
    # One day of slack: a modality's local date may run ahead of the server's.
    if parsed > today + dt.timedelta(days=1):
        problems.append(Violation(field, f"{keyword} {value} is in the future", "FUTURE_DATE"))
    if parsed.year < 1900:
        problems.append(Violation(field, f"{keyword} {value} is before 1900", "MALFORMED_DATE"))
    return parsed, keyword


def _study_time(value: str) -> dt.time | None:
    match = re.match(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$", value.replace(":", ""))
    if not match:
        return None
    hour, minute, second, fraction = match.groups()
    try:
        return dt.time(
            int(hour),
            int(minute or 0),
            min(int(second or 0), 59),
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError:
        return None


# The range of the index's integer columns (32-bit signed, on SQLite and PostgreSQL alike).
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
# Neither is text: NUL (PostgreSQL refuses it) and a UTF-16 surrogate (not encodable as UTF-8).
_UNSTORABLE = re.compile("[\0\ud800-\udfff]")


def _integer(values: dict[str, str], keyword: str, problems: list[Violation]) -> int | None:
    """An IS value as an integer; a number beyond the index's range is a violation. A value
    that is no number at all is left out, as modalities are known to write such."""
    value = values.get(keyword, "")
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    if number is None or math.isnan(number):
        return None
    if not _INT_MIN <= number <= _INT_MAX:
        problems.append(
            Violation(
                attribute(keyword),
                f"{keyword} {quote(value, 20)} is beyond the range of an integer "
                f"({_INT_MIN} to {_INT_MAX})",
                "OUT_OF_RANGE",
            )
        )
        return None
    return int(number)


def _unstorable(values: dict[str, str]) -> list[Violation]:
    return [
        Violation(
            attribute(keyword),
            f"{keyword} holds a NUL character or a surrogate, which is not text",
            "MALFORMED_ATTRIBUTE",
        )
        for keyword, value in values.items()
        if _UNSTORABLE.search(value)
    ]


def read_header(
    fp: BinaryIO,
    size: int,
    *,
    today: dt.date | None = None,
    limits: HeaderLimits = DEFAULT_LIMITS,
) -> DicomHeader:
    """Parse and validate an instance held in the seekable ``fp`` of ``size`` bytes.

    Raises :class:`Rejected` with every violation found: not DICOM, truncated, a DICOMDIR,
    missing or malformed required attributes, or beyond ``limits`` of what reading may cost.
    """
    if size < 132 + 8:
        raise not_dicom(f"{size} bytes is too short for a DICOM instance")
    meta = read_file_meta(fp, size)
    if meta.media_storage_sop_class_uid == MEDIA_STORAGE_DIRECTORY:
        raise Rejected.one(
            "a DICOMDIR is a media index, not an instance",
            attribute("MediaStorageSOPClassUID"),
            "DICOMDIR files index removable media; upload the instances they list",
            "DICOMDIR",
        )
    syntax, implicit, little = _encoding(meta, fp)
    try:
        raw = _raw_values(fp, size, meta.dataset_start, syntax, implicit, little, limits)
    except OverLimit as exc:
        raise Rejected.one(
            "the instance is beyond what reading one may cost", _INSTANCE, str(exc), exc.reason
        ) from None
    except Truncated as exc:
        if not meta.present and not meta.preamble:
            raise not_dicom("no DICOM preamble, file meta or readable dataset") from None
        raise Rejected.one(
            "the instance is truncated",
            _INSTANCE,
            f"incomplete or corrupt instance: {exc}",
            "TRUNCATED",
        ) from None
    values = _decode(raw)
    if not meta.present and not meta.preamble and not values.get("SOPInstanceUID"):
        raise not_dicom("no DICOM file meta and no identifying attribute")

    problems = _unstorable(values)
    sop_class = _uid(values, "SOPClassUID", problems)
    sop_instance = _uid(values, "SOPInstanceUID", problems)
    study = _uid(values, "StudyInstanceUID", problems)
    series = _uid(values, "SeriesInstanceUID", problems)
    modality = values.get("Modality", "")
    if not modality:
        problems.append(
            Violation(attribute("Modality"), "Modality is missing", "MISSING_ATTRIBUTE")
        )
    elif not _CS_SHAPE.match(modality):
        problems.append(
            Violation(
                attribute("Modality"),
                f"Modality {modality[:20]!r} is not a code string",
                "MALFORMED_ATTRIBUTE",
            )
        )
    study_date, date_source = _study_date(values, problems, today or dt.date.today())
    # Only the hospital's own number, empty in anonymised or imported studies: the patient is the
    # one the upload header declares.
    patient_id = values.get("PatientID", "")
    series_number = _integer(values, "SeriesNumber", problems)
    instance_number = _integer(values, "InstanceNumber", problems)
    if problems:
        raise Rejected("required attributes are missing or malformed", problems)

    raw_body_part = values.get("BodyPartExamined", "")
    agent = values.get("ContrastBolusAgent", "")
    return DicomHeader(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_instance_uid=study,
        series_instance_uid=series,
        modality=modality,
        study_date=study_date,
        date_source=date_source,
        study_time=_study_time(values.get("StudyTime", "")),
        patient_id=patient_id[:64],
        accession_number=values.get("AccessionNumber", "")[:64],
        study_description=values.get("StudyDescription", "")[:256],
        series_description=values.get("SeriesDescription", "")[:256],
        series_number=series_number,
        instance_number=instance_number,
        body_part_examined=raw_body_part[:64],
        body_part=normalize_body_part(raw_body_part),
        contrast_agent=agent[:128],
        contrast=has_contrast(agent),
        transfer_syntax_uid=syntax,
    )
