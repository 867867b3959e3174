"""One imaging study upload: instances arrive in chunks, each is validated, stored and indexed.

Every instance is its own unit of work: its blob is written first, then its index rows are
committed. A crash in between leaves at most an unreferenced blob (which a sweep removes), never
an index row without its blob; an acknowledged instance is on disk and in the index.
"""

from __future__ import annotations

import enum
import hashlib
import io
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, cast

from sqlalchemy.orm import Session, sessionmaker

from mutualrec.identity import IdentityDocument, InvalidIdentity, parse_identity, patient_key
from mutualrec.ingest.dicom_header import DicomHeader, attribute, read_header
from mutualrec.ingest.dicom_limits import DEFAULT_LIMITS, HeaderLimits
from mutualrec.storage import imaging_index as index
from mutualrec.storage.imaging_index import StudyOverview
from mutualrec.storage.objects import ObjectStore
from mutualrec.violations import Rejected, Violation

# Instances up to this size are buffered in memory; larger ones spill to a temporary file, so a
# 2 GB multi-frame instance costs 2 GB of disk, not of RAM.
SPOOL_IN_MEMORY_BYTES = 8 * 1024 * 1024
_ITEM_CODE_SHAPE = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,31}$")


class OutcomeKind(enum.Enum):
    """What became of one instance."""

    STORED = "stored"
    DUPLICATE_IDENTICAL = "duplicate-identical"
    NEW_VERSION = "new-version"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class InstanceOutcome:
    """The per-instance answer of an upload."""

    index: int
    source_name: str
    kind: OutcomeKind
    sop_instance_uid: str = ""
    series_instance_uid: str = ""
    version: int = 0
    size_bytes: int = 0
    sha256: str = ""
    reason: str = ""
    violations: tuple[Violation, ...] = ()


@dataclass(frozen=True, slots=True)
class UploadDeclaration:
    """What the header of an upload declares about the whole study."""

    patient: IdentityDocument
    accession_number: str
    performed_item_code: str


def parse_declaration(
    document_type: str,
    document_number: str,
    issuing_country: str,
    accession_number: str,
    performed_item_code: str,
) -> UploadDeclaration:
    """Validate an upload header; raises :class:`Rejected` with field paths under ``header.``."""
    problems: list[Violation] = []
    patient: IdentityDocument | None = None
    try:
        patient = parse_identity(
            document_type, document_number, issuing_country, field_prefix="header.patient."
        )
    except InvalidIdentity as exc:
        problems.append(Violation(exc.field, str(exc), "INVALID_IDENTITY"))
    accession = accession_number.strip()
    if len(accession) > 64:
        problems.append(Violation("header.accession_number", "at most 64 characters", "TOO_LONG"))
    item_code = performed_item_code.strip().upper()
    if item_code and not _ITEM_CODE_SHAPE.match(item_code):
        problems.append(
            Violation(
                "header.performed_item_code",
                "a catalog item code has capital letters, digits and dashes, e.g. IMG-CT-CHEST",
                "MALFORMED_CODE",
            )
        )
    if problems or patient is None:
        raise Rejected("the upload header is invalid", problems)
    return UploadDeclaration(patient, accession, item_code)


class PendingInstance:
    """An instance whose chunks are arriving: spooled and hashed as they come."""

    def __init__(self, index: int, source_name: str, max_bytes: int) -> None:
        self.index = index
        self.source_name = source_name[:256]
        self.max_bytes = max_bytes
        self.size = 0
        self.problem: Violation | None = None
        self._hash = hashlib.sha256()
        # Not tempfile.SpooledTemporaryFile: its Python-level wrapper costs a call per read, and
        # the header walk makes hundreds of small reads per instance.
        self._spool: BinaryIO = io.BytesIO()
        self._spilled = False

    def write(self, data: bytes, max_chunk: int) -> None:
        """Append a chunk; an oversized chunk or instance marks the instance rejected."""
        if self.problem is not None:
            return
        if len(data) > max_chunk:
            self.problem = Violation(
                "chunk.data",
                f"a chunk of {len(data)} bytes exceeds the limit of {max_chunk} bytes",
                "CHUNK_TOO_LARGE",
            )
        elif self.size + len(data) > self.max_bytes:
            self.problem = Violation(
                "chunk.data",
                f"the instance exceeds the limit of {self.max_bytes} bytes",
                "INSTANCE_TOO_LARGE",
            )
        if self.problem is not None:
            self.close()
            return
        if not self._spilled and self.size + len(data) > SPOOL_IN_MEMORY_BYTES:
            self._spill()
        self._spool.write(data)
        self._hash.update(data)
        self.size += len(data)

    def _spill(self) -> None:
        """Move what is buffered to an anonymous temporary file, which later chunks extend."""
        spilled = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        spilled.write(cast(io.BytesIO, self._spool).getbuffer())
        self._spool.close()
        self._spool = cast(BinaryIO, spilled)
        self._spilled = True

    @property
    def sha256(self) -> str:
        """Hex digest of the bytes received so far."""
        return self._hash.hexdigest()

    @property
    def spool(self) -> BinaryIO:
        """The received bytes, rewound."""
        self._spool.seek(0)
        return self._spool

    def close(self) -> None:
        """Free the buffer or temporary file."""
        self._spool.close()


@dataclass
class _Ensured:
    """Rows this upload has already committed, so later instances skip re-checking them."""

    study_id: int | None = None
    series_ids: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Staged:
    """An instance whose blob is written and whose index rows wait for the batch commit."""

    position: int
    source_name: str
    header: DicomHeader
    record: index.InstanceRecord


# Index rows are committed in batches: one transaction (and one WAL flush) per batch instead of
# per instance. A batch is committed when this many wait, when the stream has nothing more ready,
# and always before the reply, so no instance is acknowledged before its rows are durable.
MAX_BATCH = 64


class StudyUpload:
    """The server side of one UploadStudy stream.

    :meth:`read` parses an instance's header (CPU only), :meth:`finish` validates it and writes
    its blob; :meth:`commit` indexes the staged instances in one transaction. All are blocking
    and must be called one at a time (the servicer runs them in order on worker threads while it
    receives the next instance).
    """

    def __init__(
        self,
        *,
        store: ObjectStore,
        sessions: sessionmaker[Session],
        patient_key_secret: bytes,
        institution_id: int,
        declaration: UploadDeclaration,
        max_instance_bytes: int,
        on_commit: Callable[[Session, str], None] | None = None,
        header_limits: HeaderLimits = DEFAULT_LIMITS,
    ) -> None:
        self.header_limits = header_limits
        self.store = store
        # Runs in every batch's transaction, with the study's UID, after its rows are written:
        # what depends on the study (its recognition rows) commits with the instances or not at
        # all, so no interruption of the stream can leave a held study unrecognized.
        self.on_commit = on_commit
        self.sessions = sessions
        self.institution_id = institution_id
        self.declaration = declaration
        self.patient_key = patient_key(declaration.patient, patient_key_secret)
        self.max_instance_bytes = max_instance_bytes
        self._outcomes: dict[int, InstanceOutcome] = {}
        self._received = 0
        self._staged: list[_Staged] = []
        # The first valid instance fixes the study and the hospital's PatientID of the upload.
        self.study_instance_uid: str | None = None
        self.hospital_patient_id: str | None = None
        self._ensured = _Ensured()
        # Whether the region held no such study when this upload's first instance arrived.
        self._study_was_new: bool | None = None

    @property
    def outcomes(self) -> list[InstanceOutcome]:
        """Outcomes of the instances decided so far, in the order they were sent."""
        return [self._outcomes[i] for i in sorted(self._outcomes)]

    @property
    def batch_full(self) -> bool:
        """Whether the staged instances should be committed now."""
        return len(self._staged) >= MAX_BATCH

    def begin_instance(self, source_name: str) -> PendingInstance:
        """Start receiving the next instance."""
        self._received += 1
        return PendingInstance(self._received - 1, source_name, self.max_instance_bytes)

    def abandon(self, pending: PendingInstance, reason: str) -> None:
        """Record an instance that cannot complete (the stream ended inside it)."""
        pending.close()
        self._record(
            InstanceOutcome(
                pending.index,
                pending.source_name,
                OutcomeKind.REJECTED,
                size_bytes=pending.size,
                reason=reason,
                violations=(Violation("chunk.end_of_instance", reason, "INCOMPLETE_INSTANCE"),),
            )
        )

    def read(self, pending: PendingInstance) -> DicomHeader | None:
        """The header of a completely received instance; None when it is rejected (recorded,
        and the instance dropped). Touches no storage: it runs on the header workers."""
        try:
            if pending.problem is not None:
                raise Rejected(pending.problem.description, [pending.problem])
            return read_header(pending.spool, pending.size, limits=self.header_limits)
        except Rejected as rejection:
            self._reject(
                pending.index,
                pending.source_name,
                rejection,
                pending.size,
                pending.sha256 if pending.problem is None else "",
            )
            pending.close()
            return None
        except BaseException:
            pending.close()
            raise

    def finish(self, pending: PendingInstance, header: DicomHeader) -> None:
        """Validate an instance whose header :meth:`read` parsed and write its blob, or reject
        it."""
        try:
            self._check_belongs_to_upload(header)
            self._stage(pending, header)
        except Rejected as rejection:
            self._reject(
                pending.index, pending.source_name, rejection, pending.size, pending.sha256
            )
        finally:
            pending.close()

    def _reject(
        self, position: int, source_name: str, rejection: Rejected, size: int, sha256: str
    ) -> None:
        self._record(
            InstanceOutcome(
                position,
                source_name,
                OutcomeKind.REJECTED,
                size_bytes=size,
                sha256=sha256,
                reason=rejection.summary,
                violations=tuple(rejection.violations),
            )
        )

    def _record(self, outcome: InstanceOutcome) -> None:
        self._outcomes[outcome.index] = outcome

    def _check_belongs_to_upload(self, header: DicomHeader) -> None:
        if self.study_instance_uid is None:
            self.study_instance_uid = header.study_instance_uid
            self.hospital_patient_id = header.patient_id
            return
        if header.study_instance_uid != self.study_instance_uid:
            raise Rejected.one(
                "an upload carries one study",
                attribute("StudyInstanceUID"),
                f"this upload is for study {self.study_instance_uid}; send "
                f"{header.study_instance_uid} in an upload of its own",
                "SECOND_STUDY",
            )
        # An empty PatientID (anonymised or imported instances) contradicts no other: the
        # patient is the one the upload header declares.
        if not self.hospital_patient_id:
            self.hospital_patient_id = header.patient_id
        if header.patient_id and header.patient_id != self.hospital_patient_id:
            raise Rejected.one(
                "an upload carries one patient",
                attribute("PatientID"),
                f"this upload is for PatientID {self.hospital_patient_id!r}, "
                f"not {header.patient_id!r}",
                "SECOND_PATIENT",
            )

    def _stage(self, pending: PendingInstance, header: DicomHeader) -> None:
        sha256 = pending.sha256
        with self.sessions() as session:
            held = self._precheck(session, header)
        duplicate = next((v for v in held if v.sha256 == sha256), None)
        if duplicate is not None:
            self._record(
                self._outcome(
                    pending.index,
                    pending.source_name,
                    header,
                    pending.size,
                    sha256,
                    OutcomeKind.DUPLICATE_IDENTICAL,
                    duplicate.version,
                )
            )
            return
        # One directory per series; the hash keeps every version of an instance apart.
        key = (
            f"dicom/{header.study_instance_uid}/{header.series_instance_uid}/"
            f"{header.sop_instance_uid}.{sha256}.dcm"
        )
        self.store.put(key, pending.spool, pending.size)
        record = index.InstanceRecord(
            sop_instance_uid=header.sop_instance_uid,
            sop_class_uid=header.sop_class_uid,
            instance_number=header.instance_number,
            transfer_syntax_uid=header.transfer_syntax_uid,
            size_bytes=pending.size,
            sha256=sha256,
            object_key=key,
            institution_id=self.institution_id,
        )
        self._staged.append(_Staged(pending.index, pending.source_name, header, record))

    def commit(self) -> None:
        """Index every staged instance in one transaction and record their outcomes."""
        staged, self._staged = self._staged, []
        if not staged:
            return
        # The blobs' directory entries must be durable before rows point at them.
        self.store.sync()
        try:
            self._commit_batch(staged)
        except index.IndexConflict:
            # A conflict raced past the pre-check (another upload claimed a UID meanwhile): find
            # which instance it concerns by committing one at a time.
            for one in staged:
                try:
                    self._commit_batch([one])
                except index.IndexConflict as conflict:
                    self._drop_unreferenced_blob(one.record.object_key)
                    self._reject(
                        one.position,
                        one.source_name,
                        Rejected.one(str(conflict), conflict.field, str(conflict), "CONFLICT"),
                        one.record.size_bytes,
                        one.record.sha256,
                    )

    def _commit_batch(self, staged: list[_Staged]) -> None:
        ensured = _Ensured(self._ensured.study_id, dict(self._ensured.series_ids))
        outcomes: list[InstanceOutcome] = []
        with self.sessions.begin() as session:
            series_ids = [self._ensure_rows(session, item.header, ensured) for item in staged]
            assert ensured.study_id is not None
            index.lock_study(session, ensured.study_id)
            # Same-SOP instances within one batch must go the slow way, in order.
            seen: set[str] = set()
            fast = []
            for series_id, item in zip(series_ids, staged, strict=True):
                if item.record.sop_instance_uid not in seen:
                    seen.add(item.record.sop_instance_uid)
                    fast.append((series_id, item.record))
            inserted = index.add_first_versions(session, fast)
            for series_id, item in zip(series_ids, staged, strict=True):
                record = item.record
                if (record.sop_instance_uid, record.sha256) in inserted:
                    inserted.discard((record.sop_instance_uid, record.sha256))
                    version, created = 1, True
                else:
                    version, created = index.add_instance_version(session, series_id, record)
                if not created:
                    kind = OutcomeKind.DUPLICATE_IDENTICAL
                else:
                    kind = OutcomeKind.STORED if version == 1 else OutcomeKind.NEW_VERSION
                outcomes.append(
                    self._outcome(
                        item.position,
                        item.source_name,
                        item.header,
                        record.size_bytes,
                        record.sha256,
                        kind,
                        version,
                    )
                )
            index.refresh_study_counts(session, ensured.study_id)
            if self.on_commit is not None:
                self.on_commit(session, staged[0].header.study_instance_uid)
        # Only committed rows may be skipped by later instances.
        self._ensured = ensured
        for outcome in outcomes:
            self._record(outcome)

    def _drop_unreferenced_blob(self, key: str) -> None:
        with self.sessions() as session:
            if not index.object_referenced(session, key):
                self.store.delete(key)

    def _precheck(self, session: Session, header: DicomHeader) -> list[index.HeldVersion]:
        """Read-only conflict checks, before any byte is written to the store.

        For a study the region did not hold when the upload began (the common case) no instance
        can be a duplicate, so the per-instance lookup is skipped; a SOP Instance UID held in
        another study is still caught when the batch is committed.
        """
        if self._study_was_new is True:
            return []
        if self._ensured.study_id is None:
            holder = index.study_holder(session, header.study_instance_uid)
            if self._study_was_new is None:
                self._study_was_new = holder is None
            if holder is not None and holder[0] != self.institution_id:
                raise Rejected.one(
                    "the study belongs to another institution",
                    attribute("StudyInstanceUID"),
                    "this Study Instance UID is held for another institution",
                    "CONFLICT",
                )
            if holder is not None and holder[1] != self.patient_key:
                # Checked before the duplicate test: identical bytes re-sent under another
                # patient are a wrong identity, not a harmless retry.
                raise Rejected.one(
                    "the study is held for another patient",
                    "header.patient",
                    "this study is held for another patient than the one the header declares",
                    "OTHER_PATIENT",
                )
        held = index.held_versions(session, header.sop_instance_uid)
        if held and held[0].series_instance_uid != header.series_instance_uid:
            # The holding series is not named: it may be another institution's.
            raise Rejected.one(
                "the SOP Instance UID is held in another series",
                attribute("SOPInstanceUID"),
                "this SOP Instance UID is held in another series",
                "CONFLICT",
            )
        return held

    def _ensure_rows(self, session: Session, header: DicomHeader, ensured: _Ensured) -> int:
        """The series id of the instance, creating patient, study and series rows on first sight."""
        if ensured.study_id is None:
            index.link_patient(session, self.institution_id, header.patient_id, self.patient_key)
            ensured.study_id = index.ensure_study(
                session,
                index.StudyRecord(
                    study_instance_uid=header.study_instance_uid,
                    patient_key=self.patient_key,
                    institution_id=self.institution_id,
                    accession_number=self.declaration.accession_number or header.accession_number,
                    study_date=header.study_date,
                    date_source=header.date_source,
                    study_time=header.study_time,
                    description=header.study_description,
                    performed_item_code=self.declaration.performed_item_code,
                ),
            )
        series_id = ensured.series_ids.get(header.series_instance_uid)
        if series_id is None:
            series_id = index.ensure_series(
                session,
                ensured.study_id,
                index.SeriesRecord(
                    series_instance_uid=header.series_instance_uid,
                    modality=header.modality,
                    body_part_examined=header.body_part_examined,
                    body_part=header.body_part,
                    contrast_agent=header.contrast_agent,
                    contrast=header.contrast,
                    series_number=header.series_number,
                    description=header.series_description,
                ),
            )
            ensured.series_ids[header.series_instance_uid] = series_id
        return series_id

    @staticmethod
    def _outcome(
        position: int,
        source_name: str,
        header: DicomHeader,
        size: int,
        sha256: str,
        kind: OutcomeKind,
        version: int,
    ) -> InstanceOutcome:
        return InstanceOutcome(
            position,
            source_name,
            kind,
            sop_instance_uid=header.sop_instance_uid,
            series_instance_uid=header.series_instance_uid,
            version=version,
            size_bytes=size,
            sha256=sha256,
        )

    def overview(self) -> StudyOverview | None:
        """The study as the region holds it now (blocking); None unless it is held for this
        institution and the declared patient: the reply never describes someone else's study."""
        if self.study_instance_uid is None:
            return None
        with self.sessions() as session:
            holder = index.study_holder(session, self.study_instance_uid)
            if holder != (self.institution_id, self.patient_key):
                return None
            return index.study_overview(session, self.study_instance_uid)
