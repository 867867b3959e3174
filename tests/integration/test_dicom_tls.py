"""DICOM over TLS: with gRPC's TLS settings the C-STORE door speaks TLS with the same certificate
and key, and with a client CA requires a hospital's client certificate naming the institution
of the calling AE title. pynetdicom and dcmtk's storescu as TLS SCUs, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.association import Association

from mutualrec.dicom_net import door as door_module
from mutualrec.security.dev_ca import Issued, make_ca, make_client_cert, make_server_cert
from tests.conftest import RunningServer, make_settings, start_server, unless_installed
from tests.helpers import study_files

OUR_TITLE = "MUTUALREC"
HOSPITAL = "H500103001"
OTHER = "H500106002"
VERIFICATION = "1.2.840.10008.1.1"
US = "us_abdomen_hosp_a"


@dataclass
class Pki:
    ca: Issued
    server: Issued
    hospital: Issued
    other: Issued
    stranger: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = make_ca(root / "ca")
    make_ca(root / "stranger-ca")
    return Pki(
        ca=ca,
        server=make_server_cert(root / "ca", root / "server", ["localhost", "127.0.0.1"]),
        hospital=make_client_cert(root / "ca", root / "clients", HOSPITAL),
        other=make_client_cert(root / "ca", root / "clients", OTHER),
        stranger=make_client_cert(root / "stranger-ca", root / "strangers", HOSPITAL),
    )


def _door(tmp_path: Path, database_url: str, pki: Pki, mutual: bool) -> Iterator[RunningServer]:
    env = {
        "MUTUALREC_DATABASE_URL": database_url,
        "MUTUALREC_DICOM_LISTEN": "127.0.0.1:0",
        "MUTUALREC_DICOM_AE_TITLE": OUR_TITLE,
        "MUTUALREC_TLS_CERT": str(pki.server.cert),
        "MUTUALREC_TLS_KEY": str(pki.server.key),
    }
    if mutual:
        env["MUTUALREC_TLS_CLIENT_CA"] = str(pki.ca.cert)
    for server in start_server(make_settings(tmp_path, **env)):
        server.add_hospital(HOSPITAL)
        server.add_hospital(OTHER)
        server.runtime.dicom_peers.add(HOSPITAL, "YUZHONG_PACS")
        yield server


@pytest.fixture
def tls(tmp_path: Path, database_url: str, pki: Pki) -> Iterator[RunningServer]:
    yield from _door(tmp_path, database_url, pki, mutual=False)


@pytest.fixture
def mtls(tmp_path: Path, database_url: str, pki: Pki) -> Iterator[RunningServer]:
    yield from _door(tmp_path, database_url, pki, mutual=True)


def _port(server: RunningServer) -> int:
    assert server.dicom is not None
    return server.dicom.port


def _client_context(pki: Pki, client: Issued | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca.cert))
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return context


def _associate(
    server: RunningServer, pki: Pki | None, client: Issued | None = None, sop_class: str = ""
) -> Association:
    """An association as YUZHONG_PACS, over TLS unless ``pki`` is None."""
    ae = AE(ae_title="YUZHONG_PACS")
    # Connecting and the handshake: a door that never answers fails the test, never hangs it.
    ae.connection_timeout = 20
    ae.add_requested_context(VERIFICATION)
    if sop_class:
        ae.add_requested_context(sop_class)
    tls_args = None if pki is None else (_client_context(pki, client), "localhost")
    return ae.associate("127.0.0.1", _port(server), ae_title=OUR_TITLE, tls_args=tls_args)


def _instance(manifest: dict[str, Any]) -> Dataset:
    study = manifest[US]
    ds = pydicom.dcmread(study_files(study)[0])
    item = Dataset()
    item.PatientID = study["patient"]["document_number"]
    item.IssuerOfPatientID = "RESIDENT_ID_CARD"
    ds.OtherPatientIDsSequence = [item]
    return ds


def test_the_door_speaks_tls_with_grpcs_certificate(
    tls: RunningServer, pki: Pki, manifest: dict[str, Any]
) -> None:
    instance = _instance(manifest)
    assoc = _associate(tls, pki, sop_class=instance.SOPClassUID)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assert assoc.send_c_store(instance).Status == 0x0000
    assoc.release()

    # Plain TCP to a TLS door never gets an association; the door goes on.
    plain = _associate(tls, None)
    assert not plain.is_established
    again = _associate(tls, pki)
    assert again.is_established
    again.release()


def test_mutual_tls_requires_the_callers_own_certificate(
    mtls: RunningServer, pki: Pki, manifest: dict[str, Any]
) -> None:
    instance = _instance(manifest)
    own = _associate(mtls, pki, pki.hospital, instance.SOPClassUID)
    assert own.is_established
    assert own.send_c_store(instance).Status == 0x0000
    own.release()

    # No certificate, or one another CA signed: no association at all.
    for client in (None, pki.stranger):
        refused = _associate(mtls, pki, client)
        assert not refused.is_established, client
    # Another hospital's certificate for YUZHONG_PACS: rejected, calling AE not recognized.
    other = _associate(mtls, pki, pki.other)
    assert other.is_rejected
    answer = other.acceptor.primitive
    assert answer is not None
    assert (answer.result, answer.diagnostic) == (0x01, 0x03)


@unless_installed(shutil.which("storescu") is None, "dcmtk's storescu is missing")
def test_storescu_stores_over_mutual_tls(
    mtls: RunningServer, pki: Pki, manifest: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "sent.dcm"
    _instance(manifest).save_as(path)

    def storescu(client: Issued) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "storescu",
                "-aet",
                "YUZHONG_PACS",
                "-aec",
                OUR_TITLE,
                "+tls",
                str(client.key),
                str(client.cert),
                "+cf",
                str(pki.ca.cert),
                "127.0.0.1",
                str(_port(mtls)),
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = storescu(pki.hospital)
    assert done.returncode == 0, done.stdout + done.stderr
    refused = storescu(pki.stranger)
    assert refused.returncode != 0


def test_a_client_that_never_starts_its_handshake_does_not_hold_the_door(
    tls: RunningServer, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pynetdicom handshakes on its accepting thread: the bound is what lets others in.
    monkeypatch.setattr(door_module, "HANDSHAKE_SECONDS", 0.5)
    with socket.create_connection(("127.0.0.1", _port(tls))) as silent:
        assoc = _associate(tls, pki)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        # The silent client was dropped by then.
        silent.settimeout(30)
        assert silent.recv(1) == b""
