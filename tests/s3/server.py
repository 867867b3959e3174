"""A throwaway S3-compatible server for tests: OpenStack Swift with ``s3api``.

Why Swift: it is a real, independently written S3 implementation that installs
from PyPI alone (``tests/s3/install.sh``), so our S3 backend is exercised over
real HTTP against someone else's idea of the protocol rather than against a mock.

Swift is installed into its own virtualenv (default ``<repo>/.venv-s3``,
overridable with ``MUTUALREC_S3_VENV``) because it pins eventlet, lxml, etc.
that must not leak into the project's venv. This module therefore never
imports Swift; it only writes config files and starts Swift's own server
scripts with that venv's interpreter.

One :class:`LocalS3Server` is a tiny all-in-one cluster on 127.0.0.1:

* one ring each for account/container/object, 1 replica, one device dir;
* ``swift-account-server``, ``swift-container-server``,
  ``swift-object-server`` and ``swift-proxy-server`` (with ``s3api`` and
  ``tempauth``), each a single process (``workers = 0``);
* everything (config, rings, data, logs) lives in one temp dir that is
  removed on exit.

Usage::

    with LocalS3Server() as s3:
        client = Minio(s3.endpoint, s3.access_key, s3.secret_key,
                       secure=s3.secure, region=s3.region)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import hmac
import http.client
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

__all__ = [
    "DEFAULT_VENV",
    "LocalS3Server",
    "LocalS3ServerError",
    "s3_server_available",
    "s3_venv",
]

#: Repository root (this file is ``<repo>/tests/s3/server.py``).
_REPO_ROOT: Final = Path(__file__).resolve().parents[2]

#: Where ``tests/s3/install.sh`` puts Swift unless ``MUTUALREC_S3_VENV`` says otherwise.
DEFAULT_VENV: Final = _REPO_ROOT / ".venv-s3"

#: Written by install.sh only after a successful install and import check, so
#: its presence means "fully installed" rather than "half-populated venv".
_MARKER_NAME: Final = ".mutualrec-s3-installed"

#: The four Swift daemons, in the order they are started.
_SERVERS: Final = ("account", "container", "object", "proxy")

#: tempauth user; s3api maps S3 access key ``account:user`` to this user.
_ACCESS_KEY: Final = "test:tester"
_SECRET_KEY: Final = "testing"
#: s3api's ``location``; SigV4 requests must be scoped to this region.
_REGION: Final = "us-east-1"

#: How many log lines per server to put into a startup error.
_LOG_TAIL_LINES: Final = 25


class LocalS3ServerError(RuntimeError):
    """The local S3 server could not be started (message includes log tails)."""


def s3_venv() -> Path:
    """Return the virtualenv that holds Swift (``$MUTUALREC_S3_VENV`` or the default)."""
    override = os.environ.get("MUTUALREC_S3_VENV")
    return Path(override).expanduser().resolve() if override else DEFAULT_VENV


def s3_server_available(venv: Path | None = None) -> str | None:
    """Tell whether :class:`LocalS3Server` can be started here.

    :param venv: virtualenv to check; defaults to :func:`s3_venv`.

    Returns ``None`` if it can, else a human-readable reason suitable for
    ``pytest.skip``. This only checks the install (cheap, no processes are
    started): the marker file is written by install.sh after it verified that
    Swift imports, so a present marker plus the server scripts is the signal.
    """
    venv = venv if venv is not None else s3_venv()
    hint = "run tests/s3/install.sh"
    if not (venv / "bin" / "python").is_file():
        return f"Swift S3 server venv not found at {venv}: {hint}"
    if not (venv / _MARKER_NAME).is_file():
        return f"Swift S3 server install in {venv} is incomplete: {hint}"
    for name in _SERVERS:
        script = venv / "bin" / f"swift-{name}-server"
        if not script.is_file():
            return f"{script} is missing: {hint}"
    return None


def _free_ports(count: int) -> list[int]:
    """Return ``count`` distinct currently free TCP ports on 127.0.0.1.

    All sockets are held open until every port is chosen so that the kernel
    cannot hand out the same port twice. Another process could still grab one
    before Swift binds it; :meth:`LocalS3Server.start` retries on that.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _sigv4_list_buckets_headers(
    host: str, access_key: str, secret_key: str, region: str
) -> dict[str, str]:
    """Build AWS SigV4 headers for ``GET /`` (ListBuckets) with an empty body.

    Used only for the readiness probe, so that "ready" means "the proxy,
    s3api, tempauth and the account server all answer a signed request",
    without importing an S3 SDK into this module.
    """
    now = _dt.datetime.now(_dt.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    datestamp = amz_date[:8]
    payload_hash = hashlib.sha256(b"").hexdigest()
    signed_headers = "host;x-amz-content-sha256;x-amz-date"
    canonical_request = "\n".join(
        [
            "GET",
            "/",
            "",  # no query string
            f"host:{host}",
            f"x-amz-content-sha256:{payload_hash}",
            f"x-amz-date:{amz_date}",
            "",  # canonical headers end with a newline
            signed_headers,
            payload_hash,
        ]
    )
    scope = f"{datestamp}/{region}/s3/aws4_request"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = f"AWS4{secret_key}".encode()
    for part in (datestamp, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "Host": host,
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload_hash,
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        ),
    }


def _http_status(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 2.0
) -> int | None:
    """Return the HTTP status of ``GET path`` on 127.0.0.1:port, or None if unreachable."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _check_xattrs(directory: Path) -> None:
    """Fail early and clearly if ``directory``'s filesystem lacks user xattrs.

    Swift's object server keeps object metadata in ``user.*`` xattrs and
    answers 507 to every PUT without them, which would surface as a baffling
    error deep inside a test rather than here.
    """
    probe = directory / "xattr-probe"
    probe.touch()
    try:
        os.setxattr(probe, "user.mutualrec.probe", b"1")
    except OSError as exc:
        raise LocalS3ServerError(
            f"{directory} does not support user xattrs ({exc}), which Swift needs; "
            "point TMPDIR at a filesystem that does (ext4, xfs, btrfs, tmpfs >= 6.6)"
        ) from exc
    finally:
        probe.unlink()


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a log file (or a note if unreadable)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:]) or "<empty>"


# Builds the three rings with Swift's own RingBuilder, all in one interpreter
# so we pay Swift's import cost once instead of nine swift-ring-builder runs.
# argv: swift_dir, account_port, container_port, object_port.
_RING_SCRIPT: Final = """
import sys
from swift.common.ring import RingBuilder

swift_dir = sys.argv[1]
for name, port in zip(("account", "container", "object"), sys.argv[2:5]):
    # part_power 6 keeps the rings tiny; 1 replica; min_part_hours 0.
    builder = RingBuilder(6, 1, 0)
    builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1",
                     "port": int(port), "device": "d1", "weight": 100.0,
                     "meta": ""})
    builder.rebalance()
    builder.get_ring().save(f"{swift_dir}/{name}.ring.gz")
"""


@dataclass
class _Proc:
    """One started Swift daemon, kept with its log for error reports."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path


class LocalS3Server:
    """A Swift all-in-one with ``s3api`` on free 127.0.0.1 ports, as a context manager.

    Attributes available after :meth:`start` (or ``__enter__``):

    * ``endpoint`` — ``"127.0.0.1:PORT"`` for the S3 API (path-style);
    * ``access_key`` / ``secret_key`` — tempauth user ``test:tester``/``testing``;
    * ``region`` — ``"us-east-1"``; ``secure`` — ``False`` (plain HTTP).
    """

    access_key: Final[str] = _ACCESS_KEY
    secret_key: Final[str] = _SECRET_KEY
    region: Final[str] = _REGION
    secure: Final[bool] = False

    def __init__(
        self,
        *,
        venv: Path | None = None,
        startup_timeout: float = 30.0,
        port_attempts: int = 3,
    ) -> None:
        """Prepare (but do not start) a server.

        :param venv: virtualenv holding Swift; defaults to :func:`s3_venv`.
        :param startup_timeout: seconds to wait for a signed S3 request to
            succeed before giving up; generous because CI machines are shared.
        :param port_attempts: how many fresh sets of ports to try when a port
            picked as free was taken by someone else before Swift bound it.
        """
        self._venv = venv if venv is not None else s3_venv()
        self._startup_timeout = startup_timeout
        self._port_attempts = port_attempts
        self._tmp: Path | None = None
        self._procs: list[_Proc] = []
        self._port: int | None = None

    # -- public API ---------------------------------------------------------

    @property
    def port(self) -> int:
        """TCP port of the S3 endpoint (only valid while running)."""
        if self._port is None:
            raise RuntimeError("LocalS3Server is not running")
        return self._port

    @property
    def endpoint(self) -> str:
        """``host:port`` of the S3 endpoint, as the minio SDK wants it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://host:port`` of the S3 endpoint, for clients that want a URL."""
        return f"http://{self.endpoint}"

    def start(self) -> None:
        """Write config, build rings, start the four daemons and wait until S3 answers.

        :raises LocalS3ServerError: if Swift is not installed or does not come
            up within ``startup_timeout``; the message carries log tails.
        """
        if self._procs:
            raise RuntimeError("LocalS3Server is already running")
        reason = s3_server_available(self._venv)
        if reason is not None:
            raise LocalS3ServerError(reason)
        self._tmp = Path(tempfile.mkdtemp(prefix="mutualrec-s3-"))
        try:
            _check_xattrs(self._tmp)
            last_logs = ""
            for _ in range(self._port_attempts):
                ports = dict(zip(_SERVERS, _free_ports(len(_SERVERS)), strict=True))
                try:
                    self._start_once(ports)
                    return
                except _PortTaken:
                    last_logs = self.logs()
                    self._kill_all()
            raise LocalS3ServerError(
                f"ports kept being taken by other processes; gave up after "
                f"{self._port_attempts} attempts\n{last_logs}"
            )
        except BaseException:
            # Never leave daemons or a temp dir behind on a failed start,
            # including KeyboardInterrupt while waiting.
            self.stop()
            raise

    def stop(self) -> None:
        """Stop all daemons (TERM, then KILL) and remove the temp dir. Idempotent."""
        self._kill_all()
        self._port = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def logs(self) -> str:
        """Return the last lines of every daemon's log (empty once stopped)."""
        return "\n".join(
            f"--- {p.name}-server (exit code {p.popen.poll()}) {p.log} ---\n{_tail(p.log)}"
            for p in self._procs
        )

    def __enter__(self) -> LocalS3Server:
        """Start the server; see :meth:`start`."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server; see :meth:`stop`."""
        self.stop()

    # -- internals ----------------------------------------------------------

    def _start_once(self, ports: dict[str, int]) -> None:
        """One start attempt on the given ports; raises :class:`_PortTaken` to retry."""
        assert self._tmp is not None
        attempt_dir = Path(tempfile.mkdtemp(prefix="run-", dir=self._tmp))
        swift_dir = attempt_dir / "etc"
        swift_dir.mkdir()
        (attempt_dir / "srv" / "d1").mkdir(parents=True)
        (attempt_dir / "log").mkdir()
        self._write_configs(attempt_dir, ports)
        self._build_rings(swift_dir, ports)
        self._port = ports["proxy"]
        for name in _SERVERS:
            self._procs.append(self._spawn(name, attempt_dir))
        self._wait_ready(ports)

    def _python(self) -> Path:
        return self._venv / "bin" / "python"

    def _child_env(self) -> dict[str, str]:
        """Environment for Swift processes, cleaned of anything from our own venv.

        PYTHONPATH/PYTHONHOME from the test run (or the project venv's
        VIRTUAL_ENV) could make Swift's interpreter import our packages, which
        is exactly the mixing the separate venv exists to avoid.
        """
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
        }
        env["PYTHONUNBUFFERED"] = "1"  # so log tails are complete when we read them
        return env

    def _build_rings(self, swift_dir: Path, ports: dict[str, int]) -> None:
        """Build account/container/object rings pointing at our chosen ports."""
        args = [str(ports[n]) for n in ("account", "container", "object")]
        result = subprocess.run(
            [str(self._python()), "-c", _RING_SCRIPT, str(swift_dir), *args],
            env=self._child_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise LocalS3ServerError(
                f"building Swift rings failed (exit {result.returncode}):\n{result.stderr[-4000:]}"
            )

    def _write_configs(self, root: Path, ports: dict[str, int]) -> None:
        """Write swift.conf and one paste-deploy config per daemon under ``root/etc``."""
        swift_dir = root / "etc"
        user = pwd.getpwuid(os.getuid()).pw_name
        # swift.conf is found through ``swift_dir`` below, so nothing is read
        # from (or written to) the machine-wide /etc/swift.
        (swift_dir / "swift.conf").write_text(
            "[swift-hash]\n"
            "swift_hash_path_suffix = mutualrec-test-suffix\n"
            "swift_hash_path_prefix = mutualrec-test-prefix\n"
            "\n"
            "[storage-policy:0]\n"
            "name = Policy-0\n"
            "default = yes\n"
        )
        for name in _SERVERS:
            common = (
                "[DEFAULT]\n"
                f"bind_ip = 127.0.0.1\n"
                f"bind_port = {ports[name]}\n"
                # Swift otherwise retries a busy port for 30 s; fail fast so
                # that LocalS3Server.start can pick new ports instead.
                "bind_timeout = 2\n"
                # One process per daemon: no forked workers to chase on stop.
                "workers = 0\n"
                # Swift drops privileges to this user (default "swift", which
                # does not exist here).
                f"user = {user}\n"
                f"swift_dir = {swift_dir}\n"
                f"devices = {root / 'srv'}\n"
                # The device is a plain directory, not a mount point.
                "mount_check = false\n"
                # tmpfs/overlay filesystems may not support fallocate; we
                # never need the space reservation it provides.
                "disable_fallocate = true\n"
                # No syslog socket here: point at a path that does not exist
                # (Swift then falls back to UDP syslog, which goes nowhere) and
                # rely on ``-v`` (console logging into our log file) instead.
                f"log_address = {root / 'no-syslog'}\n"
                f"log_name = {name}-server\n"
                "log_level = INFO\n"
                "\n"
            )
            (swift_dir / f"{name}-server.conf").write_text(common + _APP_CONF[name])

    def _spawn(self, name: str, root: Path) -> _Proc:
        """Start one daemon with stdout+stderr going to its log file."""
        log = root / "log" / f"{name}-server.log"
        script = self._venv / "bin" / f"swift-{name}-server"
        conf = root / "etc" / f"{name}-server.conf"
        with log.open("wb") as log_fh:
            popen = subprocess.Popen(
                # ``-v`` keeps Swift logging to stderr (our log file) after it
                # detaches stdio.
                [str(self._python()), str(script), str(conf), "-v"],
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                env=self._child_env(),
                # Own session => own process group, so stop() can signal the
                # whole group. (Swift calls setsid() itself at start-up; as a
                # session leader already it stays in this group.)
                start_new_session=True,
            )
        return _Proc(name=name, popen=popen, log=log)

    def _wait_ready(self, ports: dict[str, int]) -> None:
        """Poll until every backend's healthcheck and a signed ListBuckets answer 200."""
        deadline = time.monotonic() + self._startup_timeout
        pending = set(_SERVERS)
        host = f"127.0.0.1:{ports['proxy']}"
        while True:
            for proc in self._procs:
                if proc.popen.poll() is not None:
                    # Swift's own wording after ``bind_timeout`` on a busy port.
                    if "Could not bind to" in _tail(proc.log, 200):
                        raise _PortTaken(proc.name)
                    raise LocalS3ServerError(
                        f"Swift {proc.name}-server exited with code "
                        f"{proc.popen.returncode} during start-up\n{self.logs()}"
                    )
            for name in sorted(pending):
                if name == "proxy":
                    # Fresh headers each time: SigV4 signatures carry a timestamp.
                    headers = _sigv4_list_buckets_headers(
                        host, self.access_key, self.secret_key, self.region
                    )
                    status = _http_status(ports[name], "/", headers)
                else:
                    status = _http_status(ports[name], "/healthcheck")
                if status == 200:
                    pending.discard(name)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise LocalS3ServerError(
                    f"Swift S3 server not ready after {self._startup_timeout:.0f} s "
                    f"(still waiting for: {', '.join(sorted(pending))})\n{self.logs()}"
                )
            time.sleep(0.05)

    def _kill_all(self) -> None:
        """TERM every daemon's process group, then KILL whatever is left after a grace."""
        for proc in self._procs:
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for proc in self._procs:
            try:
                proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()
        self._procs = []


class _PortTaken(Exception):
    """A daemon lost the race for a port we picked; start again on new ports."""


# Per-daemon paste-deploy pipelines. Backends get only ``healthcheck`` (used by
# the readiness probe). The proxy pipeline follows Swift's sample order with
# what s3api needs: s3api before tempauth, and slo (multipart uploads are
# stored as SLO manifests; without it s3api disables multipart).
_APP_CONF: Final[dict[str, str]] = {
    "account": (
        "[pipeline:main]\n"
        "pipeline = healthcheck account-server\n"
        "\n"
        "[app:account-server]\n"
        "use = egg:swift#account\n"
        "\n"
        "[filter:healthcheck]\n"
        "use = egg:swift#healthcheck\n"
    ),
    "container": (
        "[pipeline:main]\n"
        "pipeline = healthcheck container-server\n"
        "\n"
        "[app:container-server]\n"
        "use = egg:swift#container\n"
        "\n"
        "[filter:healthcheck]\n"
        "use = egg:swift#healthcheck\n"
    ),
    "object": (
        "[pipeline:main]\n"
        "pipeline = healthcheck object-server\n"
        "\n"
        "[app:object-server]\n"
        "use = egg:swift#object\n"
        "\n"
        "[filter:healthcheck]\n"
        "use = egg:swift#healthcheck\n"
    ),
    "proxy": (
        "[pipeline:main]\n"
        "pipeline = catch_errors gatekeeper healthcheck proxy-logging listing_formats"
        " s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server\n"
        "\n"
        "[app:proxy-server]\n"
        "use = egg:swift#proxy\n"
        # The tempauth account (AUTH_test) does not exist until first use.
        "account_autocreate = true\n"
        "\n"
        "[filter:s3api]\n"
        "use = egg:swift#s3api\n"
        f"location = {_REGION}\n"
        # Plain S3 semantics for bucket names (no dots/uppercase surprises).
        "dns_compliant_bucket_names = true\n"
        "\n"
        "[filter:tempauth]\n"
        "use = egg:swift#tempauth\n"
        # user_<account>_<user> = <key> <groups>; .admin owns the account.
        f"user_test_tester = {_SECRET_KEY} .admin\n"
        "\n"
        "[filter:catch_errors]\n"
        "use = egg:swift#catch_errors\n"
        "\n"
        "[filter:gatekeeper]\n"
        "use = egg:swift#gatekeeper\n"
        "\n"
        "[filter:healthcheck]\n"
        "use = egg:swift#healthcheck\n"
        "\n"
        "[filter:proxy-logging]\n"
        "use = egg:swift#proxy_logging\n"
        "\n"
        "[filter:listing_formats]\n"
        "use = egg:swift#listing_formats\n"
        "\n"
        "[filter:copy]\n"
        "use = egg:swift#copy\n"
        "\n"
        "[filter:slo]\n"
        "use = egg:swift#slo\n"
        "\n"
        "[filter:dlo]\n"
        "use = egg:swift#dlo\n"
        "\n"
        # Listed only because Swift inserts it anyway (and logs a warning).
        "[filter:versioned_writes]\n"
        "use = egg:swift#versioned_writes\n"
    ),
}
