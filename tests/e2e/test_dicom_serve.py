"""End to end: `mutualrec serve` with its DICOM listener, peers registered with `mutualrec admin`,
dcmtk's echoscu and storescu as the PACS, and a graceful stop."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.conftest import SAMPLES
from tests.e2e.test_serve import _free_port, _register, _spawn

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("storescu") is None or shutil.which("echoscu") is None,
        reason="dcmtk's storescu/echoscu are missing: run `make test-tools`",
    ),
]


def _echo(port: int, title: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["echoscu", "-aet", title, "-aec", "REGION_ARCHIVE", "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_listens_for_registered_pacs_and_stops_cleanly(
    tmp_path: Path, manifest: dict[str, Any]
) -> None:
    port = _free_port()
    env = {
        "MUTUALREC_DICOM_LISTEN": f"127.0.0.1:{port}",
        "MUTUALREC_DICOM_AE_TITLE": "REGION_ARCHIVE",
    }
    serve = _spawn(tmp_path, env)
    proc = next(serve)
    try:
        assert any(f"AE title REGION_ARCHIVE on 127.0.0.1:{port}" in line for line in proc.lines)
        study = manifest["us_abdomen_hosp_a"]
        key = _register(proc, study["institution_code"])
        assert _echo(port, "YUZHONG_PACS").returncode != 0  # not registered yet

        added = proc.cli(
            "admin",
            "add-dicom-peer",
            "--institution",
            study["institution_code"],
            "--ae-title",
            "YUZHONG_PACS",
        )
        assert added.returncode == 0, added.stderr
        listed = proc.cli("admin", "dicom-peers")
        assert "YUZHONG_PACS" in listed.stdout
        assert study["institution_code"] in listed.stdout
        assert _echo(port, "YUZHONG_PACS").returncode == 0

        sent = tmp_path / "sent.dcm"
        ds = pydicom.dcmread(SAMPLES / study["files"][0]["path"])
        item = Dataset()
        item.PatientID = study["patient"]["document_number"]
        item.IssuerOfPatientID = "RESIDENT_ID_CARD"
        ds.OtherPatientIDsSequence = [item]
        ds.save_as(sent)
        stored = subprocess.run(
            [
                "storescu",
                "-aet",
                "YUZHONG_PACS",
                "-aec",
                "REGION_ARCHIVE",
                "127.0.0.1",
                str(port),
                str(sent),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert stored.returncode == 0, stored.stdout + stored.stderr
        status = proc.cli("study-status", "--key", key, study["study_instance_uid"], "--json")
        assert status.returncode == 0, status.stderr
        assert len(json.loads(status.stdout)["instances"]) == 1

        removed = proc.cli("admin", "remove-dicom-peer", "YUZHONG_PACS")
        assert removed.returncode == 0, removed.stderr
        assert _echo(port, "YUZHONG_PACS").returncode != 0

        proc.process.send_signal(signal.SIGTERM)
        assert proc.process.wait(30) == 0
        time.sleep(0.2)
        assert "mutualrec stopped" in proc.lines
    finally:
        serve.close()


def test_a_held_study_is_listed_and_linked_with_the_cli(
    tmp_path: Path, manifest: dict[str, Any]
) -> None:
    port = _free_port()
    env = {
        "MUTUALREC_DICOM_LISTEN": f"127.0.0.1:{port}",
        "MUTUALREC_DICOM_AE_TITLE": "REGION_ARCHIVE",
    }
    serve = _spawn(tmp_path, env)
    proc = next(serve)
    try:
        study = manifest["us_abdomen_hosp_a"]
        key = _register(proc, study["institution_code"])
        added = proc.cli(
            "admin",
            "add-dicom-peer",
            "--institution",
            study["institution_code"],
            "--ae-title",
            "YUZHONG_PACS",
        )
        assert added.returncode == 0, added.stderr
        # The sample as the PACS holds it: the hospital's PatientID, no identity document.
        files = [str(SAMPLES / f["path"]) for f in study["files"]]
        scu = ["storescu", "-aet", "YUZHONG_PACS", "-aec", "REGION_ARCHIVE", "127.0.0.1"]
        stored = subprocess.run(
            [*scu, str(port), *files],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert stored.returncode == 0, stored.stdout + stored.stderr
        patient_id = study["patient"]["hospital_patient_id"]

        listed = proc.cli("unlinked-studies", "--key", key)
        assert listed.returncode == 0, listed.stderr
        assert patient_id in listed.stdout
        assert study["study_instance_uid"] in listed.stdout
        held = json.loads(proc.cli("unlinked-studies", "--key", key, "--json").stdout)
        assert [s["instance_count"] for s in held["studies"]] == [len(files)]

        linked = proc.cli(
            "link-patient",
            "--key",
            key,
            "--patient-id",
            study["patient"]["document_number"],
            patient_id,
        )
        assert linked.returncode == 0, linked.stderr
        assert study["study_instance_uid"] in linked.stdout
        assert "no study is held unlinked" in proc.cli("unlinked-studies", "--key", key).stdout
        refused = proc.cli("link-patient", "--key", key, "--patient-id", "123", patient_id)
        assert refused.returncode != 0
        assert "patient.document_number" in refused.stderr
    finally:
        serve.close()


def test_with_several_processes_one_listens_for_dicom(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        "MUTUALREC_PROCESSES": "2",
        "MUTUALREC_LISTEN": f"127.0.0.1:{_free_port()}",
        "MUTUALREC_DICOM_LISTEN": f"127.0.0.1:{port}",
        "MUTUALREC_DICOM_AE_TITLE": "REGION_ARCHIVE",
    }
    for proc in _spawn(tmp_path, env):
        assert "(2 processes)" in proc.lines[-1]
        _register(proc, "H500103001")
        added = proc.cli(
            "admin", "add-dicom-peer", "--institution", "H500103001", "--ae-title", "YUZHONG_PACS"
        )
        assert added.returncode == 0, added.stderr
        # Several associations in a row all reach the one listener.
        assert [_echo(port, "YUZHONG_PACS").returncode for _ in range(4)] == [0, 0, 0, 0]
        proc.process.send_signal(signal.SIGTERM)
        assert proc.process.wait(30) == 0


def test_instances_answered_from_shared_commits_survive_sigkill(
    tmp_path: Path, manifest: dict[str, Any]
) -> None:
    """Four associations at once: their instances are committed in shared batches (group
    commit). Every instance storescu saw answered with success is there after a SIGKILL."""
    study = manifest["ct_chest_contrast_hosp_a"]
    template = pydicom.dcmread(SAMPLES / study["files"][0]["path"])
    item = Dataset()
    item.PatientID = study["patient"]["document_number"]
    item.IssuerOfPatientID = "RESIDENT_ID_CARD"
    template.OtherPatientIDsSequence = [item]
    parts: list[list[str]] = []
    for part in range(4):
        folder = tmp_path / "pacs" / str(part)
        folder.mkdir(parents=True)
        for number in range(6):
            template.SOPInstanceUID = generate_uid()
            template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
            template.InstanceNumber = part * 100 + number
            template.save_as(folder / f"{number}.dcm")
        parts.append(sorted(str(p) for p in folder.iterdir()))
    port = _free_port()
    env = {
        "MUTUALREC_DICOM_LISTEN": f"127.0.0.1:{port}",
        "MUTUALREC_DICOM_AE_TITLE": "REGION_ARCHIVE",
    }
    serve = _spawn(tmp_path, env)
    proc = next(serve)
    try:
        key = _register(proc, study["institution_code"])
        added = proc.cli(
            "admin",
            "add-dicom-peer",
            "--institution",
            study["institution_code"],
            "--ae-title",
            "YUZHONG_PACS",
        )
        assert added.returncode == 0, added.stderr
        scu = ["storescu", "-aet", "YUZHONG_PACS", "-aec", "REGION_ARCHIVE", "127.0.0.1"]

        def send(files: list[str]) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*scu, str(port), *files], capture_output=True, text=True, timeout=120
            )

        with ThreadPoolExecutor(4) as pacs:
            sent = list(pacs.map(send, parts))
        # storescu exits non-zero unless every instance was answered with success.
        assert [done.returncode for done in sent] == [0] * 4, [d.stderr for d in sent]
        proc.process.send_signal(signal.SIGKILL)
        proc.process.wait(30)
    finally:
        serve.close()

    serve = _spawn(tmp_path, env)
    proc = next(serve)
    try:
        status = proc.cli("study-status", "--key", key, study["study_instance_uid"], "--json")
        assert status.returncode == 0, status.stderr
        held = {i["sop_instance_uid"] for i in json.loads(status.stdout)["instances"]}
        answered = {str(pydicom.dcmread(f).SOPInstanceUID) for files in parts for f in files}
        assert answered <= held
        blobs = {p.name.split(".dcm")[0] for p in (tmp_path / "var").rglob("*.dcm")}
        assert all(any(b.startswith(uid + ".") for b in blobs) for uid in answered)
    finally:
        serve.close()
