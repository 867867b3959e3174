"""Rejections as gRPC statuses with ``google.rpc`` details an integrator can act on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from mutualrec.v1 import common_pb2
from mutualrec.violations import Violation

DOMAIN = "mutualrec.v1"


def violations_to_proto(violations: Iterable[Violation]) -> list[common_pb2.FieldViolation]:
    """Violations as the FieldViolation messages of our own replies."""
    return [
        common_pb2.FieldViolation(field=v.field, description=v.description, reason=v.reason)
        for v in violations
    ]


def _status(code: grpc.StatusCode, message: str, violations: Iterable[Violation]) -> grpc.Status:
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=v.field, description=v.description, reason=v.reason
            )
            for v in violations
        ]
    )
    detail = any_pb2.Any()
    detail.Pack(bad_request)
    return rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=message, details=[detail])
    )


def retry_status(code: grpc.StatusCode, message: str, retry_after: float) -> grpc.Status:
    """``code`` with a ``google.rpc.RetryInfo`` saying how long to wait before trying again."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(max(int(retry_after * 1e9), 1_000_000))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=message, details=[detail])
    )


async def abort_with_violations(
    context: grpc.aio.ServicerContext[object, object],
    code: grpc.StatusCode,
    message: str,
    violations: Iterable[Violation],
) -> NoReturn:
    """End the call with ``code`` and a ``google.rpc.BadRequest`` listing ``violations``."""
    await context.abort_with_status(_status(code, message, violations))
    raise AssertionError("abort_with_status returned")  # pragma: no cover - grpc raises


async def abort(
    context: grpc.aio.ServicerContext[object, object], code: grpc.StatusCode, message: str
) -> NoReturn:
    """End the call with ``code`` and a plain message."""
    await context.abort(code, message)
    raise AssertionError("abort returned")  # pragma: no cover - grpc raises
