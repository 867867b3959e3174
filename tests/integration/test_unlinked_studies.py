"""Studies held unlinked: C-STOREs of a PatientID no patient is linked to yet are stored and
listed for the hospital, in no one's history and recognized for no one, until LinkPatient (or an
upload declaring both the document and the PatientID) makes them the patient's. Over real
associations (pynetdicom, dcmtk's storescu) and real gRPC, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from sqlalchemy import select

from mutualrec.client.upload import auth_metadata
from mutualrec.identity import parse_identity, patient_key
from mutualrec.security.patient_tokens import mint_patient_token
from mutualrec.services.study_upload import UploadSession
from mutualrec.storage import catalog_store
from mutualrec.storage import imaging_index as index
from mutualrec.storage.models import AuditEntry, Institution, Study
from mutualrec.v1 import (
    common_pb2,
    imaging_pb2,
    imaging_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    recognition_pb2,
    recognition_pb2_grpc,
)
from tests.conftest import RunningServer, make_settings, new_key, start_server, unless_installed
from tests.helpers import bad_request, file_messages, header_message, study_files, upload

OUR_TITLE = "MUTUALREC"
CT = "ct_chest_contrast_hosp_a"
ASKER = "H500106002"
OTHER = "H500112003"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
DCMTK = unless_installed(
    shutil.which("storescu") is None, "dcmtk's storescu is missing: run `make test-tools`"
)


@pytest.fixture
def door(tmp_path: Path, database_url: str) -> Iterator[RunningServer]:
    """The server with its DICOM listener on a free loopback port."""
    settings = make_settings(
        tmp_path,
        MUTUALREC_DATABASE_URL=database_url,
        MUTUALREC_DICOM_LISTEN="127.0.0.1:0",
        MUTUALREC_DICOM_AE_TITLE=OUR_TITLE,
    )
    yield from start_server(settings)


class Hospitals:
    """The sample CT's hospital (qualified city-wide for imaging, its PACS registered), a
    hospital that asks, and another hospital with a PACS of its own."""

    def __init__(self, server: RunningServer, study: dict[str, Any]) -> None:
        self.server = server
        self.study = study
        self.issuer = study["institution_code"]
        self.key = server.add_hospital(self.issuer)
        self.asker = server.add_hospital(ASKER, level="secondary")
        self.other = server.add_hospital(OTHER)
        server.runtime.dicom_peers.add(self.issuer, "YUZHONG_PACS", "")
        server.runtime.dicom_peers.add(OTHER, "OTHER_PACS", "")
        with server.runtime.sessions.begin() as session:
            catalog = catalog_store.current_catalog(session)
            catalog_store.add_qualification(
                session,
                self.issuer,
                item_code=None,
                category="imaging",
                scope="city",
                valid_from=dt.datetime(2020, 1, 1, tzinfo=SHANGHAI),
                valid_until=None,
                catalog=catalog,
            )
        server.runtime.reference.invalidate()

    @property
    def number(self) -> str:
        return str(self.study["patient"]["document_number"])

    @property
    def patient_id(self) -> str:
        return str(self.study["patient"]["hospital_patient_id"])

    def ingest(self) -> ingest_pb2_grpc.IngestServiceStub:
        return ingest_pb2_grpc.IngestServiceStub(self.server.channel)

    def link(
        self, key: str | None = None, number: str | None = None, patient_id: str | None = None
    ) -> ingest_pb2.LinkPatientResponse:
        response: ingest_pb2.LinkPatientResponse = self.ingest().LinkPatient(
            ingest_pb2.LinkPatientRequest(
                patient=common_pb2.PatientIdentity(
                    document_type=common_pb2.RESIDENT_ID_CARD,
                    document_number=self.number if number is None else number,
                ),
                patient_id=self.patient_id if patient_id is None else patient_id,
            ),
            metadata=auth_metadata(key or self.key),
        )
        return response

    def unlinked(
        self, key: str | None = None, page_size: int = 0, page_token: str = ""
    ) -> ingest_pb2.ListUnlinkedStudiesResponse:
        response: ingest_pb2.ListUnlinkedStudiesResponse = self.ingest().ListUnlinkedStudies(
            ingest_pb2.ListUnlinkedStudiesRequest(page_size=page_size, page_token=page_token),
            metadata=auth_metadata(key or self.key),
        )
        return response

    def history(self) -> list[str]:
        """The Study Instance UIDs in the patient's imaging history, as the patient sees it."""
        key = patient_key(
            parse_identity("RESIDENT_ID_CARD", self.number),
            self.server.runtime.settings.patient_key_secret,
        )
        token = mint_patient_token(
            self.server.runtime.settings.token_secret, key, dt.timedelta(hours=1)
        ).token
        response = imaging_pb2_grpc.ImagingServiceStub(self.server.channel).ListStudies(
            imaging_pb2.ListStudiesRequest(page_size=100), metadata=auth_metadata(token)
        )
        return [s.study_instance_uid for s in response.studies]

    def verdicts(self) -> list[str]:
        """What CheckOrder tells the asking hospital of a CT chest order for the patient."""
        response = recognition_pb2_grpc.RecognitionServiceStub(self.server.channel).CheckOrder(
            recognition_pb2.CheckOrderRequest(
                patient=common_pb2.PatientIdentity(
                    document_type=common_pb2.RESIDENT_ID_CARD, document_number=self.number
                ),
                ordered_codes=["IMG-CT-CHEST"],
            ),
            metadata=auth_metadata(self.asker),
        )
        return [recognition_pb2.Verdict.Name(line.verdict) for line in response.lines]


def _recent(path: Path, study_uid: str, series_uids: dict[str, str]) -> Dataset:
    """The sample instance as a study of yesterday (so it is recognizable today), under new
    UIDs, carrying the hospital's PatientID and no identity document."""
    ds = pydicom.dcmread(path)
    yesterday = (dt.datetime.now(SHANGHAI) - dt.timedelta(days=1)).strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = yesterday
    for keyword in ("AcquisitionDate", "ContentDate"):
        if keyword in ds:
            setattr(ds, keyword, yesterday)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uids.setdefault(ds.SeriesInstanceUID, generate_uid())
    ds.SOPInstanceUID = generate_uid()
    return ds


def _recent_study(files: list[Path]) -> tuple[str, list[Dataset]]:
    study_uid, series_uids = generate_uid(), {}
    return study_uid, [_recent(path, study_uid, series_uids) for path in files]


def _send(
    server: RunningServer, title: str, instances: list[Dataset] | list[Path]
) -> list[Dataset]:
    """C-STORE each instance (a file is sent as its bytes are) on one association; the
    responses."""
    ae = AE(ae_title=title)
    datasets = [pydicom.dcmread(ds) if isinstance(ds, Path) else ds for ds in instances]
    for sop_class in sorted({ds.SOPClassUID for ds in datasets}):
        ae.add_requested_context(sop_class)
    assert server.dicom is not None
    assoc = ae.associate("127.0.0.1", server.dicom.port, ae_title=OUR_TITLE)
    assert assoc.is_established
    answers = [assoc.send_c_store(ds) for ds in instances]
    assoc.release()
    return answers


def _held_for(server: RunningServer, study_uid: str) -> str | None:
    with server.runtime.sessions() as session:
        return session.scalar(
            select(Study.patient_key).where(Study.study_instance_uid == study_uid)
        )


def test_an_unknown_patient_id_is_held_unlinked_until_linked(
    door: RunningServer, manifest: dict[str, Any]
) -> None:
    hospitals = Hospitals(door, manifest[CT])
    files = study_files(manifest[CT])
    study_uid, instances = _recent_study(files)

    answers = _send(door, "YUZHONG_PACS", instances)

    # Stored, with a warning saying how to link it.
    assert {a.Status for a in answers} == {0xB000}
    assert {a.ErrorComment for a in answers} == {
        "held unlinked: PatientID names no patient; use LinkPatient"
    }
    assert {a.OffendingElement for a in answers} == {0x00100020}
    listed = hospitals.unlinked().studies
    assert [(s.study_instance_uid, s.patient_id) for s in listed] == [
        (study_uid, hospitals.patient_id)
    ]
    assert list(listed[0].modalities) == ["CT"]
    assert listed[0].instance_count == len(files)
    assert listed[0].study_date == instances[0].StudyDate[:4] + "-" + (
        f"{instances[0].StudyDate[4:6]}-{instances[0].StudyDate[6:]}"
    )
    held_at = dt.datetime.fromisoformat(listed[0].held_at)
    assert held_at.utcoffset() == dt.timedelta(0)
    status = hospitals.ingest().GetStudyStatus(
        ingest_pb2.GetStudyStatusRequest(study_instance_uid=study_uid),
        metadata=auth_metadata(hospitals.key),
    )
    assert len(status.instances) == len(files)
    assert "LinkPatient" in status.study.not_recognized_reason
    # In no one's history, recognized for no one.
    assert hospitals.history() == []
    assert hospitals.verdicts() == ["NO_RESULT"]

    linked = hospitals.link()

    assert list(linked.linked_study_instance_uids) == [study_uid]
    assert hospitals.unlinked().studies == []
    assert hospitals.history() == [study_uid]
    assert hospitals.verdicts() == ["RECOGNIZABLE"]
    status = hospitals.ingest().GetStudyStatus(
        ingest_pb2.GetStudyStatusRequest(study_instance_uid=study_uid),
        metadata=auth_metadata(hospitals.key),
    )
    assert status.study.not_recognized_reason == ""
    # Linking is in the patient's audit trail, as the hospital's call.
    key = patient_key(
        parse_identity("RESIDENT_ID_CARD", hospitals.number),
        door.runtime.settings.patient_key_secret,
    )
    door.runtime.audit.flush()
    with door.runtime.sessions() as session:
        rpcs = list(session.scalars(select(AuditEntry.rpc).where(AuditEntry.patient_key == key)))
    assert "IngestService/LinkPatient" in rpcs

    # The link stands: the next study of the PatientID is the patient's at once, and linking
    # again changes nothing.
    later_uid, later = _recent_study(files[:2])
    assert {a.Status for a in _send(door, "YUZHONG_PACS", later)} == {0x0000}
    assert _held_for(door, later_uid) == key
    assert list(hospitals.link().linked_study_instance_uids) == []


def test_an_upload_declaring_the_document_and_the_patient_id_links_held_studies(
    door: RunningServer, manifest: dict[str, Any]
) -> None:
    hospitals = Hospitals(door, manifest[CT])
    files = study_files(manifest[CT])
    held_uid, held = _recent_study(files[:3])
    assert {a.Status for a in _send(door, "YUZHONG_PACS", held)} == {0xB000}
    # The same PatientID's other held study, and one of another PatientID that stays held.
    second_uid, second = _recent_study(files[3:5])
    assert {a.Status for a in _send(door, "YUZHONG_PACS", second)} == {0xB000}
    stranger_uid, stranger = _recent_study(files[5:6])
    stranger[0].PatientID = "B99999"
    assert _send(door, "YUZHONG_PACS", stranger)[0].Status == 0xB000

    # The sample study itself (2024) declares the document; its instances carry the PatientID.
    response = upload(
        door.channel, hospitals.key, [header_message(manifest[CT]), *file_messages(files[:1])]
    )
    assert response.counts.stored == 1

    assert [s.study_instance_uid for s in hospitals.unlinked().studies] == [stranger_uid]
    history = hospitals.history()
    assert {held_uid, second_uid} <= set(history)
    assert stranger_uid not in history
    assert hospitals.verdicts() == ["RECOGNIZABLE"]


def test_an_upload_of_the_held_study_itself_links_it(
    door: RunningServer, manifest: dict[str, Any]
) -> None:
    hospitals = Hospitals(door, manifest[CT])
    files = study_files(manifest[CT])
    assert {a.Status for a in _send(door, "YUZHONG_PACS", files[:1])} == {0xB000}

    # The rest of the study by UploadStudy, declaring the patient: the held part joins them.
    response = upload(
        door.channel, hospitals.key, [header_message(manifest[CT]), *file_messages(files)]
    )

    # The C-STORE's bytes carry the file meta the association gave them: a version of its own.
    assert (response.counts.stored, response.counts.new_version) == (len(files) - 1, 1)
    assert response.counts.rejected == 0
    assert response.study.instance_count == len(files)
    assert hospitals.unlinked().studies == []
    assert hospitals.history() == [manifest[CT]["study_instance_uid"]]


def test_another_institution_can_neither_list_nor_link_them(
    door: RunningServer, manifest: dict[str, Any]
) -> None:
    hospitals = Hospitals(door, manifest[CT])
    study_uid, instances = _recent_study(study_files(manifest[CT])[:2])
    assert {a.Status for a in _send(door, "YUZHONG_PACS", instances)} == {0xB000}

    assert hospitals.unlinked(key=hospitals.other).studies == []
    # The other hospital's PatientID namespace is its own: it links its own number, not ours.
    assert list(hospitals.link(key=hospitals.other).linked_study_instance_uids) == []
    assert [s.study_instance_uid for s in hospitals.unlinked().studies] == [study_uid]
    assert hospitals.history() == []
    # And its PACS sending the same PatientID holds its own study, apart from ours.
    other_uid, other = _recent_study(study_files(manifest[CT])[2:3])
    assert _send(door, "OTHER_PACS", other)[0].Status == 0x0000  # linked just above, for OTHER
    assert _held_for(door, other_uid) != _held_for(door, study_uid)

    # Roles other than a hospital's are refused outright.
    with door.runtime.sessions.begin() as session:
        regulator = new_key(session, "regulator")
    for call in (
        lambda: hospitals.unlinked(key=regulator),
        lambda: hospitals.link(key=regulator),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_bad_link_requests_are_refused_naming_each_field(
    door: RunningServer, manifest: dict[str, Any]
) -> None:
    hospitals = Hospitals(door, manifest[CT])
    cases = [
        (
            {"number": "500112199007211021", "patient_id": ""},
            {"patient.document_number": "INVALID_IDENTITY", "patient_id": "MISSING_FIELD"},
        ),
        ({"patient_id": "X" * 65}, {"patient_id": "MALFORMED_VALUE"}),
        ({"patient_id": "A\\B"}, {"patient_id": "MALFORMED_VALUE"}),
    ]
    for fields, expected in cases:
        with pytest.raises(grpc.RpcError) as refused:
            hospitals.link(**fields)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert bad_request(refused.value) == expected
    for fields, expected_page in [
        ({"page_size": 501}, "page_size"),
        ({"page_token": "x"}, None),
        ({"page_token": "9" * 19}, None),  # past a 64-bit id: refused, never a database error
    ]:
        with pytest.raises(grpc.RpcError) as refused:
            hospitals.unlinked(**fields)  # type: ignore[arg-type]
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(bad_request(refused.value)) == {expected_page or "page_token"}

    # A PatientID linked to another patient already: refused, nothing moves.
    hospitals.link()
    with pytest.raises(grpc.RpcError) as refused:
        hospitals.link(number="11010519491231002X")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_an_empty_patient_id_without_a_document_is_refused(
    door: RunningServer, manifest: dict[str, Any]
) -> None:
    Hospitals(door, manifest[CT])
    study_uid, instances = _recent_study(study_files(manifest[CT])[:1])
    instances[0].PatientID = ""

    answer = _send(door, "YUZHONG_PACS", instances)[0]

    assert answer.Status == 0xC001
    assert "OtherPatientIDsSequence" in answer.ErrorComment
    assert answer.OffendingElement == 0x00100020
    assert _held_for(door, study_uid) is None


def test_held_studies_are_listed_a_page_at_a_time(
    door: RunningServer, manifest: dict[str, Any]
) -> None:
    hospitals = Hospitals(door, manifest[CT])
    files = study_files(manifest[CT])
    sent = []
    for position in range(5):
        uid, instances = _recent_study(files[position : position + 1])
        instances[0].PatientID = f"P{position}"
        assert _send(door, "YUZHONG_PACS", instances)[0].Status == 0xB000
        sent.append(uid)

    pages, token = [], ""
    while True:
        page = hospitals.unlinked(page_size=2, page_token=token)
        pages.append([s.study_instance_uid for s in page.studies])
        token = page.next_page_token
        if not token:
            break

    assert pages == [sent[4:2:-1], sent[2:0:-1], sent[:1]]


@DCMTK
def test_storescu_sends_a_study_of_300_instances_held_then_linked(
    door: RunningServer, manifest: dict[str, Any], tmp_path: Path
) -> None:
    hospitals = Hospitals(door, manifest[CT])
    files = study_files(manifest[CT])
    study_uid, series_uids = generate_uid(), {}
    folder = tmp_path / "send"
    folder.mkdir()
    for position in range(300):
        ds = _recent(files[position % len(files)], study_uid, series_uids)
        ds.InstanceNumber = position + 1
        ds.save_as(folder / f"{position:03}.dcm")

    assert door.dicom is not None
    port = str(door.dicom.port)
    done = subprocess.run(
        ["storescu", "-aet", "YUZHONG_PACS", "-aec", OUR_TITLE, "+sd", "127.0.0.1", port, folder],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    # Every instance answered with the held-unlinked warning, none refused.
    assert done.returncode == 0, done.stdout + done.stderr
    listed = hospitals.unlinked().studies
    assert [(s.study_instance_uid, s.instance_count) for s in listed] == [(study_uid, 300)]
    assert list(hospitals.link().linked_study_instance_uids) == [study_uid]
    assert hospitals.history() == [study_uid]
    status = hospitals.ingest().GetStudyStatus(
        ingest_pb2.GetStudyStatusRequest(study_instance_uid=study_uid),
        metadata=auth_metadata(hospitals.key),
    )
    assert status.study.instance_count == 300


def test_a_link_made_while_a_held_instance_is_stored_takes_that_study_too(
    door: RunningServer, manifest: dict[str, Any]
) -> None:
    """The instance was resolved as unlinked, then LinkPatient committed, then the instance's
    rows: the study is the patient's, never left held under a linked PatientID."""
    hospitals = Hospitals(door, manifest[CT])
    uploads = door.runtime.study_uploads
    with door.runtime.sessions() as session:
        institution_id = session.scalar(
            select(Institution.id).where(Institution.code == hospitals.issuer)
        )
    assert institution_id is not None
    path = study_files(manifest[CT])[0]
    session = UploadSession(
        store=uploads.store,
        sessions=uploads.sessions,
        patient_key=index.holding_key(institution_id, hospitals.patient_id),
        institution_id=institution_id,
        accession_number="",
        performed_item_code="",
        limits=uploads.limits,
        catalog=uploads.indexing.catalog(),
        unlinked=True,
    )
    pending = session.begin_instance(path.name)
    pending.write(path.read_bytes(), len(path.read_bytes()))
    header = session.read(pending)
    assert header is not None
    session.finish(pending, header)

    linked = hospitals.link()
    session.commit()

    assert list(linked.linked_study_instance_uids) == []  # nothing was held yet
    assert hospitals.unlinked().studies == []
    assert hospitals.history() == [manifest[CT]["study_instance_uid"]]


def test_a_c_store_carrying_the_document_links_the_patient_id(
    door: RunningServer, manifest: dict[str, Any]
) -> None:
    hospitals = Hospitals(door, manifest[CT])
    files = study_files(manifest[CT])
    held_uid, held = _recent_study(files[:2])
    assert {a.Status for a in _send(door, "YUZHONG_PACS", held)} == {0xB000}

    # The RIS fills OtherPatientIDsSequence on a later study: its PatientID is linked by it.
    later_uid, later = _recent_study(files[2:3])
    item = Dataset()
    item.PatientID = hospitals.number
    item.IssuerOfPatientID = "RESIDENT_ID_CARD"
    later[0].OtherPatientIDsSequence = [item]
    assert _send(door, "YUZHONG_PACS", later)[0].Status == 0x0000

    assert hospitals.unlinked().studies == []
    assert set(hospitals.history()) == {held_uid, later_uid}
