"""CDS Hooks end to end: `mutualrec serve`, an EHR registered with the admin commands (a JWKS
file and a PEM file), and its calls over real HTTP; with several processes, every one serves
HTTP on the one port."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.cds_client import Ehr, hook_request
from tests.e2e.test_serve import MUTUALREC, ServeProcess, _free_port, _register, _spawn
from tests.fhir_docs import PATIENT_ID

pytestmark = pytest.mark.e2e


def _http_url(proc: ServeProcess) -> str:
    line = next(line for line in proc.lines if line.strip().startswith("HTTP:"))
    return re.search(r"(https?://\S+)", line).group(1)  # type: ignore[union-attr]


class _Remote:
    """Stands in for RunningServer where the test client only needs the HTTP URL."""

    def __init__(self, url: str) -> None:
        self.http_url = url


def test_admin_registers_an_ehr_that_then_calls(tmp_path: Path) -> None:
    for proc in _spawn(tmp_path, {}):
        url = _http_url(proc)
        _register(proc, "H500106002")
        ehr = Ehr(_Remote(url), "https://ehr.example.org")  # type: ignore[arg-type]
        jwks = tmp_path / "ehr.jwks.json"
        jwks.write_text(ehr.jwks())
        added = proc.cli(
            "admin", "add-cds-client", "--institution", "H500106002",
            "--issuer", ehr.issuer, "--jwks", str(jwks),
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        assert "1 key(s)" in added.stdout
        pem_ehr = Ehr(_Remote(url), "https://pem-ehr.example.org")  # type: ignore[arg-type]
        pem = tmp_path / "ehr.pem"
        pem.write_text(pem_ehr.public_pem())
        assert proc.cli(
            "admin", "add-cds-client", "--institution", "H500106002",
            "--issuer", pem_ehr.issuer, "--jwks", str(pem),
        ).returncode == 0  # fmt: skip
        again = proc.cli(
            "admin", "add-cds-client", "--institution", "H500106002",
            "--issuer", ehr.issuer, "--jwks", str(jwks),
        )  # fmt: skip
        assert again.returncode != 0
        assert "registered already" in again.stderr
        private = tmp_path / "private.jwk"
        private.write_text('{"kty": "EC", "crv": "P-384", "x": "a", "y": "b", "d": "c"}')
        refused = proc.cli(
            "admin", "add-cds-client", "--institution", "H500106002",
            "--issuer", "https://other.example.org", "--jwks", str(private),
        )  # fmt: skip
        assert refused.returncode != 0
        assert "private key" in refused.stderr
        listed = proc.cli("admin", "cds-clients")
        assert "2 CDS client(s)" in listed.stdout
        assert ehr.issuer in listed.stdout

        request = hook_request("order-sign", [], PATIENT_ID)
        assert ehr.post("/cds-services/order-sign", request).status_code == 200
        assert pem_ehr.post("/cds-services/order-sign", request).status_code == 200
        removed = proc.cli("admin", "remove-cds-client", ehr.issuer)
        assert removed.returncode == 0
        assert ehr.post("/cds-services/order-sign", request).status_code == 401
        assert proc.cli("admin", "remove-cds-client", ehr.issuer).returncode == 1
        proc.process.send_signal(signal.SIGTERM)
        assert proc.process.wait(30) == 0


def test_several_processes_serve_http_on_one_port(tmp_path: Path) -> None:
    http_port = _free_port()
    env = {
        "MUTUALREC_PROCESSES": "2",
        "MUTUALREC_LISTEN": f"127.0.0.1:{_free_port()}",
        "MUTUALREC_HTTP_LISTEN": f"127.0.0.1:{http_port}",
    }
    for proc in _spawn(tmp_path, env):
        url = _http_url(proc)
        assert url == f"http://127.0.0.1:{http_port}"
        # New connections each time: the kernel spreads them over both processes.
        for _ in range(8):
            assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        proc.process.send_signal(signal.SIGTERM)
        assert proc.process.wait(30) == 0


def test_a_taken_http_port_is_said_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MUTUALREC_")}
        env.update(
            MUTUALREC_LISTEN="127.0.0.1:0",
            MUTUALREC_HTTP_LISTEN=f"127.0.0.1:{port}",
            MUTUALREC_DATA_DIR=str(tmp_path / "var"),
        )
        result = subprocess.run(
            [MUTUALREC, "serve"], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 2
    assert f"cannot listen for HTTP on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
