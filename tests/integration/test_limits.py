"""Per-credential limits and overload over real gRPC: RESOURCE_EXHAUSTED at once, with when to
retry, and the server keeps serving everyone else."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mutualrec.client.upload import auth_metadata
from mutualrec.v1 import catalog_pb2, catalog_pb2_grpc, ingest_pb2, ingest_pb2_grpc
from tests.conftest import RunningServer, make_settings, start_server
from tests.helpers import file_messages, header_message, study_files


def _server(tmp_path: Path, **env: str) -> Iterator[RunningServer]:
    settings = make_settings(
        tmp_path, MUTUALREC_DATABASE_URL=f"sqlite:///{tmp_path / 'index.sqlite3'}", **env
    )
    return start_server(settings)


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[RunningServer]:
    """A call every 5 s per credential with bursts of 5 (slow, so a loaded machine cannot refill
    the bucket mid-test), one upload at a time."""
    yield from _server(
        tmp_path, MUTUALREC_RATE_LIMIT="0.2", MUTUALREC_RATE_BURST="5", MUTUALREC_MAX_UPLOADS="1"
    )


def _list_items(server: RunningServer, key: str) -> grpc.StatusCode:
    stub = catalog_pb2_grpc.CatalogServiceStub(server.channel)
    try:
        stub.ListItems(catalog_pb2.ListItemsRequest(), metadata=auth_metadata(key), timeout=30)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _retry_delay(error: grpc.RpcError) -> float:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return float(info.retry_delay.ToNanoseconds()) / 1e9
    raise AssertionError("no RetryInfo in the status")


def test_a_credential_over_its_rate_is_refused_and_told_when_to_retry(
    limited: RunningServer,
) -> None:
    busy = limited.add_hospital("H500103001")
    calm = limited.add_hospital("H500106002")

    codes = [_list_items(limited, busy) for _ in range(8)]

    assert codes[:5] == [grpc.StatusCode.OK] * 5
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes[5:]
    with pytest.raises(grpc.RpcError) as refused:
        catalog_pb2_grpc.CatalogServiceStub(limited.channel).ListItems(
            catalog_pb2.ListItemsRequest(), metadata=auth_metadata(busy), timeout=30
        )
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "0.2 calls per second" in refused.value.details()
    assert 0 < _retry_delay(refused.value) <= 5
    # Another credential is not held back by the first one's traffic.
    assert _list_items(limited, calm) == grpc.StatusCode.OK


def _held_upload(
    server: RunningServer, key: str, study: dict[str, Any], release: threading.Event
) -> Any:
    """An UploadStudy stream that sends its header, then waits for ``release`` to finish."""

    def messages() -> Iterator[ingest_pb2.UploadStudyRequest]:
        yield header_message(study)
        release.wait(30)
        yield from file_messages(study_files(study)[:1])

    stub = ingest_pb2_grpc.IngestServiceStub(server.channel)
    return stub.UploadStudy.future(messages(), metadata=auth_metadata(key), timeout=60)


def _wait_for_slots(server: RunningServer, busy: int) -> None:
    """Until ``busy`` upload slots are taken (a stream reached the server, or ended)."""
    for _ in range(3000):
        if server.runtime.limits.uploads.busy() == busy:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"never {busy} uploads in progress")


def test_a_second_concurrent_upload_of_one_credential_is_refused_until_the_first_ends(
    limited: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest["ct_chest_contrast_hosp_a"]
    key = limited.add_hospital(study["institution_code"])
    elsewhere = manifest["dx_chest_2v_hosp_c"]
    other = limited.add_hospital(elsewhere["institution_code"])
    release = threading.Event()
    first = _held_upload(limited, key, study, release)
    _wait_for_slots(limited, 1)

    with pytest.raises(grpc.RpcError) as refused:
        ingest_pb2_grpc.IngestServiceStub(limited.channel).UploadStudy(
            iter([header_message(study)]), metadata=auth_metadata(key), timeout=30
        )
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at most 1 uploads at once" in refused.value.details()
    # Another hospital uploads meanwhile.
    meanwhile = ingest_pb2_grpc.IngestServiceStub(limited.channel).UploadStudy(
        iter([header_message(elsewhere), *file_messages(study_files(elsewhere)[:1])]),
        metadata=auth_metadata(other),
        timeout=60,
    )
    assert meanwhile.counts.stored == 1

    release.set()
    assert first.result(timeout=60).counts.stored == 1
    # The slot came back when the first upload ended: the next one goes through.
    again = ingest_pb2_grpc.IngestServiceStub(limited.channel).UploadStudy(
        iter([header_message(study), *file_messages(study_files(study)[1:2])]),
        metadata=auth_metadata(key),
        timeout=60,
    )
    assert again.counts.stored == 1


def test_a_cancelled_upload_gives_its_slot_back(
    limited: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest["ct_chest_contrast_hosp_a"]
    key = limited.add_hospital(study["institution_code"])
    release = threading.Event()
    first = _held_upload(limited, key, study, release)
    _wait_for_slots(limited, 1)

    first.cancel()
    release.set()

    _wait_for_slots(limited, 0)
    again = ingest_pb2_grpc.IngestServiceStub(limited.channel).UploadStudy(
        iter([header_message(study), *file_messages(study_files(study)[:1])]),
        metadata=auth_metadata(key),
        timeout=60,
    )
    assert again.counts.stored == 1


def test_calls_beyond_the_servers_capacity_are_refused_at_once(
    tmp_path: Path, manifest: dict[str, Any]
) -> None:
    servers = _server(tmp_path, MUTUALREC_MAX_CONCURRENT_CALLS="1")
    server = next(servers)
    try:
        study = manifest["ct_chest_contrast_hosp_a"]
        key = server.add_hospital(study["institution_code"])
        release = threading.Event()
        held = _held_upload(server, key, study, release)
        _wait_for_slots(server, 1)

        assert _list_items(server, key) == grpc.StatusCode.RESOURCE_EXHAUSTED

        release.set()
        assert held.result(timeout=60).counts.stored == 1
        assert _list_items(server, key) == grpc.StatusCode.OK
    finally:
        servers.close()


def test_a_call_past_its_deadline_ends_and_the_server_goes_on(
    limited: RunningServer, manifest: dict[str, Any]
) -> None:
    study = manifest["ct_chest_contrast_hosp_a"]
    key = limited.add_hospital(study["institution_code"])
    never = threading.Event()

    def stalled() -> Iterator[ingest_pb2.UploadStudyRequest]:
        yield header_message(study)
        never.wait(5)

    with pytest.raises(grpc.RpcError) as late:
        ingest_pb2_grpc.IngestServiceStub(limited.channel).UploadStudy(
            stalled(), metadata=auth_metadata(key), timeout=0.5
        )
    never.set()

    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    _wait_for_slots(limited, 0)
    assert _list_items(limited, key) == grpc.StatusCode.OK
    done = ingest_pb2_grpc.IngestServiceStub(limited.channel).UploadStudy(
        iter([header_message(study), *file_messages(study_files(study)[:1])]),
        metadata=auth_metadata(key),
        timeout=60,
    )
    assert done.counts.stored == 1
