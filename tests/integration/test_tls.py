"""TLS and mTLS over real gRPC: a hospital's client certificate names it, and nothing else does."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from mutualrec.client.upload import auth_metadata
from mutualrec.identity import parse_identity, patient_key
from mutualrec.security.dev_ca import Issued, make_ca, make_client_cert, make_server_cert
from mutualrec.security.patient_tokens import mint_patient_token
from mutualrec.v1 import catalog_pb2, catalog_pb2_grpc, ingest_pb2, ingest_pb2_grpc
from tests.conftest import RunningServer, make_settings, start_server

HOSPITAL = "H500103001"
OTHER = "H500106002"


@dataclass
class Pki:
    ca: Issued
    server: Issued
    hospital: Issued
    other: Issued
    unknown: Issued
    stranger_ca: Issued
    stranger: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = make_ca(root / "ca")
    stranger_ca = make_ca(root / "stranger-ca")
    return Pki(
        ca=ca,
        server=make_server_cert(root / "ca", root / "server", ["localhost", "127.0.0.1"]),
        hospital=make_client_cert(root / "ca", root / "clients", HOSPITAL),
        other=make_client_cert(root / "ca", root / "clients", OTHER),
        unknown=make_client_cert(root / "ca", root / "clients", "H599999999"),
        stranger_ca=stranger_ca,
        stranger=make_client_cert(root / "stranger-ca", root / "strangers", HOSPITAL),
    )


def _server(tmp_path: Path, pki: Pki, mutual: bool) -> Iterator[RunningServer]:
    env = {
        "MUTUALREC_DATABASE_URL": f"sqlite:///{tmp_path / 'index.sqlite3'}",
        "MUTUALREC_TLS_CERT": str(pki.server.cert),
        "MUTUALREC_TLS_KEY": str(pki.server.key),
    }
    if mutual:
        env["MUTUALREC_TLS_CLIENT_CA"] = str(pki.ca.cert)
    return start_server(make_settings(tmp_path, **env))


@pytest.fixture
def mtls(tmp_path: Path, pki: Pki) -> Iterator[RunningServer]:
    yield from _server(tmp_path, pki, mutual=True)


def _channel(server: RunningServer, pki: Pki, client: Issued | None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )
    return grpc.secure_channel(server.address, credentials)


def _status(channel: grpc.Channel, key: str = "") -> grpc.StatusCode:
    """GetStudyStatus of a study nobody holds: NOT_FOUND once the caller is a hospital."""
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    try:
        stub.GetStudyStatus(
            ingest_pb2.GetStudyStatusRequest(study_instance_uid="1.2.3"),
            metadata=auth_metadata(key),
            timeout=10,
        )
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_a_client_certificate_names_its_hospital_without_a_key(
    mtls: RunningServer, pki: Pki
) -> None:
    mtls.add_hospital(HOSPITAL)
    with _channel(mtls, pki, pki.hospital) as channel:
        assert _status(channel) == grpc.StatusCode.NOT_FOUND
        items = catalog_pb2_grpc.CatalogServiceStub(channel).ListItems(
            catalog_pb2.ListItemsRequest(), timeout=10
        )
    assert len(items.items) == 112


def test_a_key_sent_over_mtls_must_be_the_certificates_hospital(
    mtls: RunningServer, pki: Pki
) -> None:
    own = mtls.add_hospital(HOSPITAL)
    others = mtls.add_hospital(OTHER)
    settings = mtls.runtime.settings
    token = mint_patient_token(
        settings.token_secret,
        patient_key(
            parse_identity("RESIDENT_ID_CARD", "50010319680315109X"), settings.patient_key_secret
        ),
        dt.timedelta(minutes=5),
    ).token
    with _channel(mtls, pki, pki.hospital) as channel:
        assert _status(channel, own) == grpc.StatusCode.NOT_FOUND
        assert _status(channel, others) == grpc.StatusCode.UNAUTHENTICATED
        assert _status(channel, token) == grpc.StatusCode.UNAUTHENTICATED


def test_a_certificate_of_an_unknown_institution_is_unauthenticated(
    mtls: RunningServer, pki: Pki
) -> None:
    with _channel(mtls, pki, pki.unknown) as channel:
        assert _status(channel) == grpc.StatusCode.UNAUTHENTICATED


def test_no_certificate_or_one_from_another_ca_cannot_connect(
    mtls: RunningServer, pki: Pki
) -> None:
    key = mtls.add_hospital(HOSPITAL)
    with _channel(mtls, pki, None) as channel:
        assert _status(channel, key) == grpc.StatusCode.UNAVAILABLE
    with _channel(mtls, pki, pki.stranger) as channel:
        assert _status(channel, key) == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(mtls.address) as channel:
        assert _status(channel, key) == grpc.StatusCode.UNAVAILABLE


def test_server_tls_alone_carries_api_keys(tmp_path: Path, pki: Pki) -> None:
    servers = _server(tmp_path, pki, mutual=False)
    server = next(servers)
    try:
        key = server.add_hospital(HOSPITAL)
        with _channel(server, pki, None) as channel:
            assert _status(channel, key) == grpc.StatusCode.NOT_FOUND
            assert _status(channel) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        servers.close()
