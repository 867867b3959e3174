"""Rejections as gRPC statuses with ``google.rpc`` details an integrator can act on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from mutualrec.v1 import common_pb2
from mutualrec.violations import Violation, clip

DOMAIN = "mutualrec.v1"
# A status travels in the reply's trailing metadata, which gRPC caps (8 KiB by default): its
# message and details are cut to sizes that fit together, whatever the caller sent.
MAX_MESSAGE = 200
MAX_FIELD = 120
MAX_DESCRIPTION = 200
MAX_VIOLATIONS = 10
MAX_VIOLATION_BYTES = 3000
# A reply's body has room for more, but repeats no caller's value at any length either.
MAX_REPLY_DESCRIPTION = 400


def _bounded(violation: Violation, description: int = MAX_DESCRIPTION) -> Violation:
    return Violation(
        clip(violation.field, MAX_FIELD),
        clip(violation.description, description),
        clip(violation.reason, MAX_FIELD),
    )


def violations_to_proto(violations: Iterable[Violation]) -> list[common_pb2.FieldViolation]:
    """Violations as the FieldViolation messages of our own replies."""
    return [
        common_pb2.FieldViolation(field=v.field, description=v.description, reason=v.reason)
        for v in (_bounded(v, MAX_REPLY_DESCRIPTION) for v in violations)
    ]


def _within_metadata(violations: Iterable[Violation]) -> list[Violation]:
    """The first violations, and a last one saying how many more there were."""
    found = [_bounded(v) for v in violations]
    kept: list[Violation] = []
    size = 0
    for violation in found:
        # Characters are capped above; bytes (Chinese text takes three each) are capped here.
        size += sum(len(text.encode()) for text in (violation.field, violation.description))
        if len(kept) == MAX_VIOLATIONS - 1 or size > MAX_VIOLATION_BYTES:
            break
        kept.append(violation)
    if len(kept) == len(found):
        return kept
    more = len(found) - len(kept)
    return [*kept, Violation("", f"and {more} more violations", "MORE_VIOLATIONS")]


def bad_request_status(
    code: grpc.StatusCode, message: str, violations: Iterable[Violation]
) -> grpc.Status:
    """``code`` with ``message`` and a ``google.rpc.BadRequest`` listing ``violations``."""
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=v.field, description=v.description, reason=v.reason
            )
            for v in _within_metadata(violations)
        ]
    )
    detail = any_pb2.Any()
    detail.Pack(bad_request)
    return rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=clip(message, MAX_MESSAGE), details=[detail])
    )


def unexpected_status(correlation_id: str) -> grpc.Status:
    """UNKNOWN, with the id under which the server logged what went wrong, as a
    ``google.rpc.ErrorInfo`` and in the message, for the caller to quote to an operator."""
    info = error_details_pb2.ErrorInfo(
        reason="UNEXPECTED_ERROR", domain=DOMAIN, metadata={"correlation_id": correlation_id}
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    return rpc_status.to_status(
        status_pb2.Status(
            code=grpc.StatusCode.UNKNOWN.value[0],
            message=f"unexpected server error; correlation id {correlation_id}",
            details=[detail],
        )
    )


def retry_status(code: grpc.StatusCode, message: str, retry_after: float) -> grpc.Status:
    """``code`` with a ``google.rpc.RetryInfo`` saying how long to wait before trying again."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(max(int(retry_after * 1e9), 1_000_000))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=clip(message, MAX_MESSAGE), details=[detail])
    )


async def abort_with_violations(
    context: grpc.aio.ServicerContext[object, object],
    code: grpc.StatusCode,
    message: str,
    violations: Iterable[Violation],
) -> NoReturn:
    """End the call with ``code`` and a ``google.rpc.BadRequest`` listing ``violations``."""
    await context.abort_with_status(bad_request_status(code, message, violations))
    raise AssertionError("abort_with_status returned")  # pragma: no cover - grpc raises
