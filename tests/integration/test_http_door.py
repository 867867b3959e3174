"""The HTTP door beside gRPC: health, problem bodies for what no route answers, and admission
(credentials, the role matrix, the call rate) through real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer, make_settings, start_server


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
