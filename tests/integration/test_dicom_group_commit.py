"""Group commit of C-STORE: the instances several associations have in flight share one commit,
and a shared commit that fails answers every instance in it with a failure status, over real
associations to a real server on PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]
from sqlalchemy import create_engine, select, text

from mutualrec.dicom_net.statuses import OUT_OF_RESOURCES
from mutualrec.services.dicom_store import GroupCommit
from mutualrec.storage.models import Instance
from tests.conftest import SAMPLES, RunningServer, make_settings, start_server

OUR_TITLE = "MUTUALREC"
PACS = "YUZHONG_PACS"
# Instances whose SOP Instance UID ends so are refused by the index (a trigger of the test).
REFUSED_SUFFIX = ".999"
SUCCESS = 0x0000


@pytest.fixture
def door(tmp_path: Path, postgres_url: str) -> Iterator[RunningServer]:
    settings = make_settings(
        tmp_path,
        MUTUALREC_DATABASE_URL=postgres_url,
        MUTUALREC_DICOM_LISTEN="127.0.0.1:0",
        MUTUALREC_DICOM_AE_TITLE=OUR_TITLE,
    )
    yield from start_server(settings)


def _refuse_marked_instances(database_url: str) -> None:
    """A commit that stores a marked instance fails: the index raises, as an outage would."""
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE FUNCTION refuse_marked() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.sop_instance_uid LIKE '%{REFUSED_SUFFIX}' THEN "
                "RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$ "
                "LANGUAGE plpgsql"
            )
        )
        connection.execute(
            text(
                "CREATE TRIGGER refuse_marked BEFORE INSERT ON instance "
                "FOR EACH ROW EXECUTE FUNCTION refuse_marked()"
            )
        )
    engine.dispose()


def _instance(manifest: dict[str, Any], uid: str) -> Dataset:
    study = manifest["ct_chest_contrast_hosp_a"]
    ds = pydicom.dcmread(SAMPLES / study["files"][0]["path"])
    item = Dataset()
    item.PatientID = study["patient"]["document_number"]
    item.IssuerOfPatientID = "RESIDENT_ID_CARD"
    ds.OtherPatientIDsSequence = [item]
    ds.SOPInstanceUID = UID(uid)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
    return ds


def _uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def _until(condition: Callable[[], bool]) -> None:
    """Wait for another thread to reach a state (no timing is asserted)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the state was never reached"
        time.sleep(0.01)


def test_a_failed_shared_commit_fails_every_instance_in_it(
    door: RunningServer, postgres_url: str, manifest: dict[str, Any]
) -> None:
    study = manifest["ct_chest_contrast_hosp_a"]
    door.add_hospital(study["institution_code"])
    door.runtime.dicom_peers.add(study["institution_code"], PACS, "")
    _refuse_marked_instances(postgres_url)
    # The commits run on one storage thread, held until the batches are formed: the first
    # instance's commit starts alone, the next two wait for it and then share one commit.
    gate = threading.Event()
    storage_thread = ThreadPoolExecutor(1)
    storage_thread.submit(gate.wait)
    group = GroupCommit(storage_thread)
    door.runtime.dicom_storage.group = group
    uids = [_uid(), _uid(), _uid() + REFUSED_SUFFIX]
    statuses: dict[int, int] = {}
    ae = AE(ae_title=PACS)
    ae.add_requested_context(CTImageStorage)
    assert door.dicom is not None
    associations = [ae.associate("127.0.0.1", door.dicom.port, ae_title=OUR_TITLE) for _ in uids]
    assert all(a.is_established for a in associations)

    def send(i: int) -> None:
        answer = associations[i].send_c_store(_instance(manifest, uids[i]))
        statuses[i] = int(answer.Status)

    try:
        first = threading.Thread(target=send, args=(0,))
        first.start()
        _until(lambda: group._busy and not group._queue)
        rest = [threading.Thread(target=send, args=(i,)) for i in (1, 2)]
        for thread in rest:
            thread.start()
        _until(lambda: len(group._queue) == 2)
        gate.set()
        for thread in [first, *rest]:
            thread.join(60)
    finally:
        gate.set()
        for association in associations:
            association.release()
        storage_thread.shutdown()

    # The good instance of the failed batch is refused with it: a success would be a lie.
    assert statuses == {0: SUCCESS, 1: OUT_OF_RESOURCES, 2: OUT_OF_RESOURCES}
    with door.runtime.sessions() as session:
        held = set(session.scalars(select(Instance.sop_instance_uid)))
    assert held == {uids[0]}


def test_concurrent_associations_share_commits(
    door: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest["ct_chest_contrast_hosp_a"]
    door.add_hospital(study["institution_code"])
    door.runtime.dicom_peers.add(study["institution_code"], PACS, "")
    gate = threading.Event()
    storage_thread = ThreadPoolExecutor(1)
    storage_thread.submit(gate.wait)
    group = GroupCommit(storage_thread)
    door.runtime.dicom_storage.group = group
    uids = [_uid() for _ in range(4)]
    statuses: dict[int, int] = {}
    ae = AE(ae_title=PACS)
    ae.add_requested_context(CTImageStorage)
    assert door.dicom is not None
    associations = [ae.associate("127.0.0.1", door.dicom.port, ae_title=OUR_TITLE) for _ in uids]

    def send(i: int) -> None:
        statuses[i] = int(associations[i].send_c_store(_instance(manifest, uids[i])).Status)

    try:
        first = threading.Thread(target=send, args=(0,))
        first.start()
        _until(lambda: group._busy and not group._queue)
        rest = [threading.Thread(target=send, args=(i,)) for i in (1, 2, 3)]
        for thread in rest:
            thread.start()
        _until(lambda: len(group._queue) == 3)
        gate.set()
        for thread in [first, *rest]:
            thread.join(60)
    finally:
        gate.set()
        for association in associations:
            association.release()
        storage_thread.shutdown()

    assert statuses == dict.fromkeys(range(4), SUCCESS)
    with door.runtime.sessions() as session:
        held = set(session.scalars(select(Instance.sop_instance_uid)))
    assert held == set(uids)
