"""The DICOM C-STORE door over real associations: dcmtk's echoscu and storescu, and pynetdicom
as the SCU, against a real server on SQLite and on PostgreSQL."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.association import Association
from sqlalchemy import select

from mutualrec.identity import parse_identity, patient_key
from mutualrec.services.dicom_peers import DicomPeer
from mutualrec.storage.models import AuditEntry, Study
from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc
from mutualrec.violations import Conflict, NotFound, Rejected
from tests.conftest import (
    PYDICOM_FILES,
    RunningServer,
    make_settings,
    start_server,
    unless_installed,
)
from tests.helpers import file_messages, header_message, study_files, upload

OUR_TITLE = "MUTUALREC"
# pydicom's bundled files, one per transfer syntax (the comment says which).
SYNTAX_FILES = [
    "MR_small_implicit.dcm",  # Implicit VR Little Endian
    "CT_small.dcm",  # Explicit VR Little Endian
    "MR_small_bigendian.dcm",  # Explicit VR Big Endian
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG Baseline
    "JPGExtended.dcm",  # JPEG Extended
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS Lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 Lossless
    "MR_small_RLE.dcm",  # RLE Lossless
]
CT = "ct_chest_contrast_hosp_a"
DCMTK = unless_installed(
    shutil.which("storescu") is None or shutil.which("echoscu") is None,
    "dcmtk's storescu/echoscu are missing: run `make test-tools`",
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


def _port(server: RunningServer) -> int:
    assert server.dicom is not None
    return server.dicom.port


def _hospital(server: RunningServer, code: str, title: str, address: str = "") -> str:
    """Register a hospital and its PACS's AE title; its API key."""
    key = server.add_hospital(code)
    server.runtime.dicom_peers.add(code, title, address)
    return key


def _associate(
    server: RunningServer, title: str, sop_classes: list[str], called: str = OUR_TITLE
) -> Association:
    ae = AE(ae_title=title)
    for sop_class in sorted(set(sop_classes)):
        ae.add_requested_context(sop_class)
    return ae.associate("127.0.0.1", _port(server), ae_title=called)


def _with_identity(path: Path, number: str, **changes: Any) -> Dataset:
    """The instance at ``path`` carrying the patient's resident ID in OtherPatientIDsSequence."""
    ds = pydicom.dcmread(path)
    item = Dataset()
    item.PatientID = number
    item.IssuerOfPatientID = "RESIDENT_ID_CARD"
    ds.OtherPatientIDsSequence = [item]
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


def _status(server: RunningServer, key: str, study_uid: str) -> ingest_pb2.GetStudyStatusResponse:
    response: ingest_pb2.GetStudyStatusResponse = ingest_pb2_grpc.IngestServiceStub(
        server.channel
    ).GetStudyStatus(
        ingest_pb2.GetStudyStatusRequest(study_instance_uid=study_uid),
        metadata=(("authorization", f"Bearer {key}"),),
    )
    return response


def _held_for(server: RunningServer, study_uid: str) -> str | None:
    with server.runtime.sessions() as session:
        return session.scalar(
            select(Study.patient_key).where(Study.study_instance_uid == study_uid)
        )


def _key_of(number: str, server: RunningServer) -> str:
    return patient_key(
        parse_identity("RESIDENT_ID_CARD", number), server.runtime.settings.patient_key_secret
    )


def _audit_entries(server: RunningServer, key: str) -> list[AuditEntry]:
    """The patient's audit entries once the association's have been written (its end, seen
    by the server a moment after the SCU's release returns, queues them)."""
    for _ in range(200):
        server.runtime.audit.flush()
        with server.runtime.sessions() as session:
            entries = list(session.scalars(select(AuditEntry).where(AuditEntry.patient_key == key)))
        if entries:
            return entries
        time.sleep(0.05)
    return []


@DCMTK
def test_echoscu_verifies_a_registered_peer(door: RunningServer) -> None:
    _hospital(door, "H500103001", "YUZHONG_PACS")
    done = subprocess.run(
        ["echoscu", "-aet", "YUZHONG_PACS", "-aec", OUR_TITLE, "127.0.0.1", str(_port(door))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_accepted_connections_send_without_nagle_delay(door: RunningServer) -> None:
    _hospital(door, "H500103001", "YUZHONG_PACS")
    assoc = _associate(door, "YUZHONG_PACS", ["1.2.840.10008.1.1"])
    assert assoc.is_established
    assert door.dicom is not None
    served = door.dicom._ae.active_associations
    try:
        assert served, "the door serves the association"
        for association in served:
            raw = association.dul.socket.socket if association.dul.socket else None
            assert raw is not None
            assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        assoc.release()


def test_pynetdicom_echo(door: RunningServer) -> None:
    _hospital(door, "H500103001", "YUZHONG_PACS")
    assoc = _associate(door, "YUZHONG_PACS", ["1.2.840.10008.1.1"])
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


@DCMTK
def test_storescu_stores_every_sample_study(
    door: RunningServer, manifest: dict[str, Any], tmp_path: Path
) -> None:
    keys: dict[str, str] = {}
    for name, study in manifest.items():
        code = study["institution_code"]
        if code not in keys:
            keys[code] = _hospital(door, code, f"PACS_{code[-4:]}")
        folder = tmp_path / "send" / name
        folder.mkdir(parents=True)
        for path in study_files(study):
            _with_identity(path, study["patient"]["document_number"]).save_as(folder / path.name)
        done = subprocess.run(
            [
                "storescu",
                "-aet",
                f"PACS_{code[-4:]}",
                "-aec",
                OUR_TITLE,
                "+sd",
                "127.0.0.1",
                str(_port(door)),
                str(folder),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

        status = _status(door, keys[code], study["study_instance_uid"])
        assert status.study.instance_count == study["instance_count"]
        assert status.study.series_count == study["series_count"]
        assert {i.sop_instance_uid for i in status.instances} == {
            f["sop_instance_uid"] for f in study["files"]
        }
        assert _held_for(door, study["study_instance_uid"]) == _key_of(
            study["patient"]["document_number"], door
        )


def test_unknown_calling_title_wrong_address_and_wrong_called_title_are_rejected(
    door: RunningServer,
) -> None:
    _hospital(door, "H500103001", "YUZHONG_PACS")
    _hospital(door, "H500106002", "SHAPINGBA_PACS", address="10.20.0.15")
    cases = [
        ("STRANGER", OUR_TITLE, 0x03),  # not registered
        ("SHAPINGBA_PACS", OUR_TITLE, 0x03),  # registered for another address
        ("YUZHONG_PACS", "SOMEONE_ELSE", 0x07),  # not our AE title
    ]
    for calling, called, diagnostic in cases:
        assoc = _associate(door, calling, ["1.2.840.10008.1.1"], called=called)
        assert assoc.is_rejected, (calling, called)
        answer = assoc.acceptor.primitive
        assert answer is not None
        # rejected-permanent, by the service user, for the reason named.
        assert (answer.result, answer.result_source, answer.diagnostic) == (0x01, 0x01, diagnostic)


def test_identity_in_other_patient_ids_names_the_patient(
    door: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest["us_abdomen_hosp_a"]
    key = _hospital(door, study["institution_code"], "YUZHONG_PACS")
    number = study["patient"]["document_number"]
    path = study_files(study)[0]
    assoc = _associate(door, "YUZHONG_PACS", [pydicom.dcmread(path).SOPClassUID])
    stored = assoc.send_c_store(_with_identity(path, number))
    # A document that is no valid resident ID: refused, never passed over.
    broken = assoc.send_c_store(
        _with_identity(path, "500112199007211021", SOPInstanceUID=generate_uid())
    )
    assoc.release()

    assert stored.Status == 0x0000
    assert broken.Status == 0xC000
    assert broken.ErrorComment.startswith("INVALID_IDENTITY")
    assert _held_for(door, study["study_instance_uid"]) == _key_of(number, door)
    assert len(_status(door, key, study["study_instance_uid"]).instances) == 1

    # What the association stored is in the patient's audit trail, as the hospital's PACS.
    entries = _audit_entries(door, _key_of(number, door))
    assert [(e.rpc, e.role, e.credential) for e in entries] == [
        ("DICOM/C-STORE", "hospital", "ae:YUZHONG_PACS")
    ]


def test_patient_id_linked_by_an_earlier_upload_names_the_patient(
    door: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = _hospital(door, study["institution_code"], "YUZHONG_PACS")
    files = study_files(study)
    # UploadStudy declares the document and links the hospital's PatientID to the patient.
    upload(door.channel, key, [header_message(study), *file_messages(files[:1])])

    # A later study of the same PatientID, sent over C-STORE with no document at all.
    later_study, later_series = generate_uid(), generate_uid()
    later = []
    for path in files[:3]:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = later_study
        ds.SeriesInstanceUID = later_series
        ds.SOPInstanceUID = generate_uid()
        later.append(ds)
    assoc = _associate(door, "YUZHONG_PACS", [later[0].SOPClassUID])
    answers = [assoc.send_c_store(ds) for ds in later]
    assoc.release()

    assert [a.Status for a in answers] == [0x0000] * 3
    assert _held_for(door, later_study) == _key_of(study["patient"]["document_number"], door)
    assert len(_status(door, key, later_study).instances) == 3


def test_a_duplicate_is_a_warning_and_changes_nothing(
    door: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = _hospital(door, study["institution_code"], "YUZHONG_PACS")
    path = study_files(study)[0]
    instance = _with_identity(path, study["patient"]["document_number"])
    assoc = _associate(door, "YUZHONG_PACS", [instance.SOPClassUID])
    first = assoc.send_c_store(instance)
    again = assoc.send_c_store(instance)
    assoc.release()
    # A new association (a PACS retrying the next day) is told the same.
    assoc = _associate(door, "YUZHONG_PACS", [instance.SOPClassUID])
    later = assoc.send_c_store(instance)
    assoc.release()

    assert first.Status == 0x0000
    assert again.Status == later.Status == 0xB000
    assert again.ErrorComment.startswith("duplicate")
    held = _status(door, key, study["study_instance_uid"]).instances
    assert [i.version for i in held] == [1]


def test_a_broken_instance_is_refused_and_the_good_ones_stored(
    door: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = _hospital(door, study["institution_code"], "YUZHONG_PACS")
    number = study["patient"]["document_number"]
    files = study_files(study)
    good = [_with_identity(p, number) for p in files[:2]]
    bad = _with_identity(files[2], number, StudyDate="20241345")
    assoc = _associate(door, "YUZHONG_PACS", [bad.SOPClassUID])
    answers = [assoc.send_c_store(ds) for ds in (good[0], bad, good[1])]
    assoc.release()

    assert [a.Status for a in answers] == [0x0000, 0xC000, 0x0000]
    assert answers[1].ErrorComment.startswith("MALFORMED_DATE")
    assert answers[1].OffendingElement == 0x00080020  # StudyDate
    held = {i.sop_instance_uid for i in _status(door, key, study["study_instance_uid"]).instances}
    assert held == {good[0].SOPInstanceUID, good[1].SOPInstanceUID}


def test_an_aborted_association_keeps_what_was_acknowledged(
    door: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = _hospital(door, study["institution_code"], "YUZHONG_PACS")
    number = study["patient"]["document_number"]
    files = study_files(study)
    assoc = _associate(door, "YUZHONG_PACS", [pydicom.dcmread(files[0]).SOPClassUID])
    acknowledged = []
    for path in files[:4]:
        instance = _with_identity(path, number)
        assert assoc.send_c_store(instance).Status == 0x0000
        acknowledged.append(instance.SOPInstanceUID)
    assoc.abort()

    held = {i.sop_instance_uid for i in _status(door, key, study["study_instance_uid"]).instances}
    assert held == set(acknowledged)
    # The server goes on: the PACS sends the rest on a new association.
    assoc = _associate(door, "YUZHONG_PACS", [pydicom.dcmread(files[0]).SOPClassUID])
    answers = [assoc.send_c_store(_with_identity(p, number)) for p in files[4:]]
    assoc.release()
    assert {a.Status for a in answers} == {0x0000}
    assert len(_status(door, key, study["study_instance_uid"]).instances) == len(files)


def test_without_the_setting_nothing_listens(tmp_path: Path) -> None:
    server = start_server(make_settings(tmp_path))
    running = next(server)
    try:
        assert running.dicom is None
    finally:
        server.close()


def test_every_transfer_syntax_the_ingest_reads_is_accepted(
    door: RunningServer, manifest: dict[str, Any], tmp_path: Path
) -> None:
    _hospital(door, "H500103001", "YUZHONG_PACS")
    number = manifest[CT]["patient"]["document_number"]
    ae = AE(ae_title="YUZHONG_PACS")
    sent = []
    for name in SYNTAX_FILES:
        ds = _with_identity(PYDICOM_FILES / name, number)
        # One study per file: pydicom's MR_small variants share their UIDs.
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = generate_uid()
        path = tmp_path / name
        ds.save_as(path)
        ae.add_requested_context(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])
        sent.append((path, ds.StudyInstanceUID, ds.file_meta.TransferSyntaxUID))
    assoc = ae.associate("127.0.0.1", _port(door), ae_title=OUR_TITLE)
    assert assoc.is_established
    # Sent as the files hold them: the dataset's bytes in the file's own transfer syntax.
    answers = {str(syntax): assoc.send_c_store(path).Status for path, _study, syntax in sent}
    assoc.release()

    assert answers == {str(syntax): 0x0000 for _path, _study, syntax in sent}
    for _path, study, syntax in sent:
        assert _held_for(door, study) == _key_of(number, door), syntax


def test_peers_are_registered_listed_and_removed(door: RunningServer) -> None:
    peers = door.runtime.dicom_peers
    door.add_hospital("H500103001")
    door.add_hospital("H500106002")
    peers.add("H500103001", " YUZHONG_PACS ", "10.20.0.15")
    peers.add("H500106002", "SHAPINGBA_PACS")
    with pytest.raises(Conflict):
        peers.add("H500106002", "YUZHONG_PACS")  # one title names one institution
    with pytest.raises(NotFound):
        peers.add("H599999999", "NOBODY")
    for title, address in [("", ""), ("A" * 17, ""), ("BACK\\SLASH", ""), ("OK", "10.20.0")]:
        with pytest.raises(Rejected):
            peers.add("H500103001", title, address)

    assert peers.list() == [
        DicomPeer("SHAPINGBA_PACS", "H500106002", ""),
        DicomPeer("YUZHONG_PACS", "H500103001", "10.20.0.15"),
    ]
    # The registered address, also as an IPv4 peer shows on a dual-stack socket.
    assert peers.caller("YUZHONG_PACS", "10.20.0.15") is not None
    assert peers.caller("YUZHONG_PACS", "::ffff:10.20.0.15") is not None
    assert peers.caller("YUZHONG_PACS", "10.20.0.16") is None
    caller = peers.caller("SHAPINGBA_PACS", "192.0.2.7")
    assert caller is not None
    assert caller.institution_code == "H500106002"

    assert peers.remove("YUZHONG_PACS") is True
    assert peers.remove("YUZHONG_PACS") is False
    assert peers.caller("YUZHONG_PACS", "10.20.0.15") is None


def test_a_storage_outage_answers_out_of_resources_and_the_door_goes_on(
    door: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = _hospital(door, study["institution_code"], "YUZHONG_PACS")
    instance = _with_identity(study_files(study)[0], study["patient"]["document_number"])
    objects = door.runtime.settings.data_dir / "objects"
    # The object store's directory replaced by a file: every write fails as a lost disk would.
    kept = objects.rename(objects.with_name("objects-kept"))
    objects.write_bytes(b"")
    assoc = _associate(door, "YUZHONG_PACS", [instance.SOPClassUID])
    during = assoc.send_c_store(instance)
    objects.unlink()
    kept.rename(objects)
    after = assoc.send_c_store(instance)
    assoc.release()

    assert during.Status == 0xA700
    assert "send again later" in during.ErrorComment
    assert after.Status == 0x0000
    assert len(_status(door, key, study["study_instance_uid"]).instances) == 1
