"""A running service holding the sample studies (and a JPEG-compressed copy of one), for the
DICOMweb tests: the HTTP door's base URL and the credentials each role calls with."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from mutualrec.client.upload import auth_metadata
from mutualrec.localtime import LOCAL_ZONE
from mutualrec.security.access import ADMIN, REGULATOR
from mutualrec.storage import catalog_store
from mutualrec.v1 import (
    common_pb2,
    imaging_pb2,
    imaging_pb2_grpc,
    recognition_pb2,
    recognition_pb2_grpc,
)
from tests.conftest import (
    SAMPLES,
    RunningServer,
    make_settings,
    module_database,
    new_key,
    start_server,
)
from tests.helpers import chunk_messages, header_message, study_files, upload

ZHANG = "50010319680315109X"  # CT chest at hospital A, chest films at hospital C
WANG = "500106195511021028"  # CT head and MR brain at hospital B
LI = "500112199007211020"  # abdominal ultrasound at hospital A
CHECKER = "H500106002"  # holds nothing of Zhang's; checks orders for him
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
JPEG_ACCESSION = "CT-JPEG-1"


@dataclass
class Region:
    """The service, the manifest of what it holds, and who may call it."""

    server: RunningServer
    manifest: dict[str, Any]
    hospital_keys: dict[str, str]
    admin_key: str
    regulator_key: str
    # The JPEG-compressed copy of Zhang's chest CT: its UIDs and files by SOP Instance UID.
    jpeg_study: str = ""
    jpeg_files: dict[str, bytes] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The DICOMweb root."""
        assert self.server.http_url is not None
        return self.server.http_url + "/dicomweb"

    def token(self, document_number: str) -> str:
        """A patient token minted through IdentityService."""
        stub = imaging_pb2_grpc.IdentityServiceStub(self.server.channel)
        response = stub.IssuePatientToken(
            imaging_pb2.IssuePatientTokenRequest(
                patient=common_pb2.PatientIdentity(
                    document_type=common_pb2.RESIDENT_ID_CARD, document_number=document_number
                ),
                ttl_seconds=600,
            ),
            metadata=auth_metadata(self.admin_key),
        )
        return str(response.token)

    def share_token(self, patient_token: str, study_uid: str) -> str:
        """A share link's token for one of the patient's studies."""
        stub = imaging_pb2_grpc.ImagingServiceStub(self.server.channel)
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        created = stub.CreateShareLink(
            imaging_pb2.CreateShareLinkRequest(
                study_instance_uid=study_uid, expire_time=expires.isoformat()
            ),
            metadata=auth_metadata(patient_token),
        )
        return str(created.token)

    def studies_of(self, document_number: str) -> dict[str, dict[str, Any]]:
        """The manifest's studies of one patient, by Study Instance UID."""
        return {
            s["study_instance_uid"]: s
            for s in self.manifest.values()
            if s["patient"]["document_number"] == document_number
        }

    def get(self, path: str, credential: str | None, **kwargs: Any) -> httpx.Response:
        """GET a DICOMweb path with a Bearer credential."""
        headers = dict(kwargs.pop("headers", {}))
        if credential is not None:
            headers["Authorization"] = f"Bearer {credential}"
        return httpx.get(self.url + path, headers=headers, timeout=60, **kwargs)


def _jpeg_copy(sample: dict[str, Any], tmp: Path) -> tuple[str, dict[str, bytes]]:
    """The sample's files under new UIDs, compressed to JPEG Lossless by dcmtk's dcmcjpeg."""
    study_uid = pydicom.uid.generate_uid()
    series: dict[str, str] = defaultdict(pydicom.uid.generate_uid)
    files = {}
    for number, path in enumerate(study_files(sample)):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series[ds.SeriesInstanceUID]
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.AccessionNumber = JPEG_ACCESSION
        native, compressed = tmp / f"native-{number}.dcm", tmp / f"jpeg-{number}.dcm"
        ds.save_as(native, enforce_file_format=True)
        subprocess.run(["dcmcjpeg", str(native), str(compressed)], check=True)
        files[str(ds.SOPInstanceUID)] = compressed.read_bytes()
    return study_uid, files


def upload_today(server: RunningServer, key: str, sample: dict[str, Any]) -> str:
    """A copy of a sample study dated today under new UIDs; its Study Instance UID."""
    today = dt.datetime.now(LOCAL_ZONE)
    study_uid = pydicom.uid.generate_uid()
    series: dict[str, str] = defaultdict(pydicom.uid.generate_uid)
    messages = [header_message(sample, accession_number=f"ACC-{study_uid[-8:]}")]
    for number, path in enumerate(study_files(sample)):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series[ds.SeriesInstanceUID]
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyDate = today.strftime("%Y%m%d")
        ds.StudyTime = "000000"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        messages += chunk_messages(buffer.getvalue(), f"today-{number}.dcm")
    upload(server.channel, key, messages)
    return study_uid


def qualify(server: RunningServer, *codes: str) -> None:
    """Give institutions a city-wide imaging qualification since long ago."""
    with server.runtime.sessions.begin() as session:
        catalog = catalog_store.current_catalog(session)
        for code in codes:
            catalog_store.add_qualification(
                session,
                code,
                item_code=None,
                category="imaging",
                scope="city",
                valid_from=dt.datetime.now(dt.UTC) - dt.timedelta(days=400),
                valid_until=None,
                catalog=catalog,
            )
    server.runtime.reference.invalidate()


def check(server: RunningServer, key: str, document_number: str, code: str) -> Any:
    """CheckOrder of one item for a patient."""
    stub = recognition_pb2_grpc.RecognitionServiceStub(server.channel)
    return stub.CheckOrder(
        recognition_pb2.CheckOrderRequest(
            patient=common_pb2.PatientIdentity(
                document_type=common_pb2.RESIDENT_ID_CARD, document_number=document_number
            ),
            ordered_codes=[code],
        ),
        metadata=auth_metadata(key),
    )


def region_on(request: pytest.FixtureRequest, tmp: Path, **env: str) -> Iterator[Region]:
    """The sample studies uploaded by their hospitals (plus the JPEG copy), on the database
    ``request.param`` names ("sqlite" or "postgres"), with ``env``'s further settings."""
    databases = module_database(request, tmp, "dicomweb_read")
    url = next(databases)

    import json

    manifest = json.loads((SAMPLES / "manifest.json").read_text())["studies"]
    servers = start_server(make_settings(tmp, MUTUALREC_DATABASE_URL=url, **env))
    server = next(servers)
    try:
        keys: dict[str, str] = {}
        for study in manifest.values():
            code = study["institution_code"]
            if code not in keys:
                keys[code] = server.add_hospital(code)
            messages = [header_message(study)]
            for path in study_files(study):
                messages += chunk_messages(path.read_bytes(), path.name)
            assert upload(server.channel, keys[code], messages).counts.stored == len(study["files"])
        ct = manifest["ct_chest_contrast_hosp_a"]
        jpeg_study, jpeg_files = _jpeg_copy(ct, tmp)
        messages = [header_message(ct, accession_number=JPEG_ACCESSION)]
        for number, data in enumerate(jpeg_files.values()):
            messages += chunk_messages(data, f"jpeg-{number}.dcm")
        assert upload(server.channel, keys[ct["institution_code"]], messages).counts.stored == len(
            jpeg_files
        )
        with server.runtime.sessions.begin() as session:
            admin_key = new_key(session, ADMIN)
            regulator_key = new_key(session, REGULATOR)
        yield Region(server, manifest, keys, admin_key, regulator_key, jpeg_study, jpeg_files)
    finally:
        servers.close()
        databases.close()
