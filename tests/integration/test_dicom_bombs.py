"""Decompression bombs over real gRPC: refused per instance with a reason, and the instances
that are slow to read do not take the workers every storage-backed call needs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mutualrec.client.upload import auth_metadata
from mutualrec.v1 import common_pb2, ingest_pb2, recognition_pb2, recognition_pb2_grpc
from tests.conftest import RunningServer, make_settings, start_server
from tests.dicom_bomb import padded_instance
from tests.fhir_docs import PATIENT_ID
from tests.helpers import chunk_messages, file_messages, header_message, study_files, upload

CT = "ct_chest_contrast_hosp_a"


def test_a_decompression_bomb_is_rejected_and_the_rest_stored(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = server.add_hospital(study["institution_code"])
    files = study_files(study)
    bomb = padded_instance(files[0], 4_400_000, deflated=True)

    response = upload(
        server.channel,
        key,
        [header_message(study), *chunk_messages(bomb, "bomb.dcm"), *file_messages(files[1:2])],
    )

    assert [o.outcome for o in response.instances] == [ingest_pb2.REJECTED, ingest_pb2.STORED]
    [violation] = response.instances[0].violations
    assert (violation.field, violation.reason) == ("instance", "INFLATION_RATIO")
    assert response.counts.stored == 1


@pytest.fixture
def slow_headers(tmp_path: Path) -> Iterator[RunningServer]:
    """Two storage workers, one header worker, and limits wide enough to walk a bomb whole."""
    settings = make_settings(
        tmp_path,
        MUTUALREC_DATABASE_URL=f"sqlite:///{tmp_path / 'index.sqlite3'}",
        MUTUALREC_BLOCKING_WORKERS="2",
        MUTUALREC_HEADER_WORKERS="1",
        MUTUALREC_MAX_INFLATE_RATIO="5000",
        MUTUALREC_MAX_DICOM_ELEMENTS="100000000",
    )
    yield from start_server(settings)


def _wait_for_uploads(server: RunningServer, count: int) -> None:
    for _ in range(600):
        if server.runtime.limits.uploads.busy() == count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} uploads did not start")


def test_instances_slow_to_read_leave_storage_workers_to_other_calls(
    slow_headers: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest[CT]
    key = slow_headers.add_hospital(study["institution_code"])
    # Three million empty elements each: seconds of CPU to walk even on a fast host (one
    # million took a second once the walk got faster, and the uploads ended before the
    # checks); as many uploads as storage workers.
    slow = padded_instance(study_files(study)[0], 3_000_000, deflated=True)
    messages = [header_message(study), *chunk_messages(slow, "slow.dcm")]
    check = recognition_pb2.CheckOrderRequest(
        patient=common_pb2.PatientIdentity(
            document_type=common_pb2.RESIDENT_ID_CARD, document_number=PATIENT_ID
        ),
        ordered_codes=["LAB-K"],
        context=recognition_pb2.ClinicalContext(order_id="ORD-1", department="内科"),
    )

    with ThreadPoolExecutor(2) as pool:
        uploads = [pool.submit(upload, slow_headers.new_channel(), key, messages) for _ in range(2)]
        _wait_for_uploads(slow_headers, 2)
        time.sleep(1)  # the instances have arrived and are being walked
        for _ in range(3):
            reply = recognition_pb2_grpc.RecognitionServiceStub(slow_headers.channel).CheckOrder(
                check, metadata=auth_metadata(key), timeout=2
            )
            assert [line.ordered_code for line in reply.lines] == ["LAB-K"]
            health = health_pb2_grpc.HealthStub(slow_headers.channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        # The checks were answered while the walks went on.
        assert not any(done.done() for done in uploads)
        outcomes = [f.result(timeout=300).instances[0].outcome for f in uploads]

    # One stores the instance, the other finds it held already.
    assert sorted(outcomes) == sorted([ingest_pb2.STORED, ingest_pb2.DUPLICATE_IDENTICAL])
