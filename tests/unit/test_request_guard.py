"""The request guard over a real in-process gRPC server: an exception no servicer expected ends
UNKNOWN with a correlation id, which the server's log line carries too."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy.exc import DataError, OperationalError

from mutualrec.api.request_guard import RequestGuard
from mutualrec.services.outage import is_outage
from mutualrec.v1 import ingest_pb2
from tests.helpers import bad_request

METHOD = "/mutualrec.v1.IngestService/GetStudyStatus"


async def _failing(request: ingest_pb2.GetStudyStatusRequest, context: Any) -> Any:
    raise RuntimeError(f"a servicer bug, reached with {request.study_instance_uid}")


async def _refused_by_database(request: ingest_pb2.GetStudyStatusRequest, context: Any) -> Any:
    # What psycopg's refusal of a value looks like once SQLAlchemy has wrapped it.
    raise DataError("INSERT ...", {}, ValueError("integer out of range"))


async def _call(servicer: Any = _failing) -> grpc.aio.AioRpcError:
    handler = grpc.method_handlers_generic_handler(
        "mutualrec.v1.IngestService",
        {
            "GetStudyStatus": grpc.unary_unary_rpc_method_handler(
                servicer,
                request_deserializer=ingest_pb2.GetStudyStatusRequest.FromString,
                response_serializer=ingest_pb2.GetStudyStatusResponse.SerializeToString,
            )
        },
    )
    server = grpc.aio.server(interceptors=[RequestGuard()])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(
                METHOD,
                request_serializer=ingest_pb2.GetStudyStatusRequest.SerializeToString,
                response_deserializer=ingest_pb2.GetStudyStatusResponse.FromString,
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(ingest_pb2.GetStudyStatusRequest(study_instance_uid="1.2.3"))
            return caught.value
    finally:
        await server.stop(None)


def test_unexpected_error_is_unknown_with_a_logged_correlation_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="mutualrec.api.request_guard"):
        error = asyncio.run(_call())
    assert error.code() == grpc.StatusCode.UNKNOWN
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "UNEXPECTED_ERROR"
    correlation_id = info.metadata["correlation_id"]
    assert len(correlation_id) == 32
    assert correlation_id in (error.details() or "")
    logged = [r for r in caplog.records if correlation_id in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].exc_info is not None
    assert "a servicer bug" in str(logged[0].exc_info[1])


def test_a_value_the_database_refuses_is_invalid_argument_not_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="mutualrec.api.request_guard"):
        error = asyncio.run(_call(_refused_by_database))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(error) == {"request": "UNSTORABLE_VALUE"}
    assert any("correlation id" in r.getMessage() for r in caplog.records)


def test_only_an_outage_is_retryable() -> None:
    assert not is_outage(DataError("INSERT ...", {}, ValueError("NUL")))
    assert is_outage(OperationalError("SELECT 1", {}, ConnectionError("server closed")))
    assert is_outage(OSError("disk"))
