"""Reading and validating the header of one DICOM instance, without loading its pixel data."""

from __future__ import annotations

import datetime as dt
import re
import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

from mutualrec.ingest.dicom_structure import Truncated, check_complete, check_deflated_complete
from mutualrec.matching.body_part import has_contrast, normalize_body_part
from mutualrec.violations import Rejected, Violation

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_CS_SHAPE = re.compile(r"^[A-Z0-9_ ]{1,16}$")
# Values larger than this stay in the file: a header read must not pull in pixel data.
_DEFER_BYTES = 1024
_INSTANCE = "instance"


@dataclass(frozen=True, slots=True)
class DicomHeader:
    """The attributes of one instance that the index, history view and matching engine need."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    study_date: dt.date
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


def attribute(keyword: str) -> str:
    """The field path of a DICOM attribute: ``(0020,000D) StudyInstanceUID``."""
    tag = Tag(keyword)
    return f"({tag.group:04X},{tag.element:04X}) {keyword}"


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value: Any = ds.get(keyword)
    except Exception:  # pydicom raises many types on a malformed value; treat all as absent
        return ""
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        value = value[0] if value else ""
    return str(value).strip()


def _integer(ds: Dataset, keyword: str) -> int | None:
    text = _text(ds, keyword)
    try:
        return int(float(text)) if text else None
    except ValueError:
        return None


def _uid(ds: Dataset, keyword: str, problems: list[Violation]) -> str:
    value = _text(ds, keyword)
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


def _study_date(ds: Dataset, problems: list[Violation], today: dt.date) -> dt.date:
    value = _text(ds, "StudyDate")
    field = attribute("StudyDate")
    if not value:
        problems.append(Violation(field, "StudyDate is missing", "MISSING_ATTRIBUTE"))
        return dt.date.min
    try:
        parsed = dt.datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        problems.append(
            Violation(
                field, f"StudyDate {value[:20]!r} is not a date as YYYYMMDD", "MALFORMED_DATE"
            )
        )
        return dt.date.min
    # One day of slack: a modality's local date may run ahead of the server's.
    if parsed > today + dt.timedelta(days=1):
        problems.append(Violation(field, f"StudyDate {value} is in the future", "FUTURE_DATE"))
    if parsed.year < 1900:
        problems.append(Violation(field, f"StudyDate {value} is before 1900", "MALFORMED_DATE"))
    return parsed


def _study_time(ds: Dataset) -> dt.time | None:
    value = _text(ds, "StudyTime").replace(":", "")
    match = re.match(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$", value)
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


def _encoding(meta: FileMetaDataset, fp: BinaryIO, start: int) -> tuple[str, bool, bool]:
    """Transfer syntax UID, implicit VR?, little endian? of the dataset."""
    syntax = str(meta.get("TransferSyntaxUID", "") or "")
    if syntax:
        if syntax == ImplicitVRLittleEndian:
            return syntax, True, True
        return syntax, False, syntax != ExplicitVRBigEndian
    # No file meta (old, pre-Part 10 files): sniff the first element as every toolkit does. A
    # valid VR right after the tag means explicit VR; the group's byte order tells endianness.
    fp.seek(start)
    first = fp.read(6)
    little = first[:1] != b"\x00"
    if first[4:6].isalpha() and first[4:6].isupper():
        return ("1.2.840.10008.1.2.1" if little else ExplicitVRBigEndian), False, little
    return ImplicitVRLittleEndian, True, True


def _parse(fp: BinaryIO) -> tuple[Dataset, FileMetaDataset, int]:
    """Parse the header; return the dataset, its file meta and where the dataset starts."""
    fp.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            read_preamble(fp, force=True)
            meta = _read_file_meta_info(fp)
            start = fp.tell()
            fp.seek(0)
            ds = pydicom.dcmread(fp, defer_size=_DEFER_BYTES, force=True)
            # Force the lazily parsed elements that validation reads, inside the guard.
            for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality"):
                ds.get(keyword)
        # Untrusted bytes make pydicom (and zlib below it) raise almost any exception type;
        # whatever it is, the bytes are not an instance we can read.
        except Exception as exc:
            raise Rejected(
                "not a readable DICOM instance",
                [Violation(_INSTANCE, f"cannot be parsed as DICOM: {exc}", "NOT_DICOM")],
            ) from None
    # Forced parsing reads almost any bytes as *some* dataset; without file meta and without a
    # single identifying attribute there is nothing that makes these bytes DICOM.
    if not meta and not any(k in ds for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID")):
        raise Rejected(
            "not a DICOM instance",
            [Violation(_INSTANCE, "no DICOM file meta and no identifying attribute", "NOT_DICOM")],
        )
    return ds, meta, start


def read_header(fp: BinaryIO, size: int, *, today: dt.date | None = None) -> DicomHeader:
    """Parse and validate an instance held in the seekable ``fp`` of ``size`` bytes.

    Raises :class:`Rejected` with every violation found: not DICOM, truncated, a DICOMDIR,
    missing or malformed required attributes.
    """
    if size < 132 + 8:
        raise Rejected(
            "not a DICOM instance",
            [Violation(_INSTANCE, f"{size} bytes is too short for a DICOM instance", "NOT_DICOM")],
        )
    ds, meta, start = _parse(fp)
    media_class = str(meta.get("MediaStorageSOPClassUID", "") or "")
    if media_class == MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds:
        raise Rejected(
            "a DICOMDIR is a media index, not an instance",
            [
                Violation(
                    attribute("MediaStorageSOPClassUID") if media_class else _INSTANCE,
                    "DICOMDIR files index removable media; upload the instances they list",
                    "DICOMDIR",
                )
            ],
        )
    syntax, implicit, little = _encoding(meta, fp, start)
    try:
        if syntax == DeflatedExplicitVRLittleEndian:
            check_deflated_complete(fp, start)
        else:
            check_complete(fp, size, start, implicit=implicit, little=little)
    except Truncated as exc:
        raise Rejected(
            "the instance is truncated",
            [Violation(_INSTANCE, f"incomplete or corrupt instance: {exc}", "TRUNCATED")],
        ) from None

    problems: list[Violation] = []
    sop_class = _uid(ds, "SOPClassUID", problems)
    sop_instance = _uid(ds, "SOPInstanceUID", problems)
    study = _uid(ds, "StudyInstanceUID", problems)
    series = _uid(ds, "SeriesInstanceUID", problems)
    modality = _text(ds, "Modality")
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
    study_date = _study_date(ds, problems, today or dt.date.today())
    patient_id = _text(ds, "PatientID")
    if not patient_id:
        problems.append(
            Violation(
                attribute("PatientID"),
                "PatientID (the hospital's patient number) is missing",
                "MISSING_ATTRIBUTE",
            )
        )
    if problems:
        raise Rejected("required attributes are missing or malformed", problems)

    raw_body_part = _text(ds, "BodyPartExamined")
    agent = _text(ds, "ContrastBolusAgent")
    return DicomHeader(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_instance_uid=study,
        series_instance_uid=series,
        modality=modality,
        study_date=study_date,
        study_time=_study_time(ds),
        patient_id=patient_id,
        accession_number=_text(ds, "AccessionNumber"),
        study_description=_text(ds, "StudyDescription")[:256],
        series_description=_text(ds, "SeriesDescription")[:256],
        series_number=_integer(ds, "SeriesNumber"),
        instance_number=_integer(ds, "InstanceNumber"),
        body_part_examined=raw_body_part[:64],
        body_part=normalize_body_part(raw_body_part),
        contrast_agent=agent[:128],
        contrast=has_contrast(agent),
        transfer_syntax_uid=syntax,
    )
