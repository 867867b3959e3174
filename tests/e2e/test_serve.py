"""End to end: `mutualrec serve` as a process, the CLI as its client."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import SAMPLES, s3_env
from tests.fhir_docs import PATIENT_ID, bundle, encode, observation

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
MUTUALREC = str(BIN / "mutualrec")


@dataclass
class ServeProcess:
    """A running `mutualrec serve` and the environment its commands share."""

    process: subprocess.Popen[str]
    address: str
    env: dict[str, str]
    cwd: Path
    lines: list[str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a `mutualrec` command against the same settings."""
        return subprocess.run(
            [MUTUALREC, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )


def _spawn(cwd: Path, env_overrides: dict[str, str]) -> Iterator[ServeProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUTUALREC_")}
    env["MUTUALREC_LISTEN"] = "127.0.0.1:0"
    # Never the default 8080, which a developer's `make serve` may hold; several processes
    # share one fixed port (as their gRPC port).
    several = int(env_overrides.get("MUTUALREC_PROCESSES", "1")) > 1
    env["MUTUALREC_HTTP_LISTEN"] = f"127.0.0.1:{_free_port() if several else 0}"
    env.update(env_overrides)
    process = subprocess.Popen(
        [MUTUALREC, "serve"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())
            if line.startswith("mutualrec listening on"):
                found.set()

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(60):
        process.kill()
        pytest.fail("server did not start:\n" + "\n".join(lines))
    address = re.search(
        r"listening on (\S+)", next(line for line in lines if "listening" in line)
    ).group(1)  # type: ignore[union-attr]
    env["MUTUALREC_SERVER"] = address
    try:
        yield ServeProcess(process, address, env, cwd, lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[ServeProcess]:
    """The service on its embedded defaults (no settings but a free port), in an empty folder."""
    yield from _spawn(tmp_path, {})


def _register(proc: ServeProcess, code: str) -> str:
    added = proc.cli(
        "admin",
        "add-institution",
        "--code",
        code,
        "--name",
        "Demo",
        "--district",
        "Yuzhong",
        "--level",
        "tertiary",
    )
    assert added.returncode == 0, added.stderr
    issued = proc.cli("admin", "issue-key", "--institution", code)
    assert issued.returncode == 0, issued.stderr
    return issued.stdout.strip()


def test_embedded_defaults_health_reflection_upload_and_graceful_stop(
    embedded: ServeProcess, manifest: dict[str, Any]
) -> None:
    out = "\n".join(embedded.lines)
    assert f"index:   sqlite:///{embedded.cwd / 'var' / 'index.sqlite3'}" in out
    assert f"objects: directory {embedded.cwd / 'var' / 'objects'}" in out

    with grpc.insecure_channel(embedded.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="mutualrec.v1.IngestService")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflected = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for r in reflected for s in r.list_services_response.service}
        assert {"mutualrec.v1.IngestService", "grpc.health.v1.Health"} <= names
        # grpc.reflection.v1, which current grpcurl and Postman ask: the same messages on the
        # wire under another service name, so a v1 client's bytes are v1alpha's.
        v1 = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        listed, described = v1(
            iter(
                [
                    reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(
                        file_containing_symbol="grpc.reflection.v1.ServerReflection"
                    ),
                ]
            ),
            timeout=10,
        )
        v1_names = {s.name for s in listed.list_services_response.service}
        assert {
            "mutualrec.v1.IngestService",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        } <= v1_names
        (serialized,) = described.file_descriptor_response.file_descriptor_proto
        v1_file = descriptor_pb2.FileDescriptorProto.FromString(serialized)
        assert v1_file.package == "grpc.reflection.v1"
        assert [m.input_type for m in v1_file.service[0].method] == [
            ".grpc.reflection.v1.ServerReflectionRequest"
        ]

    study = manifest["ct_chest_contrast_hosp_a"]
    key = _register(embedded, study["institution_code"])
    folder = str(SAMPLES / "ct_chest_contrast_hosp_a")
    args = [
        "upload",
        "--key",
        key,
        "--patient-id",
        study["patient"]["document_number"],
        "--json",
        folder,
    ]
    first = embedded.cli(*args)
    assert first.returncode == 0, first.stderr
    outcomes = json.loads(first.stdout)
    assert outcomes["counts"]["stored"] == study["instance_count"]
    again = json.loads(embedded.cli(*args).stdout)
    assert again["counts"]["duplicate_identical"] == study["instance_count"]

    status = embedded.cli("study-status", "--key", key, study["study_instance_uid"], "--json")
    assert status.returncode == 0, status.stderr
    assert len(json.loads(status.stdout)["instances"]) == study["instance_count"]
    # Without --json, for people: the study's summary and a table of its instances.
    link = f"mutualrec://study/{study['study_instance_uid']}"
    readable = embedded.cli("study-status", "--key", key, link)
    assert readable.returncode == 0, readable.stderr
    assert "2 series, 12 instances, 1594176 bytes" in readable.stdout
    assert readable.stdout.count(" 1  132812  ") == 6

    embedded.process.send_signal(signal.SIGTERM)
    assert embedded.process.wait(30) == 0
    time.sleep(0.2)
    assert "mutualrec stopped" in embedded.lines


def test_upload_cli_exit_status_and_rejections(
    embedded: ServeProcess, manifest: dict[str, Any], tmp_path: Path
) -> None:
    study = manifest["dx_chest_2v_hosp_c"]
    key = _register(embedded, study["institution_code"])
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all" * 20)
    files = [str(SAMPLES / f["path"]) for f in study["files"]]
    result = embedded.cli(
        "upload",
        "--key",
        key,
        "--patient-id",
        study["patient"]["document_number"],
        "--json",
        *files,
        str(junk),
    )
    assert result.returncode == 1
    body = json.loads(result.stdout)
    assert body["counts"]["stored"] == 2
    assert body["counts"]["rejected"] == 1
    rejected = next(i for i in body["instances"] if i["outcome"] == "REJECTED")
    assert rejected["violations"][0]["reason"] == "NOT_DICOM"

    wrong_key = embedded.cli(
        "upload",
        "--key",
        key[:-2] + "zz",
        "--patient-id",
        study["patient"]["document_number"],
        *files,
    )
    assert wrong_key.returncode == 2
    assert "UNAUTHENTICATED" in wrong_key.stderr
    bad_id = embedded.cli("upload", "--key", key, "--patient-id", "500103196803151091", *files)
    assert bad_id.returncode == 2
    assert "INVALID_ARGUMENT" in bad_id.stderr


def test_submit_fhir_cli_reports_outcomes_and_refusals(
    embedded: ServeProcess, tmp_path: Path
) -> None:
    key = _register(embedded, "H500103001")
    batch = tmp_path / "batch.json"
    batch.write_bytes(encode(bundle([observation("CLI-1"), observation("CLI-2", unit="mM")])))
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": "Observation", "status": ')

    result = embedded.cli("submit-fhir", "--key", key, "--json", str(batch), str(bad))

    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    outcomes = [e["outcome"] for e in report[0]["response"]["entries"]]
    assert outcomes == ["CONTEXT", "CREATED", "ENTRY_REJECTED"]
    assert report[1]["refused"]["code"] == "INVALID_ARGUMENT"
    assert report[1]["refused"]["violations"][0]["field"] == "body"

    again = embedded.cli("submit-fhir", "--key", key, str(tmp_path / "batch.json"))
    assert again.returncode == 1  # the bad unit is still rejected
    assert "UNCHANGED" in again.stdout
    clean = tmp_path / "clean.json"
    clean.write_bytes(encode(bundle([observation("CLI-1")])))
    assert embedded.cli("submit-fhir", "--key", key, str(clean)).returncode == 0


def test_check_and_decide_cli_over_a_submitted_result(
    embedded: ServeProcess, tmp_path: Path
) -> None:
    issuer = _register(embedded, "H500103001")
    asker = _register(embedded, "H500106002")
    qualified = embedded.cli(
        "admin",
        "add-qualification",
        "--institution",
        "H500103001",
        "--category",
        "lab",
        "--scope",
        "city",
        "--from",
        "2020-01-01",
    )
    assert qualified.returncode == 0, qualified.stderr
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    results = tmp_path / "k.json"
    results.write_bytes(encode(bundle([observation("CLI-K", issued=issued.isoformat())])))
    assert embedded.cli("submit-fhir", "--key", issuer, str(results)).returncode == 0

    checked = embedded.cli(
        "check", "--key", asker, "--patient-id", PATIENT_ID, "--json", "LAB-K", "LAB-NA"
    )

    assert checked.returncode == 0, checked.stderr
    reply = json.loads(checked.stdout)
    assert [line["verdict"] for line in reply["lines"]] == ["RECOGNIZABLE", "NO_RESULT"]
    check_id = reply["check_id"]
    accepted = embedded.cli("decide", "--key", asker, "--json", check_id, "LAB-K", "accept")
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["booked_saving"] == "4.00"
    refused = embedded.cli(
        "decide", "--key", asker, check_id, "LAB-K", "decline", "--reason", "patient-request"
    )
    assert refused.returncode == 2
    assert "FAILED_PRECONDITION" in refused.stderr
    readable = embedded.cli("check", "--key", asker, "--patient-id", PATIENT_ID, "LAB-K")
    assert "RECOGNIZABLE" in readable.stdout
    assert "有效期至" in readable.stdout  # reasons are in Chinese unless asked otherwise
    english = embedded.cli(
        "check", "--key", asker, "--patient-id", PATIENT_ID, "--lang", "en", "LAB-K"
    )
    assert "valid until" in english.stdout


def test_postgres_needs_an_explicit_schema_upgrade(tmp_path: Path, postgres_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUTUALREC_")}
    env.update(
        MUTUALREC_DATABASE_URL=postgres_url,
        MUTUALREC_DATA_DIR=str(tmp_path / "var"),
        MUTUALREC_LISTEN="127.0.0.1:0",
        MUTUALREC_HTTP_LISTEN="127.0.0.1:0",
    )
    refused = subprocess.run(
        [MUTUALREC, "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert "mutualrec db upgrade" in refused.stderr
    upgraded = subprocess.run(
        [MUTUALREC, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
    )
    assert upgraded.returncode == 0, upgraded.stderr


@pytest.mark.s3
def test_service_on_postgres_and_s3(
    tmp_path: Path, postgres_url: str, s3_server: Any, manifest: dict[str, Any]
) -> None:
    from minio import Minio

    bucket = "mutualrec-e2e"
    Minio(
        s3_server.endpoint,
        s3_server.access_key,
        s3_server.secret_key,
        secure=False,
        region=s3_server.region,
    ).make_bucket(bucket)
    env = {"MUTUALREC_DATABASE_URL": postgres_url, **s3_env(s3_server, bucket)}
    subprocess.run(
        [MUTUALREC, "db", "upgrade"],
        env={**os.environ, **env},
        check=True,
        timeout=60,
        capture_output=True,
    )
    for proc in _spawn(tmp_path, env):
        assert f"objects: s3 bucket {bucket}" in "\n".join(proc.lines)
        study = manifest["mr_brain_hosp_b"]
        key = _register(proc, study["institution_code"])
        result = proc.cli(
            "upload",
            "--key",
            key,
            "--patient-id",
            study["patient"]["document_number"],
            "--json",
            str(SAMPLES / "mr_brain_hosp_b"),
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["counts"]["stored"] == study["instance_count"]
        client = Minio(
            s3_server.endpoint,
            s3_server.access_key,
            s3_server.secret_key,
            secure=False,
            region=s3_server.region,
        )
        keys = [o.object_name for o in client.list_objects(bucket, prefix="dicom/", recursive=True)]
        assert len(keys) == study["instance_count"]
        by_sha = {f["sha256"]: f for f in study["files"]}
        for key_name in keys:
            sha = key_name.removesuffix(".dcm").rsplit(".", 1)[1]
            body = client.get_object(bucket, key_name).read()
            assert body == (SAMPLES / by_sha[sha]["path"]).read_bytes()


def test_sigterm_lets_an_inflight_upload_finish(
    embedded: ServeProcess, manifest: dict[str, Any]
) -> None:
    from tests.helpers import file_messages, header_message, upload

    study = manifest["ct_chest_contrast_hosp_a"]
    key = _register(embedded, study["institution_code"])
    files = [SAMPLES / f["path"] for f in study["files"]]
    first_sent = threading.Event()

    def slow_messages() -> Iterator[Any]:
        yield header_message(study)
        for index, message in enumerate(file_messages(files)):
            yield message
            if index == 0:
                first_sent.set()
            time.sleep(0.1)

    results: list[Any] = []
    with grpc.insecure_channel(embedded.address) as channel:
        worker = threading.Thread(
            target=lambda: results.append(upload(channel, key, slow_messages()))
        )
        worker.start()
        assert first_sent.wait(30)
        # The signal must find the call in flight on the server (not still in transport): wait
        # until the region holds the first instance.
        _wait_until_held(channel, key, study["study_instance_uid"])
        embedded.process.send_signal(signal.SIGTERM)
        worker.join(60)
    assert results, "the in-flight upload failed"
    assert results[0].counts.stored == study["instance_count"]
    assert embedded.process.wait(30) == 0


def _wait_until_held(channel: grpc.Channel, key: str, study_uid: str) -> None:
    from mutualrec.client.upload import auth_metadata
    from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc

    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    for _ in range(300):
        with contextlib.suppress(grpc.RpcError):
            status = stub.GetStudyStatus(
                ingest_pb2.GetStudyStatusRequest(study_instance_uid=study_uid),
                metadata=auth_metadata(key),
            )
            if status.instances:
                return
        time.sleep(0.05)
    raise AssertionError("the upload never reached the server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _upload_part(
    proc: ServeProcess, args: list[str], part: list[str]
) -> subprocess.CompletedProcess[str]:
    return proc.cli(*args, "--json", *part)


def test_several_processes_share_the_port(tmp_path: Path, manifest: dict[str, Any]) -> None:
    env = {"MUTUALREC_PROCESSES": "2", "MUTUALREC_LISTEN": f"127.0.0.1:{_free_port()}"}
    for proc in _spawn(tmp_path, env):
        assert "(2 processes)" in proc.lines[-1]
        study = manifest["ct_chest_contrast_hosp_a"]
        key = _register(proc, study["institution_code"])
        args = ["upload", "--key", key, "--patient-id", study["patient"]["document_number"]]
        files = [str(SAMPLES / f["path"]) for f in study["files"]]
        # Four concurrent uploads of disjoint parts of one study, spread over both processes.
        parts = [files[i::4] for i in range(4)]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(partial(_upload_part, proc, args), parts))
        assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
        status = json.loads(
            proc.cli("study-status", "--key", key, study["study_instance_uid"], "--json").stdout
        )
        assert len(status["instances"]) == study["instance_count"]
        proc.process.send_signal(signal.SIGTERM)
        assert proc.process.wait(30) == 0


def test_several_processes_need_a_fixed_port(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUTUALREC_")}
    env.update(MUTUALREC_PROCESSES="2", MUTUALREC_LISTEN="127.0.0.1:0")
    result = subprocess.run(
        [MUTUALREC, "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "fixed port" in result.stderr


def test_serve_opens_the_http_door_and_stops_it_with_grpc(tmp_path: Path) -> None:
    for proc in _spawn(tmp_path, {}):
        line = next(line for line in proc.lines if line.strip().startswith("HTTP:"))
        url = re.search(r"(http://\S+)", line).group(1)  # type: ignore[union-attr]
        assert not url.endswith(":8080"), "tests never take the default port"
        reply = httpx.get(f"{url}/healthz", timeout=10)
        assert reply.status_code == 200
        assert reply.json()["status"] == "SERVING"
        proc.process.send_signal(signal.SIGTERM)
        assert proc.process.wait(30) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=5)
