"""The SQL index: institutions, credentials, patients, imaging studies and lab results.

Idempotency lives in the unique constraints here, not in "check then insert": concurrent uploads
of the same instance race on ``uq_instance_sop_sha256`` and exactly one wins.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Time,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names, so migrations can refer to them on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Institution(Base):
    """A hospital or other medical institution taking part in recognition."""

    __tablename__ = "institution"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    district: Mapped[str] = mapped_column(String(64))
    # tertiary / secondary / primary: decides recognition scope between levels.
    level: Mapped[str] = mapped_column(String(16))
    # Where a qualification's scope (city / region) reaches: a city and a cross-province region.
    city: Mapped[str] = mapped_column(String(32), server_default="chongqing")
    region: Mapped[str] = mapped_column(String(32), server_default="chengdu-chongqing")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ApiKey(Base):
    """A credential: the public ``key_id`` finds it, a SHA-256 of the secret proves it."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institution.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Patient(Base):
    """A patient, known only by the keyed hash of their identity document."""

    __tablename__ = "patient"

    patient_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class PatientIdentifier(Base):
    """A hospital's own patient number (MRN, DICOM PatientID) for a patient."""

    __tablename__ = "patient_identifier"

    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"), primary_key=True)
    local_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_key: Mapped[str] = mapped_column(ForeignKey("patient.patient_key"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Study(Base):
    """An imaging study, owned by the institution that first uploaded it."""

    __tablename__ = "study"
    # A patient's history, newest first, is one range scan of this index (keyset paging).
    __table_args__ = (Index("ix_study_patient_started", "patient_key", "started_at", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_key: Mapped[str] = mapped_column(ForeignKey("patient.patient_key"))
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"), index=True)
    accession_number: Mapped[str] = mapped_column(String(64))
    study_date: Mapped[dt.date] = mapped_column(Date)
    study_time: Mapped[dt.time | None] = mapped_column(Time)
    description: Mapped[str] = mapped_column(String(256))
    performed_item_code: Mapped[str] = mapped_column(String(32))
    # Study date and time as one local (Asia/Shanghai) wall-clock value, midnight when the time
    # is unknown: the sort key of a patient's history.
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=False))
    # Kept by ingest in the transaction that adds instances, so listing a patient's history
    # reads no instance rows. Current versions only.
    series_count: Mapped[int] = mapped_column(Integer, server_default="0")
    instance_count: Mapped[int] = mapped_column(Integer, server_default="0")
    size_bytes: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    # The attribute ``study_date`` was read from (StudyDate, else SeriesDate, AcquisitionDate,
    # ContentDate); empty when the instances carry no date, and ``study_date`` holds
    # imaging_index.UNDATED (a NOT NULL column cannot become nullable without rebuilding the
    # table SQLite-side, which the foreign keys to it forbid).
    date_source: Mapped[str] = mapped_column(String(16), server_default="StudyDate")
    # An administrator's word on a declared item that contradicts the images: "" (none needed
    # or not yet given), "confirmed" (the declared item stands) or "overruled" (the header does).
    declared_item_review: Mapped[str] = mapped_column(String(16), server_default="")
    # Why the study is not recognized (no date; a declared item awaiting review); empty when it
    # is. Kept by ingest with the recognition rows.
    not_recognized_reason: Mapped[str] = mapped_column(String(512), server_default="")


class UnlinkedStudy(Base):
    """A study held unlinked: a PACS sent it over C-STORE with a PatientID its institution had
    linked to no patient and no identity document. Its instances are stored and indexed under a
    holding patient key (:func:`mutualrec.storage.imaging_index.holding_key`), which no
    identity document hashes to, so it is in no one's history and recognized for no one; the
    row goes when the hospital links the PatientID (LinkPatient, or an upload carrying both)."""

    __tablename__ = "unlinked_study"
    __table_args__ = (
        # The hospital's listing (newest first) and linking (every study of one PatientID).
        Index("ix_unlinked_study_institution_patient", "institution_id", "local_patient_id"),
    )

    study_id: Mapped[int] = mapped_column(
        ForeignKey("study.id"), primary_key=True, autoincrement=False
    )
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"))
    # The hospital's PatientID (0010,0020), as the instances carry it.
    local_patient_id: Mapped[str] = mapped_column(String(64))
    held_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Series(Base):
    """A series of a study, with the attributes matching reads (modality, body part, contrast)."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    modality: Mapped[str] = mapped_column(String(16))
    body_part_examined: Mapped[str] = mapped_column(String(64))
    body_part: Mapped[str] = mapped_column(String(32))
    contrast_agent: Mapped[str] = mapped_column(String(128))
    contrast: Mapped[bool] = mapped_column()
    series_number: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Instance(Base):
    """One version of one SOP instance; a re-send with other bytes adds a version."""

    __tablename__ = "instance"
    __table_args__ = (
        UniqueConstraint("sop_instance_uid", "version"),
        UniqueConstraint("sop_instance_uid", "sha256"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    instance_number: Mapped[int | None] = mapped_column(Integer)
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    object_key: Mapped[str] = mapped_column(String(400), unique=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"))
    received_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=_now, server_default=func.now()
    )


class LabResult(Base):
    """A lab result's identity within its institution, and which version is current.

    ``identity`` is ``identifier|<system>|<value>`` or ``id|<id>``: the unique constraint on
    (institution, identity) is what makes 8 clients sending one bundle leave one result.
    """

    __tablename__ = "lab_result"
    __table_args__ = (UniqueConstraint("institution_id", "identity"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"))
    identity: Mapped[str] = mapped_column(String(300))
    patient_key: Mapped[str] = mapped_column(ForeignKey("patient.patient_key"))
    current_version: Mapped[int] = mapped_column(Integer)
    current_status: Mapped[str] = mapped_column(String(24))
    current_sha256: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class LabResultVersion(Base):
    """One version of a lab result, normalized; history is never rewritten.

    Decimals are kept as their FHIR text so "4.10" stays "4.10" on every database.
    ``document_key`` and ``entry_index`` find the original JSON, byte for byte.
    """

    __tablename__ = "lab_result_version"
    __table_args__ = (
        UniqueConstraint("lab_result_id", "version"),
        UniqueConstraint("lab_result_id", "content_sha256"),
        Index("ix_lab_result_version_patient_time", "patient_key", "report_time"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    lab_result_id: Mapped[int] = mapped_column(ForeignKey("lab_result.id"))
    version: Mapped[int] = mapped_column(Integer)
    content_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24))
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"))
    patient_key: Mapped[str] = mapped_column(ForeignKey("patient.patient_key"))
    loinc: Mapped[str] = mapped_column(String(16))
    other_loinc: Mapped[str] = mapped_column(String(200))
    local_system: Mapped[str] = mapped_column(String(200))
    local_code: Mapped[str] = mapped_column(String(64))
    code_text: Mapped[str] = mapped_column(String(200))
    value_kind: Mapped[str] = mapped_column(String(24))
    value_decimal: Mapped[str | None] = mapped_column(String(40))
    value_unit: Mapped[str] = mapped_column(String(64))
    value_text: Mapped[str] = mapped_column(String(1000))
    value_code_system: Mapped[str] = mapped_column(String(200))
    value_code: Mapped[str] = mapped_column(String(64))
    value_low: Mapped[str | None] = mapped_column(String(40))
    value_high: Mapped[str | None] = mapped_column(String(40))
    reference_low: Mapped[str | None] = mapped_column(String(40))
    reference_high: Mapped[str | None] = mapped_column(String(40))
    reference_text: Mapped[str] = mapped_column(String(200))
    interpretation: Mapped[str] = mapped_column(String(64))
    specimen_collected_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    effective_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    issued_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    report_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    report_ref: Mapped[str] = mapped_column(String(300))
    document_key: Mapped[str] = mapped_column(String(200))
    entry_index: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # The groups (report, panel) the version came in: see mutualrec.ingest.lab_result.groups_text.
    result_groups: Mapped[str] = mapped_column(Text, server_default="")


class CatalogVersion(Base):
    """A loaded version of the recognition catalog; versions are kept for the record."""

    __tablename__ = "catalog_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(32), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    source_text: Mapped[str] = mapped_column(Text)
    loaded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class CodeMapping(Base):
    """An institution's local order, charge or result code and the catalog items it stands for.

    ``item_codes`` is ';'-separated: a panel expands to several items; empty means the code is
    known and deliberately maps to no recognized item.
    """

    __tablename__ = "code_mapping"

    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"), primary_key=True)
    local_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    item_codes: Mapped[str] = mapped_column(String(400))
    description: Mapped[str] = mapped_column(String(200))
    loaded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Qualification(Base):
    """A period during which an institution held the "HR" mark for an item or a category."""

    __tablename__ = "qualification"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"), index=True)
    item_code: Mapped[str | None] = mapped_column(String(32))
    category: Mapped[str | None] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(16))
    valid_from: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ItemPrice(Base):
    """An institution's own price of a catalog item (yuan, decimal text)."""

    __tablename__ = "item_price"

    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"), primary_key=True)
    item_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    price: Mapped[str] = mapped_column(String(20))
    loaded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ReindexCheckpoint(Base):
    """How far a re-index of the lab results under one catalog version got."""

    __tablename__ = "reindex_checkpoint"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    catalog_version: Mapped[str] = mapped_column(String(32))
    catalog_sha256: Mapped[str] = mapped_column(String(64))
    last_lab_result_id: Mapped[int] = mapped_column(BigInteger)
    results: Mapped[int] = mapped_column(BigInteger)
    rows_added: Mapped[int] = mapped_column(BigInteger)
    rows_removed: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class RecognitionResult(Base):
    """A result as recognition reads it: one row per (result, catalog item), current version.

    Kept up to date by ingest, so the ordering-time check is one indexed read per patient.
    ``detail`` is JSON with what the doctor sees (value and range, or the study summary).
    """

    __tablename__ = "recognition_result"
    __table_args__ = (
        UniqueConstraint("result_ref", "item_code"),
        Index("ix_recognition_result_patient_item", "patient_key", "item_code"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    patient_key: Mapped[str] = mapped_column(String(64))
    item_code: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(8))
    result_ref: Mapped[str] = mapped_column(String(80))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24))
    report_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"))
    detail: Mapped[str] = mapped_column(Text)
    # When a lab result's specimen was collected: where its window starts under a
    # collection-anchored region policy. None for studies and rows indexed before 0012.
    collected_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class RegionPolicyVersion(Base):
    """A loaded version of the region's policy file; the last loaded is in force."""

    __tablename__ = "region_policy_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(32), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    source_text: Mapped[str] = mapped_column(Text)
    loaded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class RecognitionCheck(Base):
    """One ordering-time check, as received: who asked, for whom, when."""

    __tablename__ = "recognition_check"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # No foreign key to institution, on purpose: every check of a hospital would take a share
    # lock on that hospital's row, and PostgreSQL turns concurrent share lockers into MultiXacts
    # (measured: the line inserts became the slowest statement at 300 checks/s).
    institution_id: Mapped[int] = mapped_column(Integer, index=True)
    patient_key: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    catalog_version: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[str] = mapped_column(String(64))
    department: Mapped[str] = mapped_column(String(64))
    emergency: Mapped[bool] = mapped_column()


class CheckLine(Base):
    """One line of a check: the ordered code, the item, the verdict and the result cited."""

    __tablename__ = "check_line"
    # Which checks recognized a study: a hospital opens a study only through such a line. Partial,
    # so the lines that recognize nothing (most of them) cost the check's insert no index entry.
    __table_args__ = (
        Index(
            "ix_check_line_recognized_ref",
            "result_ref",
            postgresql_where=text("verdict = 'RECOGNIZABLE'"),
            sqlite_where=text("verdict = 'RECOGNIZABLE'"),
        ),
    )

    check_id: Mapped[str] = mapped_column(ForeignKey("recognition_check.id"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    ordered_code: Mapped[str] = mapped_column(String(64))
    item_code: Mapped[str] = mapped_column(String(32))
    verdict: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(String(500))
    result_ref: Mapped[str] = mapped_column(String(80))
    result_version: Mapped[int] = mapped_column(Integer)
    # No foreign key, like RecognitionCheck.institution_id: institutions are never deleted.
    issuer_institution_id: Mapped[int | None] = mapped_column(Integer)
    estimated_saving: Mapped[str] = mapped_column(String(20))


class Decision(Base):
    """The doctor's decision on a check line; the primary key makes it happen once."""

    __tablename__ = "decision"

    check_id: Mapped[str] = mapped_column(primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    accepted: Mapped[bool] = mapped_column()
    reason: Mapped[str] = mapped_column(String(40))
    reason_text: Mapped[str] = mapped_column(String(500))
    booked_saving: Mapped[str] = mapped_column(String(20))
    decided_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    __table_args__ = (
        ForeignKeyConstraint(["check_id", "line"], ["check_line.check_id", "check_line.line"]),
    )


class TallyCounters:
    """The counters a tally and a delta both hold."""

    checks: Mapped[int] = mapped_column(BigInteger)
    items_checked: Mapped[int] = mapped_column(BigInteger)
    items_recognizable: Mapped[int] = mapped_column(BigInteger)
    accepted: Mapped[int] = mapped_column(BigInteger)
    declined: Mapped[int] = mapped_column(BigInteger)
    saving_fen: Mapped[int] = mapped_column(BigInteger)
    # Declines per reason (statistics.tally.REASON_COLUMNS); ``declined`` is their sum.
    declined_condition_changed: Mapped[int] = mapped_column(BigInteger)
    declined_fast_changing_value: Mapped[int] = mapped_column(BigInteger)
    declined_before_surgery_or_transfusion: Mapped[int] = mapped_column(BigInteger)
    declined_emergency: Mapped[int] = mapped_column(BigInteger)
    declined_forensic_assessment: Mapped[int] = mapped_column(BigInteger)
    declined_patient_request: Mapped[int] = mapped_column(BigInteger)
    declined_issuer_failed_quality_assessment: Mapped[int] = mapped_column(BigInteger)
    declined_image_quality: Mapped[int] = mapped_column(BigInteger)
    declined_body_part_mismatch: Mapped[int] = mapped_column(BigInteger)
    declined_other: Mapped[int] = mapped_column(BigInteger)
    declined_unspecified: Mapped[int] = mapped_column(BigInteger)
    # The asking institution's own results among the recognizable, accepted and saved (0 in
    # tallies made before migration 0013 until the statistics are rebuilt).
    items_recognizable_own: Mapped[int] = mapped_column(BigInteger, server_default="0")
    accepted_own: Mapped[int] = mapped_column(BigInteger, server_default="0")
    saving_fen_own: Mapped[int] = mapped_column(BigInteger, server_default="0")


class StatTally(TallyCounters, Base):
    """What one group did on one Asia/Shanghai day, for one grouping: the compacted counters.

    ``group_key`` is the group's stable key (a district, an institution code, ``ISSUER>ASKER``,
    an item code, a category). ``saving_fen`` is the booked saving in fen (0.01 yuan), so sums
    stay exact in SQL; declines are counted per reason, a column each
    (:data:`~mutualrec.statistics.tally.REASON_COLUMNS`), ``declined`` being their sum.
    """

    __tablename__ = "stat_tally"

    group_by: Mapped[str] = mapped_column(String(24), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    group_key: Mapped[str] = mapped_column(String(80), primary_key=True)


class StatTallyMonth(TallyCounters, Base):
    """A calendar month of one group's day tallies, summed; kept with them by the compactor.

    A report by month over a year reads 12 rows per group here instead of 365 day rows (by
    asking institution: 13,000 rows instead of 365,000). ``month`` is the month's first day.
    """

    __tablename__ = "stat_tally_month"

    group_by: Mapped[str] = mapped_column(String(24), primary_key=True)
    month: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    group_key: Mapped[str] = mapped_column(String(80), primary_key=True)


class StatDelta(TallyCounters, Base):
    """Counters a check or a decision adds to a tally, appended in its own transaction.

    Appending instead of updating the tally keeps concurrent checks from queueing on the same
    hot rows (every check of a day adds to its category's row); the compactor folds deltas into
    ``stat_tally`` every few seconds, and reports add the deltas not yet folded.
    """

    __tablename__ = "stat_delta"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    group_by: Mapped[str] = mapped_column(String(24))
    day: Mapped[dt.date] = mapped_column(Date)
    group_key: Mapped[str] = mapped_column(String(80))


class ShareLink(Base):
    """A patient's read-only link to one study, for a doctor; only the token's hash is kept."""

    __tablename__ = "share_link"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    patient_key: Mapped[str] = mapped_column(String(64), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    note: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ShareOpening(Base):
    """One call made with a share link: the patient sees who opened what, and when."""

    __tablename__ = "share_opening"
    __table_args__ = (Index("ix_share_opening_link_time", "link_id", "opened_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    link_id: Mapped[str] = mapped_column(ForeignKey("share_link.id"))
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    rpc: Mapped[str] = mapped_column(String(32))
    peer: Mapped[str] = mapped_column(String(100))


class AuditChain(Base):
    """One hash chain of the audit trail: each server process appends to its own."""

    __tablename__ = "audit_chain"

    chain_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))


class AuditEntry(Base):
    """Who read or wrote which patient's data, when, through which call, with what outcome.

    Append-only (PostgreSQL refuses UPDATE and DELETE by trigger); ``entry_hash`` chains each
    entry to the one before it in its chain, so an edited or removed entry is detected.
    """

    __tablename__ = "audit_entry"
    __table_args__ = (
        UniqueConstraint("chain_id", "seq"),
        Index("ix_audit_entry_patient_id", "patient_key", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    chain_id: Mapped[str] = mapped_column(ForeignKey("audit_chain.chain_id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    role: Mapped[str] = mapped_column(String(16))
    # The API key id, share link id or patient token id the call was made with.
    credential: Mapped[str] = mapped_column(String(40))
    # No foreign key: like checks, an audit row must not lock the institution's row.
    institution_id: Mapped[int | None] = mapped_column(Integer)
    patient_key: Mapped[str] = mapped_column(String(64))
    rpc: Mapped[str] = mapped_column(String(64))
    what: Mapped[str] = mapped_column(String(300))
    outcome: Mapped[str] = mapped_column(String(24))
    peer: Mapped[str] = mapped_column(String(100))
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class AdminChange(Base):
    """One row counting administrators' changes: servers poll it to drop their caches."""

    __tablename__ = "admin_change"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)


class DicomPeer(Base):
    """A hospital PACS allowed to send over DICOM: its calling AE title names its institution.

    One AE title names one institution region-wide: the title is all an association says about
    who calls. An empty ``address`` accepts the title from any address.
    """

    __tablename__ = "dicom_peer"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"), index=True)
    address: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class CdsClient(Base):
    """An EHR allowed to call the CDS Hooks services: the ``iss`` of its JWTs names its
    institution, and its public keys (a JWKS) verify them.

    One issuer names one institution region-wide: the issuer is what a JWT says about who
    calls, as an AE title is for DICOM.
    """

    __tablename__ = "cds_client"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer: Mapped[str] = mapped_column(String(255), unique=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"), index=True)
    # The public keys as a JSON Web Key Set (RFC 7517), whatever form the administrator gave.
    jwks: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class CdsTokenUse(Base):
    """A CDS client's JWT id (``jti``) seen already, kept until the token expires: a token
    replayed within its lifetime is refused, by every server process alike."""

    __tablename__ = "cds_token_use"
    __table_args__ = (UniqueConstraint("issuer", "jti"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer: Mapped[str] = mapped_column(String(255))
    jti: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class WebSession(Base):
    """A browser's sign-in: the credential it was opened with, summed up as the principal it
    names, kept only as the hash of the cookie's random id. Rows of a revoked link or key stay
    until they expire; every use checks the credential again."""

    __tablename__ = "web_session"

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    # The API key's id or the share link's id ("patient-token" for a patient token).
    key_id: Mapped[str] = mapped_column(String(32), index=True)
    institution_id: Mapped[int | None] = mapped_column(Integer)
    institution_code: Mapped[str | None] = mapped_column(String(64))
    patient_key: Mapped[str | None] = mapped_column(String(64))
    shared_study_id: Mapped[int | None] = mapped_column(Integer)
    # A doctor's study link: the check that recognized the one study it opens.
    check_id: Mapped[str | None] = mapped_column(String(64))
    checked_study_uid: Mapped[str | None] = mapped_column(String(64))
    # Where the browser goes once signed in (a share link's study in the viewer).
    landing: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
