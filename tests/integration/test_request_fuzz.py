"""Fuzzing every RPC's request validation over real gRPC: messages generated from the protos'
own descriptors, sent with a credential the RPC admits. No answer is an internal error, and the
server keeps serving."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mutualrec.identity import parse_identity, patient_key
from mutualrec.security.access import ADMIN, REGULATOR
from mutualrec.security.patient_tokens import mint_patient_token
from mutualrec.storage.institutions import issue_role_key
from tests.conftest import RunningServer, make_settings, start_server
from tests.helpers import SERVICE_METHODS, status_of_call

FD = pb_descriptor.FieldDescriptor
# What a server must never answer, whatever the request: a bug, not a refusal.
INTERNAL = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
}
# Words a field of this service plausibly holds, so generated requests get past the first
# checks and into the deeper ones.
PLAUSIBLE = [
    "",
    " ",
    "LAB-K",
    "IMG-CT-CHEST",
    "2823-3",
    "50010319680315109X",
    "RESIDENT_ID_CARD",
    "2026-11-22",
    "2026-11-22T08:00:00+08:00",
    "1999-02-30",
    "1.2.840.10008.1.2.1",
    "1.2.3",
    "00000000-0000-0000-0000-000000000000",
    "shl_0",
    "H500103001",
    "CT",
    "\x00",
    "中文",
    "x" * 300,
]
INT_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(field: pb_descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FD.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    if field.type == FD.TYPE_STRING:
        return st.sampled_from(PLAUSIBLE) | st.text(max_size=40)
    if field.type == FD.TYPE_BYTES:
        return st.binary(max_size=300)
    if field.type == FD.TYPE_BOOL:
        return st.booleans()
    if field.type == FD.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values]
        return st.sampled_from(numbers) | st.integers(-3, max(numbers) + 3)
    if field.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.floats(width=32 if field.type == FD.TYPE_FLOAT else 64)
    low, high = INT_RANGES[field.type]
    return st.sampled_from([0, 1, -1, 20, 100, 3600]).filter(lambda n: low <= n <= high) | (
        st.integers(low, high)
    )


def messages(descriptor: pb_descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """Messages of ``descriptor`` with any subset of its fields set (nesting cut at depth 3)."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 3:
        return st.just(cls())
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue
        value = _scalar(field, depth)
        optional[field.name] = st.lists(value, max_size=3) if field.is_repeated else value
    return st.fixed_dictionaries({}, optional=optional).map(lambda kw: cls(**kw))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One server on SQLite for every RPC's fuzzing, and a credential of every role."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    servers = start_server(
        make_settings(tmp, MUTUALREC_DATABASE_URL=f"sqlite:///{tmp / 'index.sqlite3'}")
    )
    server: RunningServer = next(servers)
    try:
        hospital = server.add_hospital("H500103001")
        with server.runtime.sessions.begin() as session:
            admin = issue_role_key(session, ADMIN)
            regulator = issue_role_key(session, REGULATOR)
        settings_ = server.runtime.settings
        key = patient_key(
            parse_identity("RESIDENT_ID_CARD", "50010319680315109X"), settings_.patient_key_secret
        )
        patient = mint_patient_token(settings_.token_secret, key, dt.timedelta(hours=1)).token
        yield {
            "server": server,
            "hospital": hospital,
            "admin": admin,
            "regulator": regulator,
            "patient": patient,
        }
    finally:
        servers.close()


def _credential(method: pb_descriptor.MethodDescriptor, roles: dict[str, Any]) -> str:
    service = method.containing_service.name
    if service in ("IngestService", "RecognitionService", "CatalogService"):
        return str(roles["hospital"])
    if service == "StatisticsService":
        return str(roles["regulator"])
    if service == "IdentityService":
        return str(roles["admin"])
    return str(roles["patient"])


@pytest.mark.parametrize(
    "method", SERVICE_METHODS, ids=lambda m: f"{m.containing_service.name}.{m.name}"
)
def test_no_request_gets_an_internal_error(
    fuzzed: dict[str, Any], method: pb_descriptor.MethodDescriptor
) -> None:
    server: RunningServer = fuzzed["server"]
    key = _credential(method, fuzzed)
    request = messages(method.input_type)
    strategy = st.lists(request, max_size=4).map(iter) if method.client_streaming else request

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(strategy)
    def check(sent: Any) -> None:
        status = status_of_call(server.channel, method, sent, key)
        assert status not in INTERNAL, (method.full_name, status)

    check()
    health = health_pb2_grpc.HealthStub(server.channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
