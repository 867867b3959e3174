"""The one mapper from the services' domain errors to gRPC statuses."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from mutualrec.api.errors import status_for
from mutualrec.violations import (
    Conflict,
    DataLost,
    DomainError,
    NotFound,
    Rejected,
    TooLarge,
    Unavailable,
    Violation,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (Rejected.one("bad", "body", "not JSON", "NOT_JSON"), grpc.StatusCode.INVALID_ARGUMENT),
        (NotFound("no such study"), grpc.StatusCode.NOT_FOUND),
        (Conflict("already decided"), grpc.StatusCode.FAILED_PRECONDITION),
        (TooLarge("too many bytes"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (Unavailable("storage is down"), grpc.StatusCode.UNAVAILABLE),
        (DataLost("damaged"), grpc.StatusCode.DATA_LOSS),
    ],
)
def test_each_class_has_its_code(error: DomainError, code: grpc.StatusCode) -> None:
    assert status_for(error).code == code


def test_a_plain_error_carries_its_summary_and_no_details() -> None:
    status = status_for(NotFound("no such share link"))
    assert status.details == "no such share link"
    assert not status.trailing_metadata


def test_violations_travel_as_bad_request() -> None:
    error = Conflict(
        "a later version is held",
        [Violation("entry[2]", "version 3 is older than 4", "STALE_VERSION")],
    )
    status = status_for(error)
    assert status.code == grpc.StatusCode.FAILED_PRECONDITION
    (_, raw), *_ = [m for m in status.trailing_metadata if m[0] == "grpc-status-details-bin"]
    carried = status_pb2.Status.FromString(raw)
    assert carried.message == "a later version is held"
    bad_request = error_details_pb2.BadRequest()
    assert carried.details[0].Unpack(bad_request)
    assert [(v.field, v.reason) for v in bad_request.field_violations] == [
        ("entry[2]", "STALE_VERSION")
    ]


def test_an_unmapped_class_is_a_programming_error() -> None:
    class Novel(DomainError):
        pass

    with pytest.raises(TypeError, match="Novel"):
        status_for(Novel("?"))
