"""No unauthenticated outage: calls that open and never send their request, from one address or
many, do not take the server from everyone else; the check and the health check keep answering.

The attack is made with gRPC's own stream API: a request-streaming call on a unary method sends
its headers, and nothing more while its request iterator has nothing to give.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mutualrec.client.upload import auth_metadata
from mutualrec.v1 import common_pb2, recognition_pb2, recognition_pb2_grpc
from tests.conftest import RunningServer, make_settings, start_server
from tests.fhir_docs import PATIENT_ID
from tests.helpers import bad_request

CHECK_ORDER = "/mutualrec.v1.RecognitionService/CheckOrder"
HOSPITAL = "H500106002"
# A check and a health check answer within this deadline while the attack goes on. Before the
# fix they were refused at once (RESOURCE_EXHAUSTED), so a generous deadline still tells the two
# apart, and a loaded CI machine (or a run under a moved clock) does not flake it. The latency
# under attack is measured in docs/security.md.
DEADLINE = 10.0


def _refused(code: grpc.StatusCode) -> frozenset[grpc.StatusCode | None]:
    # A stream the server ends before the client has half-closed it is now and then reported to
    # the client as CANCELLED instead of the status the server sent (a race inside gRPC).
    return frozenset({code, grpc.StatusCode.CANCELLED})


@dataclass
class Attack:
    """Half-open calls held open on their own event loop until :meth:`stop`."""

    opened: threading.Event
    stopped: threading.Event
    ended: list[int]
    codes: Future[list[grpc.StatusCode | None]]

    def stop(self, ended: int) -> list[grpc.StatusCode | None]:
        """End the attack once the server has ended ``ended`` of its calls (or a minute has
        passed): the status of every call (None: still open)."""
        self.ended.append(ended)
        self.stopped.set()
        return self.codes.result(timeout=120)


def half_open(
    target: str, calls: int, metadata: tuple[tuple[str, str], ...] = (), connections: int = 12
) -> Attack:
    """Open ``calls`` CheckOrder calls over ``connections`` connections, none sending a request.

    The calls end on their own only when the server ends them; :meth:`Attack.stop` cancels the
    rest once the test has probed the server.
    """
    attack = Attack(threading.Event(), threading.Event(), [], Future())

    async def never() -> AsyncIterator[bytes]:
        await asyncio.Event().wait()
        yield b""  # pragma: no cover - never reached

    async def run() -> None:
        # A connection each: gRPC would otherwise share one between channels to one target.
        channels = [
            grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(connections)
        ]
        try:
            held = [
                channels[i % connections].stream_unary(CHECK_ORDER)(never(), metadata=metadata)
                for i in range(calls)
            ]
            # Enough for every call's headers to reach the server, or for the server to end them.
            await asyncio.sleep(2)
            attack.opened.set()
            while not attack.stopped.is_set():  # noqa: ASYNC110 - set from the test's thread
                await asyncio.sleep(0.05)
            # A loaded machine may still be refusing calls: wait for those the test expects.
            for _ in range(1200):
                if sum(call.done() for call in held) >= attack.ended[0]:
                    break
                await asyncio.sleep(0.05)
            codes = [await call.code() if call.done() else None for call in held]
            for call in held:
                call.cancel()
            attack.codes.set_result(codes)
        finally:
            for channel in channels:
                await channel.close()

    threading.Thread(target=asyncio.run, args=(run(),), daemon=True).start()
    assert attack.opened.wait(60), "the attack did not start"
    return attack


def _check_request() -> recognition_pb2.CheckOrderRequest:
    return recognition_pb2.CheckOrderRequest(
        patient=common_pb2.PatientIdentity(
            document_type=common_pb2.RESIDENT_ID_CARD, document_number=PATIENT_ID
        ),
        ordered_codes=["LAB-K"],
        context=recognition_pb2.ClinicalContext(order_id="ORD-1", department="内科"),
    )


def _probe(channel: grpc.Channel, key: str) -> None:
    """A legitimate check and a health check, each answered within the deadline."""
    reply = recognition_pb2_grpc.RecognitionServiceStub(channel).CheckOrder(
        _check_request(), metadata=auth_metadata(key), timeout=DEADLINE
    )
    assert [line.ordered_code for line in reply.lines] == ["LAB-K"]
    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=DEADLINE
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_calls_without_credentials_that_send_nothing_hold_no_slot(
    server: RunningServer,
) -> None:
    key = server.add_hospital(HOSPITAL)
    attack = half_open(server.address, 1200)
    try:
        for _ in range(5):
            _probe(server.channel, key)
    finally:
        codes = attack.stop(ended=1200)

    # Every call was ended by the server, refused from its metadata alone.
    assert set(codes) <= _refused(grpc.StatusCode.UNAUTHENTICATED)


def test_a_call_that_sends_no_request_ends_after_the_request_timeout(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        MUTUALREC_DATABASE_URL=f"sqlite:///{tmp_path / 'index.sqlite3'}",
        MUTUALREC_REQUEST_TIMEOUT_SECONDS="0.5",
    )
    servers = start_server(settings)
    server = next(servers)
    try:
        key = server.add_hospital(HOSPITAL)
        stalled = threading.Event()

        def nothing() -> Iterator[recognition_pb2.CheckOrderRequest]:
            stalled.wait(30)
            yield _check_request()

        call = server.channel.stream_unary(
            CHECK_ORDER,
            request_serializer=recognition_pb2.CheckOrderRequest.SerializeToString,
            response_deserializer=recognition_pb2.CheckOrderResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as ended:
            call(nothing(), metadata=auth_metadata(key), timeout=20)
        stalled.set()

        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert ended.value.details() == "no request arrived within 0.5 s of the call's start"
        _probe(server.channel, key)
    finally:
        servers.close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_one_address_cannot_take_every_call_slot(tmp_path: Path) -> None:
    if not _ipv6_loopback():
        pytest.skip("needs IPv6 loopback: a second client address on this host")
    settings = make_settings(
        tmp_path,
        MUTUALREC_DATABASE_URL=f"sqlite:///{tmp_path / 'index.sqlite3'}",
        # Listening on both loopbacks: 127.0.0.1 and ::1 are two client addresses.
        MUTUALREC_LISTEN="[::]:0",
        MUTUALREC_MAX_CONCURRENT_CALLS="50",
        MUTUALREC_MAX_CALLS_PER_PEER="20",
        MUTUALREC_REQUEST_TIMEOUT_SECONDS="60",
    )
    servers = start_server(settings)
    server = next(servers)
    port = server.address.rsplit(":", 1)[1]
    try:
        key = server.add_hospital(HOSPITAL)
        # A client holding a valid key opens more calls than the server takes, none sending.
        attack = half_open(f"ipv4:127.0.0.1:{port}", 60, auth_metadata(key), connections=3)
        try:
            with grpc.insecure_channel(f"ipv6:[::1]:{port}") as elsewhere:
                for _ in range(5):
                    _probe(elsewhere, key)
        finally:
            codes = attack.stop(ended=40)
    finally:
        servers.close()

    # The address's 20 calls wait for their requests; the server refused the other 40.
    assert codes.count(None) == 20
    assert set(codes) - {None} <= _refused(grpc.StatusCode.RESOURCE_EXHAUSTED)


def _raw_check_order(server: RunningServer, key: str, requests: list[bytes]) -> grpc.RpcError:
    """CheckOrder sent as raw request messages (none, or bytes that are not protobuf)."""
    call = server.channel.stream_unary(CHECK_ORDER)
    with pytest.raises(grpc.RpcError) as ended:
        call(iter(requests), metadata=auth_metadata(key), timeout=30)
    return ended.value


def test_a_unary_call_without_its_request_is_invalid(server: RunningServer) -> None:
    key = server.add_hospital(HOSPITAL)

    ended = _raw_check_order(server, key, [])

    assert ended.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(ended) == {"request": "MISSING_REQUEST"}


def test_a_request_that_is_not_protobuf_is_invalid(server: RunningServer) -> None:
    key = server.add_hospital(HOSPITAL)

    ended = _raw_check_order(server, key, [b"\xff\xff\xff\xff"])

    assert ended.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(ended) == {"request": "MALFORMED_REQUEST"}


def test_public_methods_of_every_shape_still_answer(server: RunningServer) -> None:
    # Watch streams its replies with context.write, reflection is a stream both ways.
    watch = health_pb2_grpc.HealthStub(server.channel).Watch(
        health_pb2.HealthCheckRequest(), timeout=DEADLINE
    )
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    reflection = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    [reply] = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=DEADLINE
    )
    assert "mutualrec.v1.RecognitionService" in {
        service.name for service in reply.list_services_response.service
    }
