"""Shared fixtures: databases (SQLite and real PostgreSQL), an in-process gRPC server, samples."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pydicom
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from mutualrec.config import Settings, load_settings
from mutualrec.dicom_net.door import DicomDoor, listening_door
from mutualrec.http.serving import open_http_door
from mutualrec.runtime import Runtime
from mutualrec.security.access import HOSPITAL
from mutualrec.security.api_keys import issue_key
from mutualrec.server import build_server
from mutualrec.storage.institutions import add_institution, add_key


def new_key(session: Session, role: str, institution_code: str | None = None) -> str:
    """An API key issued inside the caller's transaction (as the key service does); its token."""
    issued = issue_key()
    add_key(session, issued, role, institution_code)
    return issued.token


REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "dicom_samples"
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
POSTGRES_URL = os.environ.get(
    "MUTUALREC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_unavailable() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL)
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_URL} is not reachable ({exc.__class__.__name__})"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip on a developer machine without the service; fail in CI, where it must be there."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run these tests")
    pytest.skip(reason)


def unless_installed(missing: bool, reason: str) -> pytest.MarkDecorator:
    """Skip the tests of a tool ``missing`` on a developer machine; in CI run them anyway (and
    fail), as :func:`skip_or_fail` does: CI installs every tool the tests use."""
    return pytest.mark.skipif(missing and not os.environ.get("CI"), reason=reason)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """URL of the PostgreSQL server's maintenance database."""
    reason = _postgres_unavailable()
    if reason:
        skip_or_fail(reason)
    return POSTGRES_URL


def fresh_postgres(admin_url: str, prefix: str = "mutualrec_test") -> Iterator[str]:
    """A fresh, empty PostgreSQL database's URL, dropped when the generator is closed."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def module_database(
    request: pytest.FixtureRequest, tmp: Path, prefix: str = "mutualrec_test"
) -> Iterator[str]:
    """A fresh database of the kind a fixture is parametrized with ("sqlite" or "postgres"),
    for as long as the generator is open (a module's fixture closes it at its end)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp / 'index.sqlite3'}"
        return
    yield from fresh_postgres(str(request.getfixturevalue("postgres_admin_url")), prefix)


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    yield from fresh_postgres(postgres_admin_url)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on the embedded SQLite index and on real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


def make_settings(tmp_path: Path, **env: str) -> Settings:
    """Settings for a test: data under ``tmp_path``, a free port, schema migrated."""
    base = {
        "MUTUALREC_DATA_DIR": str(tmp_path / "var"),
        "MUTUALREC_LISTEN": "127.0.0.1:0",
        # A free port too: never the default 8080, which a developer's `make serve` may hold.
        "MUTUALREC_HTTP_LISTEN": "127.0.0.1:0",
        "MUTUALREC_AUTO_MIGRATE": "true",
        "MUTUALREC_PATIENT_KEY_SECRET": "test-secret-" + "x" * 32,
        "MUTUALREC_SHUTDOWN_GRACE_SECONDS": "5",
        # Parsing on the server's threads: a test server starts in milliseconds, not a second;
        # the worker processes have their own tests.
        "MUTUALREC_PARSE_WORKERS": "0",
        # Revocation takes effect at once, as tests of it expect.
        "MUTUALREC_AUTH_CACHE_SECONDS": "0",
        # Tests call as fast as they can; the limits have tests of their own.
        "MUTUALREC_RATE_LIMIT": "0",
    }
    base.update(env)
    return load_settings(base)


@dataclass
class RunningServer:
    """A real gRPC server on a loopback port, in this process, and what it runs on."""

    address: str
    runtime: Runtime
    channel: grpc.Channel
    # The DICOM listener, when the settings name MUTUALREC_DICOM_LISTEN (as `serve` starts it).
    dicom: DicomDoor | None = None
    # The HTTP door's base URL (http://127.0.0.1:PORT), unless MUTUALREC_HTTP_LISTEN is off.
    http_url: str | None = None

    def add_hospital(self, code: str, district: str = "Yuzhong", level: str = "tertiary") -> str:
        """Register an institution and return a fresh API key for it."""
        with self.runtime.sessions.begin() as session:
            add_institution(session, code, f"Hospital {code}", district, level)
            return new_key(session, HOSPITAL, code)

    def new_channel(self) -> grpc.Channel:
        """Another channel to the server (one per concurrent client)."""
        return grpc.insecure_channel(self.address)


def start_server(settings: Settings) -> Iterator[RunningServer]:
    """Run the server on its own event loop thread until the generator is closed."""
    runtime = Runtime.open(settings)
    started: dict[str, Any] = {}
    ready = threading.Event()
    stop = threading.Event()

    async def main() -> None:
        server, _health, port = await build_server(runtime)
        await server.start()
        http = await open_http_door(runtime)
        started["port"] = port
        started["http_url"] = http.base_url if http is not None else None
        ready.set()
        # Polled rather than signalled across threads: simple and robust with grpc's own poller.
        while not stop.is_set():  # noqa: ASYNC110 - the flag is set from another thread
            await asyncio.sleep(0.05)
        if http is not None:
            await http.stop()
        await server.stop(1)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    address = f"127.0.0.1:{started['port']}"
    channel = grpc.insecure_channel(address)
    dicom = listening_door(runtime)
    try:
        yield RunningServer(address, runtime, channel, dicom, started["http_url"])
    finally:
        if dicom is not None:
            dicom.stop(1)
        channel.close()
        stop.set()
        thread.join(30)
        runtime.close()


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[RunningServer]:
    """The service on SQLite and on PostgreSQL, with the local-directory object store."""
    yield from start_server(make_settings(tmp_path, MUTUALREC_DATABASE_URL=database_url))


@pytest.fixture(scope="session")
def manifest() -> dict[str, Any]:
    """The sample studies' manifest, written by dicom_samples/make_samples.py."""
    data: dict[str, Any] = json.loads((SAMPLES / "manifest.json").read_text())
    return data["studies"]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """A real S3-compatible server (Swift with s3api) on a free loopback port."""
    from tests.s3.server import LocalS3Server, s3_server_available

    reason = s3_server_available()
    if reason is not None:
        skip_or_fail(reason)
    with LocalS3Server() as running:
        yield running


def s3_env(s3_server: Any, bucket: str) -> dict[str, str]:
    """The MUTUALREC_* settings that point the service at ``bucket`` on ``s3_server``."""
    return {
        "MUTUALREC_OBJECT_STORE": f"s3://{bucket}",
        "MUTUALREC_S3_ENDPOINT": s3_server.endpoint,
        "MUTUALREC_S3_ACCESS_KEY": s3_server.access_key,
        "MUTUALREC_S3_SECRET_KEY": s3_server.secret_key,
        "MUTUALREC_S3_SECURE": "false",
        "MUTUALREC_S3_REGION": s3_server.region,
    }
