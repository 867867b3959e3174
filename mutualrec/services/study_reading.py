"""Reading studies the DICOMweb way: searches over the attributes of the stored instances
(QIDO-RS), and their files, headers, frames and rendered images (WADO-RS).

Who may read what is :class:`~mutualrec.services.patient_history.PatientHistory`'s one rule,
the same as ImagingService's: a patient their own studies, a share link its one study, a
hospital the studies a recent check of its recognized; any other study is "not found", as
one that does not exist. Every read names the patients it touched in the call's audit record.

Attribute values come from the stored instances' own headers (only the header is read, never
the pixel data): the index keeps what recognition needs, not every attribute a viewer shows.
"""

from __future__ import annotations

import io
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from mutualrec.imaging import frames as frame_reading
from mutualrec.imaging.dicom_json import attribute_strings
from mutualrec.imaging.dicomweb_query import (
    INSTANCE_KEYS,
    SERIES_DEFAULTS,
    SERIES_KEYS,
    STUDY_DEFAULTS,
    STUDY_KEYS,
    Level,
    Query,
    matches,
)
from mutualrec.imaging.raw_dicom_json import instance_metadata
from mutualrec.imaging.records import InstanceFile, StudyEntry
from mutualrec.imaging.thumbnails import Unrenderable, render_frame
from mutualrec.security.api_keys import Principal
from mutualrec.security.audit import touched
from mutualrec.services.patient_history import PatientHistory
from mutualrec.storage.objects import ObjectNotFound, ObjectStore, ObjectStoreError
from mutualrec.violations import DataLost, NotFound, Rejected, Unavailable, Violation

# Most headers end well within this; a longer one is read from a scratch copy of the file.
_HEADER_PREFIX = 64 * 1024
# How many studies one search looks through: a patient's whole history, a hospital's day.
MAX_SEARCHED_STUDIES = 1000

# Attributes of the patient and study modules an entry of any level may show.
_STUDY_LEVEL = frozenset(
    {
        *STUDY_KEYS,
        *STUDY_DEFAULTS,
        "IssuerOfPatientID",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "InstitutionName",
        "StudyComments",
        "TimezoneOffsetFromUTC",
        "SpecificCharacterSet",
    }
)
_SERIES_LEVEL = frozenset(
    {
        *SERIES_KEYS,
        *SERIES_DEFAULTS,
        "SeriesDate",
        "SeriesTime",
        "Laterality",
        "ProtocolName",
        "Manufacturer",
        "ManufacturerModelName",
        "StationName",
        "OperatorsName",
    }
)
_T = TypeVar("_T")
# Metadata answers kept in memory, by content hash: a viewer asks for a study's metadata
# again on every opening, and building it costs milliseconds of pydicom per instance.
METADATA_CACHE_BYTES = 64 * 1024 * 1024
# A file larger than this share of the file cache is never kept: it would push out a study.
_LARGEST_KEPT_SHARE = 8


class _ContentCache:
    """Bytes by instance content hash (metadata JSON, or the checked file itself), least
    recently used first out, bounded in bytes. Never stale: another content is another hash."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._held = 0
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str) -> bytes | None:
        with self._lock:
            found = self._entries.get(sha256)
            if found is not None:
                self._entries.move_to_end(sha256)
            return found

    def put(self, sha256: str, data: bytes) -> None:
        with self._lock:
            if sha256 in self._entries or len(data) > self._budget:
                return
            self._entries[sha256] = data
            self._held += len(data)
            while self._held > self._budget:
                _, dropped = self._entries.popitem(last=False)
                self._held -= len(dropped)


@dataclass(frozen=True, slots=True)
class SearchScope:
    """Where a search looks: everywhere the caller may read, one study, or one series."""

    study_instance_uid: str = ""
    series_instance_uid: str = ""


@dataclass(frozen=True, slots=True)
class Found:
    """One entry of a search's answer: its attributes and where it is."""

    attributes: Dataset
    study_instance_uid: str
    series_instance_uid: str = ""
    sop_instance_uid: str = ""


@dataclass(frozen=True, slots=True)
class Frames:
    """Frames of one instance, in the order asked, and how they are encoded."""

    transfer_syntax: str
    media_type: str
    frames: list[bytes]


def _copy(source: Dataset, target: Dataset, keywords: frozenset[str]) -> None:
    for element in source:
        if element.keyword in keywords:
            target.add(element)


def _set(target: Dataset, keyword: str, vr: str, value: object) -> None:
    tag = tag_for_keyword(keyword)
    assert tag is not None
    target.add(DataElement(tag, vr, value))


class StudyReading:
    """Blocking DICOMweb reads; the HTTP door runs them on worker threads in the call's context
    (which carries its audit record)."""

    def __init__(
        self, history: PatientHistory, store: ObjectStore, scratch: Path, file_cache_bytes: int = 0
    ) -> None:
        self._history = history
        self._store = store
        self._scratch = scratch
        self._metadata = _ContentCache(METADATA_CACHE_BYTES)
        # Files that passed their hash check, by that hash: a viewer opens a study again and
        # again, and re-reading and re-hashing it costs more than sending it.
        self._files = _ContentCache(file_cache_bytes)
        self._largest_kept = file_cache_bytes // _LARGEST_KEPT_SHARE

    # --- access -----------------------------------------------------------------------------

    def instances(
        self,
        principal: Principal,
        peer: str,
        resource: str,
        study_uid: str,
        series_uid: str = "",
        sop_uid: str = "",
    ) -> list[InstanceFile]:
        """The current files of a study the caller may read, or of one series or instance of
        it, for ``resource`` (``retrieval``, ``metadata``...: what the audit trail and a share
        link's openings name); :class:`NotFound` when there are none (or the study is not
        theirs)."""
        what = f"DICOMweb {resource} of study {study_uid}"
        if sop_uid:
            what = f"DICOMweb {resource} of instance {sop_uid} of study {study_uid}"
        elif series_uid:
            what = f"DICOMweb {resource} of series {series_uid} of study {study_uid}"
        entry = self._history.open_study(principal, study_uid, peer, f"DICOMweb {resource}", what)
        files = self._history.study_files(entry.study_id, series_uid)
        if sop_uid:
            files = [f for f in files if f.sop_instance_uid == sop_uid]
        if not files:
            raise NotFound("no such series or instance" if series_uid else "no such study")
        return files

    def read(self, instance: InstanceFile) -> Iterator[bytes]:
        """An instance's bytes as stored, checked against its hash at the end (the check
        raises after the last chunk). Small enough files are kept once they passed it and
        served from memory after: the copy kept is the one checked, under the hash recorded
        at ingest, so what leaves is still exactly what the hospital sent."""
        kept = self._files.get(instance.sha256)
        if kept is not None:
            yield kept
            return
        if instance.size_bytes > self._largest_kept:
            yield from self._history.read(instance)
            return
        chunks = []
        for chunk in self._history.read(instance):
            chunks.append(chunk)
            yield chunk
        # Reached only when the check passed.
        self._files.put(instance.sha256, b"".join(chunks))

    # --- headers ----------------------------------------------------------------------------

    def header(self, instance: InstanceFile) -> Dataset:
        """An instance's header (every attribute before its pixel data)."""
        return self._header(instance, self._prefix(instance))

    def _prefix(self, instance: InstanceFile) -> bytes:
        """The first bytes of an instance's file, where its header nearly always ends."""
        try:
            return b"".join(self._store.open(instance.object_key, 0, _HEADER_PREFIX))
        except (ObjectNotFound, ObjectStoreError) as failure:
            raise Unavailable(
                f"instance {instance.sop_instance_uid} could not be read"
            ) from failure

    def _header(self, instance: InstanceFile, prefix: bytes) -> Dataset:
        fp = io.BytesIO(prefix)
        header = self._parse(fp, instance)
        if fp.tell() < len(prefix) or len(prefix) < _HEADER_PREFIX:
            return header
        try:
            return self._with_copy(instance, lambda copy: self._parse(copy, instance))
        except (ObjectNotFound, ObjectStoreError) as failure:
            raise Unavailable(
                f"instance {instance.sop_instance_uid} could not be read"
            ) from failure

    def metadata(self, instance: InstanceFile) -> bytes:
        """An instance's metadata (DICOM JSON, UTF-8), built on first request and kept."""
        cached = self._metadata.get(instance.sha256)
        if cached is None:
            prefix = self._prefix(instance)
            cached = instance_metadata(
                prefix,
                complete=len(prefix) < _HEADER_PREFIX,
                header=lambda: self._header(instance, prefix),
            )
            self._metadata.put(instance.sha256, cached)
        return cached

    @staticmethod
    def _parse(fp: BinaryIO, instance: InstanceFile) -> Dataset:
        try:
            return pydicom.dcmread(fp, stop_before_pixels=True, defer_size=None)
        except (InvalidDicomError, ValueError, EOFError, KeyError, TypeError) as exc:
            # Ingest accepted this file after reading its header: it changed since.
            raise DataLost(
                f"instance {instance.sop_instance_uid} is damaged in the object store"
            ) from exc

    def _with_copy(self, instance: InstanceFile, use: Callable[[BinaryIO], _T]) -> _T:
        """``use`` of a scratch copy of the instance, written chunk by chunk (never the whole
        object in memory), checked against its hash."""
        self._scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self._scratch, suffix=".dcm") as copy:
            for chunk in self.read(instance):
                copy.write(chunk)
            copy.flush()
            copy.seek(0)
            return use(copy)  # type: ignore[arg-type]

    # --- QIDO-RS ----------------------------------------------------------------------------

    def search(
        self, principal: Principal, peer: str, query: Query, scope: SearchScope
    ) -> list[Found]:
        """The entries of ``query`` under ``scope`` among what the caller may read, in study
        (newest first), series, then instance order, paged by the query's offset and limit."""
        if scope.study_instance_uid:
            studies = [
                self._history.open_study(
                    principal,
                    scope.study_instance_uid,
                    peer,
                    "DICOMweb search",
                    f"DICOMweb search of study {scope.study_instance_uid}",
                )
            ]
        else:
            studies = self._history.readable_studies(principal, peer, MAX_SEARCHED_STUDIES)
            wanted = query.filters.get("StudyInstanceUID")
            if wanted is not None:
                studies = [
                    s
                    for s in studies
                    if matches("StudyInstanceUID", wanted, [s.study_instance_uid])
                ]
        found: list[Found] = []
        for study in studies:
            found += self._study_entries(study, query, scope)
        page = found[query.offset : query.offset + query.limit]
        shown: dict[str, int] = {}
        for entry in page:
            shown[entry.study_instance_uid] = shown.get(entry.study_instance_uid, 0) + 1
        for study in studies:
            if study.study_instance_uid in shown:
                touched(
                    study.patient_key,
                    f"DICOMweb search: {shown[study.study_instance_uid]} "
                    f"{query.level.value} entries of study {study.study_instance_uid}",
                )
        return page

    def _study_entries(self, study: StudyEntry, query: Query, scope: SearchScope) -> list[Found]:
        files = self._history.study_files(study.study_id, scope.series_instance_uid)
        if not files:
            if scope.series_instance_uid:
                raise NotFound("no such series")
            return []
        by_series: dict[str, list[InstanceFile]] = {}
        for file in files:
            by_series.setdefault(file.series_instance_uid, []).append(file)
        first_header = self.header(files[0])
        study_attributes = Dataset()
        _copy(first_header, study_attributes, _STUDY_LEVEL)
        study_attributes.StudyInstanceUID = study.study_instance_uid
        _set(study_attributes, "ModalitiesInStudy", "CS", list(study.modalities))
        _set(study_attributes, "NumberOfStudyRelatedSeries", "IS", len(by_series))
        _set(study_attributes, "NumberOfStudyRelatedInstances", "IS", len(files))
        _set(study_attributes, "InstanceAvailability", "CS", "ONLINE")
        if query.level is Level.STUDY:
            if not self._matches(study_attributes, query):
                return []
            return [Found(study_attributes, study.study_instance_uid)]
        found = []
        for series_uid, series_files in by_series.items():
            header = first_header if series_files[0] is files[0] else self.header(series_files[0])
            series_attributes = Dataset()
            series_attributes.update(study_attributes)
            _copy(header, series_attributes, _SERIES_LEVEL)
            _set(series_attributes, "NumberOfSeriesRelatedInstances", "IS", len(series_files))
            if query.level is Level.SERIES:
                if self._matches(series_attributes, query):
                    found.append(Found(series_attributes, study.study_instance_uid, series_uid))
                continue
            if not self._matches(series_attributes, query, skip=INSTANCE_KEYS):
                continue
            for file in series_files:
                header = first_header if file is files[0] else self.header(file)
                attributes = Dataset()
                attributes.update(header)
                attributes.update(series_attributes)
                if self._matches(attributes, query):
                    found.append(
                        Found(
                            attributes, study.study_instance_uid, series_uid, file.sop_instance_uid
                        )
                    )
        return found

    @staticmethod
    def _matches(attributes: Dataset, query: Query, skip: Sequence[str] = ()) -> bool:
        return all(
            matches(keyword, wanted, attribute_strings(attributes, keyword))
            for keyword, wanted in query.filters.items()
            if keyword not in skip
        )

    # --- WADO-RS ----------------------------------------------------------------------------

    def frames(self, instance: InstanceFile, numbers: Sequence[int]) -> Frames:
        """Frames ``numbers`` (from 1) of an instance, as stored (native or compressed)."""

        def use(fp: BinaryIO) -> Frames:
            try:
                layout, frames = frame_reading.read_frames(fp, numbers)
            except frame_reading.NoFrames as exc:
                raise Rejected(
                    "the instance has no frames to serve",
                    [Violation("frames", str(exc), "NO_FRAMES")],
                ) from None
            return Frames(layout.transfer_syntax, layout.media_type, frames)

        return self._with_copy(instance, use)

    def rendered(
        self,
        instance: InstanceFile,
        frame: int,
        media_type: str,
        quality: int,
        viewport: tuple[int, int] | None,
    ) -> bytes:
        """Frame ``frame`` (from 1) of an instance rendered as ``media_type``."""

        def use(fp: BinaryIO) -> bytes:
            try:
                return render_frame(Path(fp.name), frame - 1, media_type, quality, viewport)
            except Unrenderable as exc:
                raise Rejected(
                    "the instance cannot be rendered",
                    [Violation("frames" if frame > 1 else "", str(exc), "UNRENDERABLE")],
                ) from None

        return self._with_copy(instance, use)
