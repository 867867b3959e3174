"""Refused calls as data a person or a script can act on."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def refusal(error: grpc.RpcError) -> dict[str, Any]:
    """A refused call as JSON-ready data: status code, message, and field violations."""
    violations: list[dict[str, str]] = []
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else []:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            violations.extend(
                {"field": v.field, "description": v.description, "reason": v.reason}
                for v in bad.field_violations
            )
    return {"code": error.code().name, "message": error.details(), "violations": violations}
