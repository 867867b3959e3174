"""The pure parts of an imaging study upload: the header's declaration, instances spooled as
their chunks arrive, the rule that an upload carries one study of one patient, and the
per-instance outcomes. Storing and indexing is :mod:`mutualrec.services.study_upload`'s."""

from __future__ import annotations

import enum
import hashlib
import io
import re
import tempfile
from dataclasses import dataclass
from typing import BinaryIO, cast

from mutualrec.identity import IdentityDocument, InvalidIdentity, parse_identity
from mutualrec.ingest.dicom_header import DicomHeader, attribute, read_header
from mutualrec.ingest.dicom_limits import HeaderLimits
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
    # What DICOMweb's STOW-RS answer names per instance (empty where the header was unreadable).
    study_instance_uid: str = ""
    sop_class_uid: str = ""
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
    """An instance whose chunks are arriving.

    Receiving only keeps each chunk (no copy, no hash): it runs on the event loop, which also
    receives every other stream. The bytes are joined and hashed once, when first asked for
    (:attr:`spool`, :attr:`sha256`), which the header threads do after the last chunk. An
    instance larger than :data:`SPOOL_IN_MEMORY_BYTES` spills to a temporary file as it
    arrives, hashed as it goes.
    """

    def __init__(self, index: int, source_name: str, max_bytes: int) -> None:
        self.index = index
        self.source_name = source_name[:256]
        self.max_bytes = max_bytes
        self.size = 0
        self.problem: Violation | None = None
        self._hash = hashlib.sha256()
        # The chunks received, until joined into the spool (None once joined or spilled).
        self._chunks: list[bytes] | None = []
        # Not tempfile.SpooledTemporaryFile: its Python-level wrapper costs a call per read, and
        # the header walk makes hundreds of small reads per instance.
        self._spool: BinaryIO | None = None
        self._digest: str | None = None

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
        self.size += len(data)
        if self._chunks is not None:
            self._chunks.append(bytes(data))
            if self.size > SPOOL_IN_MEMORY_BYTES:
                self._spill(self._chunks)
            return
        assert self._spool is not None
        assert self._digest is None, "written after it was read"
        self._spool.write(data)
        self._hash.update(data)

    def _spill(self, chunks: list[bytes]) -> None:
        """Move what is kept to an anonymous temporary file, which later chunks extend."""
        spilled = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        for chunk in chunks:
            spilled.write(chunk)
            self._hash.update(chunk)
        self._spool = cast(BinaryIO, spilled)
        self._chunks = None

    def _join(self) -> BinaryIO:
        """The spool, joining and hashing the chunks kept in memory on first use."""
        if self._chunks is not None:
            chunks, self._chunks = self._chunks, None
            for chunk in chunks:
                self._hash.update(chunk)
            # One chunk is wrapped without a copy (BytesIO shares an initial bytes object).
            self._spool = io.BytesIO(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        assert self._spool is not None
        return self._spool

    @property
    def sha256(self) -> str:
        """Hex digest of the bytes received (no more may be written once it is asked for)."""
        if self._digest is None:
            self._join()
            self._digest = self._hash.hexdigest()
        return self._digest

    @property
    def spool(self) -> BinaryIO:
        """The received bytes, rewound."""
        spool = self._join()
        spool.seek(0)
        return spool

    def close(self) -> None:
        """Free the buffer or temporary file."""
        self._chunks = None
        if self._spool is None:
            self._spool = io.BytesIO()
        self._spool.close()


def read_instance(pending: PendingInstance, limits: HeaderLimits) -> DicomHeader:
    """The header of a completely received instance; raises :class:`Rejected` when the
    instance broke a size limit on arrival or its header is unacceptable."""
    if pending.problem is not None:
        raise Rejected(pending.problem.description, [pending.problem])
    return read_header(pending.spool, pending.size, limits=limits)


class UploadScope:
    """The one study and the one hospital patient an upload carries: the first valid instance
    fixes them, every later one must agree."""

    def __init__(self, study_instance_uid: str | None = None) -> None:
        # Set ahead when the sender names the study (STOW-RS to /studies/{study}).
        self.study_instance_uid = study_instance_uid
        self.hospital_patient_id: str | None = None
        self._admitted = False

    def admit(self, header: DicomHeader) -> None:
        """Accept ``header`` into the upload, or raise :class:`Rejected` saying why not."""
        if self.study_instance_uid is None:
            self.study_instance_uid = header.study_instance_uid
        if header.study_instance_uid != self.study_instance_uid and not self._admitted:
            raise Rejected.one(
                "the instance is not of the study the request names",
                attribute("StudyInstanceUID"),
                f"the request is for study {self.study_instance_uid}, this instance is of "
                f"{header.study_instance_uid}",
                "STUDY_MISMATCH",
            )
        if not self._admitted:
            self._admitted = True
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


def rejected_outcome(
    position: int,
    source_name: str,
    rejection: Rejected,
    size: int,
    sha256: str,
    header: DicomHeader | None = None,
) -> InstanceOutcome:
    """The outcome of an instance refused for ``rejection`` (``header``: what it said it was,
    when it was readable)."""
    return InstanceOutcome(
        position,
        source_name,
        OutcomeKind.REJECTED,
        sop_instance_uid=header.sop_instance_uid if header else "",
        series_instance_uid=header.series_instance_uid if header else "",
        study_instance_uid=header.study_instance_uid if header else "",
        sop_class_uid=header.sop_class_uid if header else "",
        size_bytes=size,
        sha256=sha256,
        reason=rejection.summary,
        violations=tuple(rejection.violations),
    )


def incomplete_outcome(pending: PendingInstance, reason: str) -> InstanceOutcome:
    """The outcome of an instance the stream ended inside of."""
    return InstanceOutcome(
        pending.index,
        pending.source_name,
        OutcomeKind.REJECTED,
        size_bytes=pending.size,
        reason=reason,
        violations=(Violation("chunk.end_of_instance", reason, "INCOMPLETE_INSTANCE"),),
    )


def instance_outcome(
    position: int,
    source_name: str,
    header: DicomHeader,
    size: int,
    sha256: str,
    kind: OutcomeKind,
    version: int,
) -> InstanceOutcome:
    """The outcome of an instance held (stored, a new version, or already held as sent)."""
    return InstanceOutcome(
        position,
        source_name,
        kind,
        sop_instance_uid=header.sop_instance_uid,
        series_instance_uid=header.series_instance_uid,
        study_instance_uid=header.study_instance_uid,
        sop_class_uid=header.sop_class_uid,
        version=version,
        size_bytes=size,
        sha256=sha256,
    )
