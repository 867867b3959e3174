"""A study's counts and recognition rows as C-STORE keeps them commit by commit (incremented,
only the rows' detail rewritten when nothing else changed) are exactly what a full recount and
re-index give: after later instances, a series new mid-study, a new version of an instance, a
duplicate, a conflict, and over concurrent associations. Real associations, PostgreSQL."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]
from sqlalchemy import select

from mutualrec.services.result_indexing import UNLINKED_REASON, index_study
from mutualrec.storage import imaging_index
from mutualrec.storage.models import RecognitionResult, Study
from tests.conftest import SAMPLES, RunningServer
from tests.integration.test_dicom_group_commit import (  # noqa: F401 - door is a fixture
    OUR_TITLE,
    PACS,
    SUCCESS,
    _uid,
    door,
)

# A duplicate, or an instance held unlinked: a warning.
WARNING = 0xB000


@dataclass(frozen=True, slots=True)
class StudyState:
    """What a study's counts and recognition rows say."""

    series_count: int
    instance_count: int
    size_bytes: int
    reason: str
    rows: frozenset[tuple[str, str, str, str]]


class Sender:
    """Instances of one study (the sample CT's) sent by a PACS over real associations."""

    def __init__(self, server: RunningServer, manifest: dict[str, Any]) -> None:
        self.door = server
        study = manifest["ct_chest_contrast_hosp_a"]
        server.add_hospital(study["institution_code"])
        server.runtime.dicom_peers.add(study["institution_code"], PACS, "")
        self.template = pydicom.dcmread(SAMPLES / study["files"][0]["path"])
        self.document = study["patient"]["document_number"]
        self.study_uid = str(self.template.StudyInstanceUID)
        self.ae = AE(ae_title=PACS)
        self.ae.add_requested_context(CTImageStorage)

    def associate(self) -> Association:
        assert self.door.dicom is not None
        association = self.ae.associate("127.0.0.1", self.door.dicom.port, ae_title=OUR_TITLE)
        assert association.is_established
        return association

    def instance(
        self, series_uid: str, sop_uid: str, comment: str = "", document: bool = True
    ) -> Dataset:
        """An instance of the study; without ``document`` it carries only the hospital's
        PatientID (held unlinked until the PatientID is linked)."""
        ds = copy.deepcopy(self.template)
        if document:
            item = Dataset()
            item.PatientID = self.document
            item.IssuerOfPatientID = "RESIDENT_ID_CARD"
            ds.OtherPatientIDsSequence = [item]
        ds.SeriesInstanceUID = UID(series_uid)
        ds.SOPInstanceUID = UID(sop_uid)
        ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
        if comment:
            # Other bytes under the same SOP Instance UID: a new version.
            ds.ImageComments = comment
        return ds

    def state(self) -> StudyState:
        """The study as the index holds it."""
        with self.door.runtime.sessions() as session:
            return _read_state(session, self.study_uid)

    def recounted(self) -> StudyState:
        """The study as a full recount and re-index make it (rolled back afterwards)."""
        catalog = self.door.runtime.reference.data().catalog
        with self.door.runtime.sessions() as session:
            study_id = session.scalar(
                select(Study.id).where(Study.study_instance_uid == self.study_uid)
            )
            assert study_id is not None
            # Start from nothing, so only what the recount writes is compared.
            session.query(RecognitionResult).filter(
                RecognitionResult.result_ref == f"study:{self.study_uid}"
            ).delete()
            session.query(Study).filter(Study.id == study_id).update(
                {"series_count": 0, "instance_count": 0, "size_bytes": 0}
            )
            imaging_index.refresh_study_counts(session, study_id)
            index_study(session, self.study_uid, catalog)
            state = _read_state(session, self.study_uid)
            session.rollback()
        return state


def _read_state(session: Any, study_uid: str) -> StudyState:
    study = session.scalars(select(Study).where(Study.study_instance_uid == study_uid)).one()
    rows = session.execute(
        select(
            RecognitionResult.patient_key,
            RecognitionResult.item_code,
            RecognitionResult.status,
            RecognitionResult.detail,
        ).where(RecognitionResult.result_ref == f"study:{study_uid}")
    ).all()
    return StudyState(
        study.series_count,
        study.instance_count,
        study.size_bytes,
        study.not_recognized_reason,
        frozenset(tuple(row) for row in rows),
    )


def _store(association: Association, ds: Dataset) -> int:
    return int(association.send_c_store(ds).Status)


def _check(sender: Sender, series: int, instances: int, unlinked: bool = False) -> StudyState:
    state = sender.state()
    assert (state.series_count, state.instance_count) == (series, instances)
    assert state == sender.recounted()
    if unlinked:
        assert state.reason == UNLINKED_REASON
        assert not state.rows
        return state
    # Every row shows the instance count: no row is left with an older one.
    assert state.rows
    assert all(f'"instance_count": {instances}' in detail for *_, detail in state.rows)
    return state


def test_counts_and_rows_after_each_kind_of_commit_are_a_full_recounts(
    door: RunningServer,  # noqa: F811 - the fixture
    manifest: dict[str, Any],
) -> None:
    sender = Sender(door, manifest)
    series_a, series_b = _uid(), _uid()
    a = [_uid() for _ in range(3)]
    association = sender.associate()
    try:
        # The first instance creates the study; the next two are later commits of it.
        for sop in a:
            assert _store(association, sender.instance(series_a, sop)) == SUCCESS
        first = _check(sender, series=1, instances=3)
        # A series new mid-study.
        b = [_uid(), _uid()]
        for sop in b:
            assert _store(association, sender.instance(series_b, sop)) == SUCCESS
        _check(sender, series=2, instances=5)
        # A new version of a held instance: the count stays, the bytes are the newer version's.
        newer = sender.instance(series_a, a[0], comment="corrected version")
        assert _store(association, newer) == SUCCESS
        after_version = _check(sender, series=2, instances=5)
        assert after_version.size_bytes > first.size_bytes
        # A duplicate changes nothing.
        assert _store(association, sender.instance(series_a, a[1])) == WARNING
        assert _check(sender, series=2, instances=5) == after_version
        # A conflict (a held SOP Instance UID under another series) is refused, nothing counted.
        assert _store(association, sender.instance(series_b, a[2])) not in (SUCCESS, WARNING)
        assert _check(sender, series=2, instances=5) == after_version
        # A later first version after all that is still counted exactly.
        assert _store(association, sender.instance(series_b, _uid())) == SUCCESS
        _check(sender, series=2, instances=6)
    finally:
        association.release()


def test_concurrent_associations_adding_series_count_exactly(
    door: RunningServer,  # noqa: F811 - the fixture
    manifest: dict[str, Any],
) -> None:
    sender = Sender(door, manifest)
    # Four associations, each its own series and some shared ones, instances interleaved so
    # their commits are grouped and new series arrive mid-study.
    shared = [_uid(), _uid()]
    plans = [
        [(shared[i % 2], _uid()) for i in range(6)] + [(own, _uid()) for _ in range(6)]
        for own in (_uid(), _uid(), _uid(), _uid())
    ]
    associations = [sender.associate() for _ in plans]
    statuses: list[int] = []
    lock = threading.Lock()

    def send(association: Association, plan: list[tuple[str, str]]) -> None:
        for series_uid, sop in plan:
            status = _store(association, sender.instance(series_uid, sop))
            with lock:
                statuses.append(status)

    threads = [
        threading.Thread(target=send, args=pair) for pair in zip(associations, plans, strict=True)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        for association in associations:
            association.release()
    assert statuses == [SUCCESS] * 48
    _check(sender, series=6, instances=48)


def test_an_unlinked_study_adopted_mid_upload_counts_exactly(
    door: RunningServer,  # noqa: F811 - the fixture
    manifest: dict[str, Any],
) -> None:
    sender = Sender(door, manifest)
    series = _uid()
    unlinked = sender.associate()
    linking = sender.associate()
    try:
        # Held unlinked: counted, never recognized.
        for _ in range(3):
            assert _store(unlinked, sender.instance(series, _uid(), document=False)) == WARNING
        _check(sender, series=1, instances=3, unlinked=True)
        # An instance carrying the document links the PatientID: the study is adopted.
        assert _store(linking, sender.instance(series, _uid())) == SUCCESS
        _check(sender, series=1, instances=4)
        # The association that began it unlinked goes on, in a series new to the study.
        later = _uid()
        for _ in range(2):
            assert _store(unlinked, sender.instance(later, _uid(), document=False)) in (
                SUCCESS,
                WARNING,
            )
        _check(sender, series=2, instances=6)
        assert _store(unlinked, sender.instance(series, _uid(), document=False)) in (
            SUCCESS,
            WARNING,
        )
        _check(sender, series=2, instances=7)
    finally:
        unlinked.release()
        linking.release()
