"""The server process: gRPC services, health, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import multiprocessing
import multiprocessing.queues
import os
import queue
import signal
import sys
from collections.abc import Callable
from typing import TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from sqlalchemy.engine import make_url

from mutualrec import __version__
from mutualrec.api.audit_health import report_audit_losses
from mutualrec.api.audit_interceptor import AuditInterceptor
from mutualrec.api.authorization import AuthorizationInterceptor
from mutualrec.api.catalog_service import CatalogService
from mutualrec.api.identity_service import IdentityService
from mutualrec.api.imaging_service import ImagingService
from mutualrec.api.ingest_service import IngestService
from mutualrec.api.recognition_service import RecognitionService
from mutualrec.api.reflection import enable_reflection
from mutualrec.api.request_guard import RequestGuard
from mutualrec.api.statistics_service import StatisticsService
from mutualrec.config import Settings
from mutualrec.dicom_net.door import listening_door
from mutualrec.http.serving import HttpDoor, open_http_door
from mutualrec.runtime import Runtime
from mutualrec.secret_owner import shared_secret_warning
from mutualrec.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    imaging_pb2,
    imaging_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    recognition_pb2,
    recognition_pb2_grpc,
    statistics_pb2,
    statistics_pb2_grpc,
)

# Room for a 1 MiB chunk, or the largest FHIR document allowed, plus framing; larger messages
# still reach our own checks (and get a precise field violation) up to twice that size, beyond
# it gRPC itself answers RESOURCE_EXHAUSTED.
FRAMING_BYTES = 64 * 1024


def max_message_bytes(settings: Settings) -> int:
    """The largest message the server receives or sends."""
    return 2 * max(settings.max_chunk_bytes, settings.max_fhir_bytes) + FRAMING_BYTES


# Calls in flight when a connection reaches its maximum age get this long to finish.
CONNECTION_AGE_GRACE_SECONDS = 600


def connection_options(settings: Settings) -> list[tuple[str, int]]:
    """Limits per connection: one client cannot open streams without end on one connection,
    dead peers are found by pings, and idle or old connections are closed (GOAWAY; clients
    reconnect on their own)."""
    options = [
        ("grpc.max_concurrent_streams", settings.max_streams_per_connection),
        ("grpc.keepalive_time_ms", int(settings.keepalive_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", 20_000),
    ]
    if settings.max_connection_idle_seconds > 0:
        options.append(
            ("grpc.max_connection_idle_ms", int(settings.max_connection_idle_seconds * 1000))
        )
    if settings.max_connection_age_seconds > 0:
        options += [
            ("grpc.max_connection_age_ms", int(settings.max_connection_age_seconds * 1000)),
            ("grpc.max_connection_age_grace_ms", CONNECTION_AGE_GRACE_SECONDS * 1000),
        ]
    return options


SERVICE_NAMES = (
    ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name,
    recognition_pb2.DESCRIPTOR.services_by_name["RecognitionService"].full_name,
    catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name,
    statistics_pb2.DESCRIPTOR.services_by_name["StatisticsService"].full_name,
    imaging_pb2.DESCRIPTOR.services_by_name["ImagingService"].full_name,
    imaging_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name,
)


async def build_server(runtime: Runtime) -> tuple[grpc.aio.Server, health_aio.HealthServicer, int]:
    """A started-ready (not yet started) server with every service; returns it and its port."""
    server = grpc.aio.server(
        interceptors=[AuditInterceptor(), AuthorizationInterceptor(runtime), RequestGuard()],
        # Beyond this gRPC answers RESOURCE_EXHAUSTED at once rather than queue without end.
        maximum_concurrent_rpcs=runtime.settings.max_concurrent_calls,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes(runtime.settings)),
            ("grpc.max_send_message_length", max_message_bytes(runtime.settings)),
            # Several worker processes share one port only when asked to; otherwise a second
            # server on the same port is an error, not a silent split of the traffic.
            ("grpc.so_reuseport", 1 if runtime.settings.processes > 1 else 0),
            *connection_options(runtime.settings),
        ],
    )
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(IngestService(runtime), server)
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(CatalogService(runtime), server)
    recognition_pb2_grpc.add_RecognitionServiceServicer_to_server(
        RecognitionService(runtime), server
    )
    statistics_pb2_grpc.add_StatisticsServiceServicer_to_server(StatisticsService(runtime), server)
    imaging_pb2_grpc.add_ImagingServiceServicer_to_server(ImagingService(runtime), server)
    imaging_pb2_grpc.add_IdentityServiceServicer_to_server(IdentityService(runtime), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    await report_audit_losses(health, runtime.audit)
    enable_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), server
    )
    tls = runtime.settings.tls
    if tls is None:
        port = server.add_insecure_port(runtime.settings.listen)
    else:
        credentials = grpc.ssl_server_credentials(
            [(tls.key.read_bytes(), tls.cert.read_bytes())],
            root_certificates=tls.client_ca.read_bytes() if tls.client_ca else None,
            # With a client CA every client must present a certificate it signed: mTLS.
            require_client_auth=tls.client_ca is not None,
        )
        port = server.add_secure_port(runtime.settings.listen, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {runtime.settings.listen}")
    return server, health, port


async def _set_health(health: health_aio.HealthServicer, status: int) -> None:
    for name in ("", *SERVICE_NAMES):
        await health.set(name, status)


def _banner(
    settings: Settings, store_description: str, port: int, processes: int, http_url: str | None
) -> str:
    host = settings.listen.rsplit(":", 1)[0]
    workers = f" ({processes} processes)" if processes > 1 else ""
    tls = settings.tls
    transport = (
        "plaintext (no TLS)"
        if tls is None
        else f"TLS ({tls.cert})"
        if tls.client_ca is None
        else f"mTLS ({tls.cert}; client certificates signed by {tls.client_ca} required)"
    )
    dicom = ""
    if settings.dicom_listen is not None:
        dicom_host, dicom_port = settings.dicom_listen
        dicom = f"  DICOM: AE title {settings.dicom_ae_title} on {dicom_host}:{dicom_port}\n"
    http = ""
    if http_url:
        http = f"  HTTP:    {http_url} (CDS Hooks, DICOMweb, the web pages, /regulator, /healthz)\n"
    if http_url and settings.viewer_dir is not None:
        http += f"  viewer:  {settings.http_public_url or http_url}/viewer/\n"
    # One write, the listening line last: whoever waits for it has read the rest too.
    return (
        f"mutualrec {__version__}\n"
        f"  index:   {_redact(settings.database_url)}\n"
        f"  objects: {store_description}\n"
        f"  patient-key secret from {settings.patient_key_secret_source}\n"
        f"  transport: {transport}\n"
        f"{dicom}"
        f"{http}"
        f"mutualrec listening on {host}:{port}{workers}"
    )


async def _run_server(
    settings: Settings,
    on_ready: Callable[[Runtime, int, HttpDoor | None], None],
    quiet: bool = False,
    dicom: bool = True,
) -> None:
    """Serve until SIGTERM or SIGINT, then let in-flight calls finish within the grace period.

    With ``dicom`` (and ``MUTUALREC_DICOM_LISTEN`` set) the DICOM door listens beside gRPC;
    the HTTP door listens on ``MUTUALREC_HTTP_LISTEN`` unless it is off.
    """
    _limit_malloc_arenas()
    runtime = Runtime.open(settings)
    door = None
    http: HttpDoor | None = None
    try:
        server, health, port = await build_server(runtime)
        # Everything loaded so far (modules, models, the catalog) lives as long as the process:
        # frozen out of the collector, full collections stay short instead of pausing calls.
        gc.collect()
        gc.freeze()
        await server.start()
        if dicom:
            door = listening_door(runtime)
        http = await open_http_door(runtime)
        await _set_health(health, health_pb2.HealthCheckResponse.SERVING)
        on_ready(runtime, port, http)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        if not quiet:
            print("mutualrec shutting down: finishing in-flight calls", flush=True)
        # Load balancers stop sending new work once health says NOT_SERVING.
        await _set_health(health, health_pb2.HealthCheckResponse.NOT_SERVING)
        grace = settings.shutdown_grace_seconds
        # Every door drains at once, within the one grace period.
        draining = [server.stop(grace)]
        if door is not None:
            draining.append(asyncio.to_thread(door.stop, grace))
            door = None
        if http is not None:
            draining.append(http.stop())
            http = None
        await asyncio.gather(*draining)
    finally:
        if door is not None:
            door.stop(0)
        if http is not None:
            await http.stop()
        runtime.close()


async def serve(settings: Settings, out: TextIO = sys.stdout) -> None:
    """Run one server process until SIGTERM or SIGINT."""

    _warn_shared_secret(settings)

    def ready(runtime: Runtime, port: int, http: HttpDoor | None) -> None:
        http_url = http.base_url if http is not None else None
        print(_banner(settings, runtime.store.description, port, 1, http_url), file=out, flush=True)

    await _run_server(settings, ready)
    print("mutualrec stopped", file=out, flush=True)


def _worker_main(settings: Settings, ready: multiprocessing.queues.Queue[int], dicom: bool) -> None:
    asyncio.run(
        _run_server(
            settings, lambda _runtime, port, _http: ready.put(port), quiet=True, dicom=dicom
        )
    )


def serve_processes(settings: Settings, out: TextIO = sys.stdout) -> int:
    """Run ``settings.processes`` server processes sharing one port (SO_REUSEPORT).

    Python runs one thread of Python at a time per process; one server process per core lets
    concurrent uploads use every core. The schema is brought up to date once, here, before the
    workers start. SIGTERM or SIGINT is passed on to every worker, which finish in-flight calls.
    """
    _warn_shared_secret(settings)
    # Migrate (when allowed) and check both stores once, before any worker starts.
    checked = Runtime.open(settings)
    store_description = checked.store.description
    checked.close()
    context = multiprocessing.get_context("spawn")
    ready: multiprocessing.queues.Queue[int] = context.Queue()
    # Only the first worker listens for DICOM: a PACS holds one association open for a whole
    # study and sends instance after instance on it, so spreading associations over processes
    # (SO_REUSEPORT) gains little, while one listener keeps the bound port, the association
    # limit and the AE's state in one place. The gRPC port is shared by every worker as before.
    workers = [
        context.Process(target=_worker_main, args=(settings, ready, i == 0), name=f"mutualrec-{i}")
        for i in range(settings.processes)
    ]
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGINT)}
    for worker in workers:
        worker.start()
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            print("mutualrec shutting down: finishing in-flight calls", file=out, flush=True)
        stopping = True
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        ports = {ready.get(timeout=60) for _ in workers}
    except queue.Empty:
        forward(signal.SIGTERM, None)
        print("mutualrec: a worker process did not start", file=sys.stderr, flush=True)
        return 1
    # Every worker serves HTTP on the one fixed port too (SO_REUSEPORT, as for gRPC): CDS
    # checks are short calls that spread well over processes, and each worker's admission and
    # limits are its own, as they are for gRPC.
    http_url = _http_url(settings)
    banner = _banner(settings, store_description, ports.pop(), len(workers), http_url)
    print(banner, file=out, flush=True)
    for worker in workers:
        worker.join()
    print("mutualrec stopped", file=out, flush=True)
    return 0 if stopping and all(w.exitcode == 0 for w in workers) else 1


def _http_url(settings: Settings) -> str | None:
    """The HTTP door's URL as settings name it (its port is fixed with several processes)."""
    if settings.http_listen is None:
        return None
    host, port = settings.http_listen
    scheme = "http" if settings.tls is None else "https"
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _warn_shared_secret(settings: Settings) -> None:
    warning = shared_secret_warning(settings)
    if warning:
        print(f"mutualrec: {warning}", file=sys.stderr, flush=True)


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas: with one arena per busy thread, concurrent uploads' buffers
    were seen to push peak RSS from about 200 to 570 MiB. A no-op where glibc is absent."""
    with contextlib.suppress(OSError, AttributeError):
        m_arena_max = -8
        ctypes.CDLL("libc.so.6").mallopt(m_arena_max, arenas)


def _redact(url: str) -> str:
    """The database URL without its password, for printing."""
    with contextlib.suppress(Exception):
        return make_url(url).render_as_string(hide_password=True)
    return "<unparseable database URL>"
