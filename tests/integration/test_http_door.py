"""The HTTP door beside gRPC: health, problem bodies for what no route answers, and admission
(credentials, the role matrix, the call rate) through real HTTP."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mutualrec.http.admission import Admission
from mutualrec.security.access import REGULATOR
from mutualrec.security.api_keys import Principal
from mutualrec.security.dev_ca import make_ca, make_client_cert, make_server_cert
from mutualrec.services.identity import TokenRequest
from tests.cds_client import Ehr, hook_request
from tests.conftest import RunningServer, make_settings, new_key, start_server
from tests.fhir_docs import PATIENT_ID


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[RunningServer]:
    settings = make_settings(
        tmp_path, MUTUALREC_DATABASE_URL=f"sqlite:///{tmp_path / 'index.sqlite3'}"
    )
    yield from start_server(settings)


def test_health_answers_beside_grpc(http_server: RunningServer) -> None:
    assert http_server.http_url is not None
    reply = httpx.get(f"{http_server.http_url}/healthz")
    assert reply.status_code == 200
    assert reply.json()["status"] == "SERVING"


def test_every_answer_carries_the_security_headers(http_server: RunningServer) -> None:
    for reply in (
        httpx.get(f"{http_server.http_url}/healthz"),
        httpx.get(f"{http_server.http_url}/no/such/thing"),
        httpx.post(f"{http_server.http_url}/cds-services/order-sign", json={}),
    ):
        assert reply.headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        )
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["cache-control"] == "no-store"
        assert reply.headers["referrer-policy"] == "no-referrer"


def test_unknown_path_is_a_problem_body(http_server: RunningServer) -> None:
    reply = httpx.get(f"{http_server.http_url}/no/such/thing")
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json()
    assert body["status"] == 404
    assert body["title"] == "Not Found"


def test_wrong_method_is_a_problem_body(http_server: RunningServer) -> None:
    reply = httpx.post(f"{http_server.http_url}/healthz")
    assert reply.status_code == 405
    assert reply.headers["content-type"] == "application/problem+json"
    assert "GET" in reply.headers["allow"]


def test_http_door_can_be_off(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        MUTUALREC_DATABASE_URL=f"sqlite:///{tmp_path / 'index.sqlite3'}",
        MUTUALREC_HTTP_LISTEN="off",
    )
    servers = start_server(settings)
    server = next(servers)
    try:
        assert server.http_url is None
    finally:
        servers.close()


def _cds_server(tmp_path: Path, **env: str) -> Iterator[RunningServer]:
    settings = make_settings(
        tmp_path, MUTUALREC_DATABASE_URL=f"sqlite:///{tmp_path / 'index.sqlite3'}", **env
    )
    return start_server(settings)


def _ehr(server: RunningServer) -> Ehr:
    server.add_hospital("H500106002", level="secondary")
    ehr = Ehr(server, "https://ehr.example.org")
    ehr.register("H500106002")
    return ehr


def test_a_credential_over_its_call_rate_gets_429_with_retry_after(tmp_path: Path) -> None:
    # One call per 100 s, no burst: the second call at once is over the rate.
    servers = _cds_server(tmp_path, MUTUALREC_RATE_LIMIT="0.01", MUTUALREC_RATE_BURST="1")
    server = next(servers)
    try:
        ehr = _ehr(server)
        request = hook_request("order-sign", [], PATIENT_ID)
        assert ehr.post("/cds-services/order-sign", request).status_code == 200
        refused = ehr.post("/cds-services/order-sign", request)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert "calls per second" in refused.json()["detail"]
        # Public routes are not that credential's: health still answers.
        assert httpx.get(f"{server.http_url}/healthz").status_code == 200
    finally:
        servers.close()


def test_an_address_whose_credentials_keep_failing_is_braked(tmp_path: Path) -> None:
    servers = _cds_server(
        tmp_path, MUTUALREC_AUTH_FAILURE_RATE="0.01", MUTUALREC_AUTH_FAILURE_BURST="1"
    )
    server = next(servers)
    try:
        ehr = _ehr(server)
        request = hook_request("order-sign", [], PATIENT_ID)
        forged = Ehr(server, ehr.issuer)  # the right issuer, the wrong key
        assert forged.post("/cds-services/order-sign", request).status_code == 401
        braked = ehr.post("/cds-services/order-sign", request)
        assert braked.status_code == 429
        assert "failed authentications" in braked.json()["detail"]
    finally:
        servers.close()


def test_tls_with_the_grpc_certificate(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    cert = make_server_cert(tmp_path / "ca", tmp_path / "server", ["localhost", "127.0.0.1"])
    servers = _cds_server(
        tmp_path, MUTUALREC_TLS_CERT=str(cert.cert), MUTUALREC_TLS_KEY=str(cert.key)
    )
    server = next(servers)
    try:
        assert server.http_url is not None
        assert server.http_url.startswith("https://")
        reply = httpx.get(
            f"{server.http_url}/healthz", verify=ssl.create_default_context(cafile=str(ca.cert))
        )
        assert reply.status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.http_url}/healthz")  # not trusting our CA: refused
        plain = server.http_url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{plain}/healthz")
    finally:
        servers.close()


def test_bearer_credentials_meet_the_same_matrix_as_grpc(http_server: RunningServer) -> None:
    """A route made by the door's admission with its default (bearer) authentication: API keys
    and patient tokens as gRPC takes them, refused by the one matrix of security/access.py."""
    admission = Admission(http_server.runtime)

    async def hook(_request: Request, principal: Principal | None) -> Response:
        assert principal is not None
        return JSONResponse({"institution": principal.institution_code})

    app = Starlette(routes=[admission.route("POST", "/cds-services/{service_id}", hook)])
    hospital = http_server.add_hospital("H500103001")
    with http_server.runtime.sessions.begin() as session:
        regulator = new_key(session, REGULATOR)
    patient = http_server.runtime.patient_tokens.issue(
        TokenRequest("RESIDENT_ID_CARD", PATIENT_ID)
    ).token
    asyncio.run(_matrix_calls(app, hospital, regulator, patient))


async def _matrix_calls(app: Starlette, hospital: str, regulator: str, patient: str) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://door") as client:

        async def call(token: str) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"}
            return await client.post("/cds-services/order-sign", headers=headers)

        allowed = await call(hospital)
        assert allowed.status_code == 200
        assert allowed.json() == {"institution": "H500103001"}
        for token, role in ((regulator, "regulator"), (patient, "patient")):
            refused = await call(token)
            assert refused.status_code == 403, role
            assert refused.json()["detail"] == (
                f"a {role} credential may not call HTTP POST /cds-services/{{service_id}} "
                "(allowed: hospital)"
            )
        assert (await call("mrk_0123456789abcdef_" + "A" * 43)).status_code == 401
        assert (await client.post("/cds-services/order-sign")).status_code == 401


def test_cds_hooks_allow_browser_clients_and_nothing_else_does(http_server: RunningServer) -> None:
    origin = {"Origin": "https://ehr.example.org"}
    preflight = httpx.options(
        f"{http_server.http_url}/cds-services/order-sign",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    discovery = httpx.get(f"{http_server.http_url}/cds-services", headers=origin)
    assert discovery.headers["access-control-allow-origin"] == "*"
    health = httpx.get(f"{http_server.http_url}/healthz", headers=origin)
    assert "access-control-allow-origin" not in health.headers


def test_with_a_client_ca_http_clients_need_its_certificate(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    cert = make_server_cert(tmp_path / "ca", tmp_path / "server", ["127.0.0.1"])
    client = make_client_cert(tmp_path / "ca", tmp_path / "clients", "H500103001")
    servers = _cds_server(
        tmp_path,
        MUTUALREC_TLS_CERT=str(cert.cert),
        MUTUALREC_TLS_KEY=str(cert.key),
        MUTUALREC_TLS_CLIENT_CA=str(ca.cert),
    )
    server = next(servers)
    try:
        with_cert = ssl.create_default_context(cafile=str(ca.cert))
        with_cert.load_cert_chain(str(client.cert), str(client.key))
        reply = httpx.get(f"{server.http_url}/healthz", verify=with_cert)
        assert reply.status_code == 200
        without = ssl.create_default_context(cafile=str(ca.cert))
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{server.http_url}/healthz", verify=without)
    finally:
        servers.close()
