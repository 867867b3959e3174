"""Running the HTTP door with uvicorn on the server's own event loop, beside gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterator

import uvicorn

from mutualrec.http.app import build_app
from mutualrec.runtime import Runtime


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the process's own handlers stop every
    door together, within one grace period."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio turns Nagle's algorithm off on an accepted
    # connection only when its protocol says TCP. Without it every answer (headers, then body)
    # waited for the client's delayed ACK: 44 ms for GET /healthz.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        # Several worker processes share the port (the kernel spreads connections), as their
        # gRPC servers do; without it a second server on the port is an error, not a split.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno,
            f"cannot listen for HTTP on {host}:{port} (MUTUALREC_HTTP_LISTEN): {exc.strerror}",
        ) from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class HttpDoor:
    """The HTTP door, listening: its port, and stopping it."""

    def __init__(self, runtime: Runtime, address: tuple[str, int]) -> None:
        settings = runtime.settings
        self.serving = True
        self._socket = _socket(*address, reuse_port=settings.processes > 1)
        self.host = address[0]
        self.port: int = self._socket.getsockname()[1]
        tls = settings.tls
        self.tls = tls is not None
        config = uvicorn.Config(
            build_app(runtime, lambda: self.serving),
            lifespan="off",
            # httptools (a dependency), named, not "auto": a missing one must fail here, not
            # fall back to h11's pure Python, which costs a CDS call more CPU and copies every
            # body chunk again (WADO-RS sends whole studies).
            http="httptools",
            log_level="warning",
            access_log=False,
            # Proxies' headers are not trusted: the peer is who connected.
            proxy_headers=False,
            server_header=False,
            # As gRPC's maximum_concurrent_rpcs: beyond it a request is answered 503 at once
            # rather than queued without end.
            limit_concurrency=settings.max_concurrent_calls,
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds + 0.999),
            # The same certificate, key and client CA as gRPC's (a client CA: mTLS).
            ssl_certfile=str(tls.cert) if tls else None,
            ssl_keyfile=str(tls.key) if tls else None,
            ssl_ca_certs=str(tls.client_ca) if tls and tls.client_ca else None,
            ssl_cert_reqs=ssl.CERT_REQUIRED if tls and tls.client_ca else ssl.CERT_NONE,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        """Where clients reach the door."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    async def start(self) -> None:
        """Serve on the event loop until :meth:`stop`."""
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise OSError("the HTTP door stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Refuse new connections, let requests in progress finish (within the grace)."""
        self.serving = False
        self._server.should_exit = True
        if self._task is not None:
            await self._task
            self._task = None
        self._socket.close()


async def open_http_door(runtime: Runtime) -> HttpDoor | None:
    """The HTTP door started on ``MUTUALREC_HTTP_LISTEN``, or None when it is off."""
    address = runtime.settings.http_listen
    if address is None:
        return None
    door = HttpDoor(runtime, address)
    await door.start()
    # A recognized study's link opens the viewer here unless MUTUALREC_HTTP_PUBLIC_URL says where.
    runtime.study_links.serve_at(door.base_url)
    return door
