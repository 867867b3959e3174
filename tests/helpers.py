"""Helpers for tests that talk to the service over gRPC."""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import message_factory
from google.rpc import error_details_pb2
from grpc_status import rpc_status

import mutualrec.v1 as v1
from mutualrec.client.upload import auth_metadata, make_header
from mutualrec.storage import catalog_store
from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc
from tests.conftest import SAMPLES, RunningServer

Request = ingest_pb2.UploadStudyRequest


def header_message(study: dict[str, Any], **overrides: str) -> Request:
    """The header message declaring a manifest study's patient."""
    patient = study["patient"]
    return Request(
        header=make_header(
            overrides.get("document_number", patient["document_number"]),
            overrides.get("document_type", patient["document_type"]),
            accession_number=overrides.get("accession_number", study["accession_number"]),
            performed_item_code=overrides.get("performed_item_code", study["performed_item_code"]),
        )
    )


def chunk_messages(
    data: bytes, name: str, chunk: int = 64 * 1024, last: bool = True
) -> list[Request]:
    """One instance as chunk messages (several per instance, to exercise reassembly)."""
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
    return [
        Request(
            chunk=ingest_pb2.InstanceChunk(
                source_name=name, data=piece, end_of_instance=last and i == len(pieces) - 1
            )
        )
        for i, piece in enumerate(pieces)
    ]


def file_messages(paths: Iterable[Path]) -> Iterator[Request]:
    """Every file as an instance."""
    for path in paths:
        yield from chunk_messages(path.read_bytes(), path.name)


def upload(
    channel: grpc.Channel, key: str | None, messages: Iterable[Request]
) -> ingest_pb2.UploadStudyResponse:
    """Call UploadStudy with ``messages``."""
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    metadata = auth_metadata(key) if key else None
    response: ingest_pb2.UploadStudyResponse = stub.UploadStudy(
        iter(messages), metadata=metadata, timeout=60
    )
    return response


def bad_request(error: grpc.RpcError) -> dict[str, str]:
    """The field -> reason map of the google.rpc.BadRequest details of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "the error carries no google.rpc.Status"
    violations: dict[str, str] = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            for violation in bad.field_violations:
                violations[violation.field] = violation.reason
    return violations


def study_files(study: dict[str, Any]) -> list[Path]:
    """The files of a manifest study."""
    return [SAMPLES / f["path"] for f in study["files"]]


def _service_modules() -> list[Any]:
    """Every ``*_pb2`` module of mutualrec.v1: a service added there is found without a list."""
    return [
        importlib.import_module(f"{v1.__name__}.{info.name}")
        for info in pkgutil.iter_modules(v1.__path__)
        if info.name.endswith("_pb2")
    ]


# Every RPC the service defines, as proto method descriptors.
SERVICE_METHODS = [
    method
    for module in _service_modules()
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]


def status_of_call(
    channel: grpc.Channel, method: Any, request: Any, credential: str
) -> grpc.StatusCode:
    """The status ``method`` (a descriptor) ends with when called with ``request`` (an
    iterator of messages for a client stream) and ``credential`` (none when empty); a reply
    stream is read to its end."""
    return outcome_of_call(channel, method, request, credential)[0]


def outcome_of_call(
    channel: grpc.Channel, method: Any, request: Any, credential: str
) -> tuple[grpc.StatusCode, str]:
    """The status and its message, as :func:`status_of_call` calls."""
    response = message_factory.GetMessageClass(method.output_type)
    kind = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }[method.client_streaming, method.server_streaming]
    call = kind(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response.FromString,
    )
    try:
        reply = call(request, metadata=auth_metadata(credential), timeout=30)
        if method.server_streaming:
            list(reply)
    except grpc.RpcError as error:
        return error.code(), error.details() or ""  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, ""


def qualify(server: RunningServer, code: str, category: str) -> None:
    """Give ``code`` a city-wide recognition mark for a whole category, held since 2020."""
    with server.runtime.sessions.begin() as session:
        catalog_store.ensure_packaged_catalog(session)
        catalog_store.add_qualification(
            session,
            code,
            item_code=None,
            category=category,
            scope="city",
            valid_from=dt.datetime(2020, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8))),
            valid_until=None,
            catalog=catalog_store.current_catalog(session),
        )
    server.runtime.reference.invalidate()


def lab_issuer_and_asker(server: RunningServer, issuer: str, asker: str) -> dict[str, str]:
    """A tertiary ``issuer`` holding the lab mark and a secondary ``asker``; their API keys."""
    keys = {
        issuer: server.add_hospital(issuer, level="tertiary"),
        asker: server.add_hospital(asker, level="secondary"),
    }
    qualify(server, issuer, "lab")
    return keys
