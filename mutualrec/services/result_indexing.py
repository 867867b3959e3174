"""The one path that keeps the recognition index: rows of held results, DICOM and FHIR alike.

Every writer (a study upload's batch, a lab submission, an administrator's review, a re-index)
calls these inside the transaction that stores the result, so a result and its index rows
commit together: no interruption can leave a held result unrecognized.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from sqlalchemy.orm import Session

from mutualrec.ingest.lab_result import LabResult
from mutualrec.ingest.study_records import StudyOverview
from mutualrec.matching.catalog import Catalog
from mutualrec.matching.codes import items_for_lab_result
from mutualrec.matching.indexed_results import ResultItems
from mutualrec.recognition.result_items import (
    detail_for_item,
    study_detail,
    study_items,
    study_recognition,
    study_ref,
)
from mutualrec.security.audit import touched
from mutualrec.services.reference import ReferenceCache
from mutualrec.storage import imaging_index, recognition_index

# Why a study held unlinked is not recognized.
UNLINKED_REASON = (
    "held unlinked: the hospital's PatientID names no patient yet; link it with LinkPatient"
)
ItemsOf = Callable[[LabResult], frozenset[str]]
DetailOf = Callable[[LabResult, str], str]


class ResultIndexing:
    """What a writer needs to know to index results: the catalog and the hospitals' code
    mappings, read from the reference cache (outside any write transaction: on SQLite a second
    connection would wait for the write lock that very transaction holds)."""

    def __init__(self, reference: ReferenceCache) -> None:
        self.reference = reference

    def catalog(self) -> Catalog:
        """The current catalog (blocking on a cache miss)."""
        return self.reference.data().catalog

    def lab_mappers(self, institution_id: int) -> tuple[ItemsOf, DetailOf]:
        """The catalog items of the institution's lab results (by LOINC, else its local codes),
        and what a doctor sees of a result as one item (its value in the item's unit, or the
        panel it carries); blocking on a cache miss."""
        catalog = self.catalog()
        mapping = self.reference.mappings(institution_id)

        def items_of(result: LabResult) -> frozenset[str]:
            if not result.has_value:
                return frozenset()
            local = [coding.code for coding in result.local_codes]
            return items_for_lab_result(result.loinc, local, mapping, catalog, result.groups)

        return items_of, detail_for_item(catalog)


def index_study(session: Session, study_instance_uid: str, catalog: Catalog) -> None:
    """Bring a study's index rows and its not-recognized reason up to date.

    It is final once held. A study without a date is no item; one whose declared item
    contradicts its images is held for that item (a row a check explains, never recognizes).
    """
    overview = imaging_index.study_overview(session, study_instance_uid)
    parties = imaging_index.study_parties(session, study_instance_uid)
    if overview is None or parties is None:
        return
    if imaging_index.is_holding_key(parties.patient_key):
        # Held unlinked: recognized for no one until linked (which indexes it again).
        if overview.not_recognized_reason != UNLINKED_REASON:
            imaging_index.set_not_recognized_reason(session, study_instance_uid, UNLINKED_REASON)
        return
    items, status, reason = study_recognition(overview, parties.series, catalog)
    if reason != overview.not_recognized_reason:
        imaging_index.set_not_recognized_reason(session, study_instance_uid, reason)
    if overview.study_date is not None:
        recognition_index.upsert_results(
            session,
            [study_items(overview, parties.patient_key, parties.institution_id, items, status)],
        )
    recognition_index.drop_stale_items(session, {study_ref(study_instance_uid): items})


def refresh_study_detail(session: Session, study_instance_uid: str) -> None:
    """Bring the detail of a study's index rows up to date after instances were added to it
    while nothing :func:`index_study` derives its items, status and reason from changed (its
    date, declared item, review, patient, series): only the instance count the detail shows
    moved. A fraction of :func:`index_study`'s work, none of it growing with the study."""
    overview = imaging_index.study_overview(session, study_instance_uid)
    if overview is None or overview.study_date is None:
        # An undated study is no item: it has no rows.
        return
    # A study held unlinked has no rows either: the update then touches none.
    recognition_index.set_detail(session, study_ref(study_instance_uid), study_detail(overview))


def adopt_unlinked(
    session: Session, institution_id: int, local_id: str, patient_key: str, catalog: Catalog
) -> list[str]:
    """Give the patient every study the institution holds unlinked under its PatientID
    ``local_id`` (already linked to the patient) and index them as an upload would: they enter
    the patient's history and are recognized from now on. Their Study Instance UIDs."""
    if not local_id:
        return []
    adopted = imaging_index.adopt_unlinked(session, institution_id, local_id, patient_key)
    for uid in adopted:
        index_study(session, uid, catalog)
    if adopted:
        touched(patient_key, f"{len(adopted)} studies held unlinked as {local_id!r} linked")
    return adopted


def index_lab_results(
    session: Session, results: Sequence[ResultItems], held_before: Collection[str]
) -> None:
    """Write the index rows of lab results' newest versions; a result held before this
    transaction (its ref in ``held_before``) also loses the rows of items it no longer is."""
    recognition_index.upsert_results(session, results)
    recognition_index.drop_stale_items(
        session,
        {
            r.result_ref: [code for code, _ in r.details]
            for r in results
            if r.result_ref in held_before
        },
    )


def review_declared_item(
    session: Session, study_instance_uid: str, confirmed: bool, catalog: Catalog
) -> StudyOverview | None:
    """An administrator's word on a study's declared item: it stands (``confirmed``) or the
    header does. Re-indexes the study; None when no such study is held."""
    review = "confirmed" if confirmed else "overruled"
    if not imaging_index.set_declared_item_review(session, study_instance_uid, review):
        return None
    index_study(session, study_instance_uid, catalog)
    return imaging_index.study_overview(session, study_instance_uid)
