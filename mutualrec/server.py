"""The server process: gRPC services, health, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from mutualrec import __version__
from mutualrec.api.ingest_service import IngestService
from mutualrec.config import Settings
from mutualrec.runtime import Runtime
from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc

# Room for a 1 MiB chunk plus framing; larger chunks still reach our own check (and get a
# precise field violation) up to this size, beyond it gRPC itself answers RESOURCE_EXHAUSTED.
MAX_MESSAGE_BYTES = 2 * 1024 * 1024 + 64 * 1024
SERVICE_NAMES = (ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name,)


async def build_server(runtime: Runtime) -> tuple[grpc.aio.Server, health_aio.HealthServicer, int]:
    """A started-ready (not yet started) server with every service; returns it and its port."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ]
    )
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(IngestService(runtime), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = server.add_insecure_port(runtime.settings.listen)
    if port == 0:
        raise OSError(f"cannot listen on {runtime.settings.listen}")
    return server, health, port


async def _set_health(health: health_aio.HealthServicer, status: int) -> None:
    for name in ("", *SERVICE_NAMES):
        await health.set(name, status)


async def serve(settings: Settings, out: TextIO = sys.stdout) -> None:
    """Run until SIGTERM or SIGINT, then let in-flight calls finish within the grace period."""
    runtime = Runtime.open(settings)
    try:
        server, health, port = await build_server(runtime)
        await server.start()
        await _set_health(health, health_pb2.HealthCheckResponse.SERVING)
        host = settings.listen.rsplit(":", 1)[0]
        # One write, the listening line last: whoever waits for it has read the rest too.
        print(
            f"mutualrec {__version__}\n"
            f"  index:   {_redact(settings.database_url)}\n"
            f"  objects: {runtime.store.description}\n"
            f"  patient-key secret from {settings.patient_key_secret_source}\n"
            f"mutualrec listening on {host}:{port}",
            file=out,
            flush=True,
        )

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        print("mutualrec shutting down: finishing in-flight calls", file=out, flush=True)
        # Load balancers stop sending new work once health says NOT_SERVING.
        await _set_health(health, health_pb2.HealthCheckResponse.NOT_SERVING)
        await server.stop(settings.shutdown_grace_seconds)
        print("mutualrec stopped", file=out, flush=True)
    finally:
        runtime.close()


def _redact(url: str) -> str:
    """The database URL without its password, for printing."""
    from sqlalchemy.engine import make_url

    with contextlib.suppress(Exception):
        return make_url(url).render_as_string(hide_password=True)
    return "<unparseable database URL>"
