"""Settings, read from ``MUTUALREC_*`` environment variables, in one place: the server's
(:func:`load_settings`) and the command-line clients' (:func:`load_client_settings`).

With no variable set the service runs on its embedded defaults: a SQLite index and a local object
directory under ``./var/``, listening on 127.0.0.1:50051.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mutualrec.private_files import private_dir, tighten_file
from mutualrec.viewer_install import INSTALLED_MARK, default_dir

PREFIX = "MUTUALREC_"
MIB = 1024 * 1024
# Where the server listens, and so where its clients call, by default.
DEFAULT_ADDRESS = "127.0.0.1:50051"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable."""


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Where the S3 (MinIO) object store is and how to sign in to it."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    secure: bool
    region: str | None


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files of the server's TLS identity and, for mTLS, of the clients' CA."""

    cert: Path
    key: Path
    client_ca: Path | None


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of a server process; see the README's settings table."""

    listen: str
    data_dir: Path
    database_url: str
    object_store_url: str
    s3: S3Settings | None
    patient_key_secret: bytes
    patient_key_secret_source: str
    auto_migrate: bool
    fs_fsync: bool
    max_instance_bytes: int
    max_chunk_bytes: int
    max_fhir_bytes: int
    # Instance files WADO-RS keeps in memory once they passed their hash check (0: none).
    dicomweb_cache_bytes: int
    shutdown_grace_seconds: float
    blocking_workers: int
    parse_workers: int
    auth_cache_seconds: float
    processes: int
    # Signs patient tokens and paging cursors (HS256).
    token_secret: bytes
    # Statistics rows of groups with fewer checks are left out (0: none are).
    min_group_size: int = 0
    # How often statistics deltas are folded into the tallies.
    tally_interval_seconds: float = 5.0
    # Statistics reports computed at once by one server process; more wait their turn.
    max_concurrent_reports: int = 1
    # Checks (and, in batches of their own, decisions) one server process answers together with
    # one read and one record (1: one by one): enough to share the statements' cost at any rate
    # a process reaches, few enough that one batch's rules do not hold its first caller long.
    check_batch: int = 64
    # A deployment holding real patients' data: no generated or derived secrets.
    production: bool = False
    # Calls per second per credential (0: unlimited) and the burst allowed above that rate.
    rate_limit: float = 200.0
    rate_burst: float = 400.0
    # Concurrent UploadStudy streams per credential (0: unlimited).
    max_uploads: int = 16
    # Calls in progress in one server process; beyond it gRPC answers RESOURCE_EXHAUSTED.
    max_concurrent_calls: int = 1000
    # Calls in progress from one client address (0: no cap beyond max_concurrent_calls).
    max_calls_per_peer: int = 250
    # Seconds a call may take to send its request (a stream: its first message) after its
    # headers; one that sends nothing must not hold a call slot for long.
    request_timeout_seconds: float = 10.0
    # Failed authentications per second per client address (0: unlimited), and the burst; a
    # peer beyond them is refused before its credential costs a lookup.
    auth_failure_rate: float = 20.0
    auth_failure_burst: float = 40.0
    # Connections: concurrent streams on one, pings to find dead peers, and how long one may
    # stay idle or open at all (0: for ever) before the server closes it (GOAWAY).
    max_streams_per_connection: int = 100
    keepalive_seconds: float = 60.0
    max_connection_idle_seconds: float = 300.0
    max_connection_age_seconds: float = 3600.0
    # What reading one instance's header may cost (a deflated dataset's inflated size and
    # ratio, its elements), and the threads that read headers: never the ones storage needs.
    max_inflated_bytes: int = 1024 * MIB
    max_inflate_ratio: float = 200.0
    max_dicom_elements: int = 250_000
    header_workers: int = 2
    # TLS: the server's certificate and key (PEM), and the CA of hospitals' client
    # certificates, which makes every client present one (mTLS).
    tls: TlsFiles | None = None
    # Keys sealing kept FHIR originals at rest: the first seals, all of them open (rotation).
    document_keys: tuple[bytes, ...] = ()
    document_key_source: str = ""
    # How far ahead of the server's clock a reported time may be: hospital clocks drift a little;
    # beyond this a time in the future is an error in the feed, refused at ingest.
    clock_skew_seconds: float = 60.0
    # The DICOM C-STORE door: (host, port) to listen on (None: no listener), and our AE title.
    dicom_listen: tuple[str, int] | None = None
    dicom_ae_title: str = "MUTUALREC"
    # The HTTP door (CDS Hooks, health): (host, port) to listen on; None: no HTTP door.
    http_listen: tuple[str, int] | None = ("127.0.0.1", 8080)
    # The HTTP door's URL as callers see it behind a proxy or load balancer (no trailing slash;
    # empty: the URL each request arrived on). CDS Hooks tokens name it as their audience.
    http_public_url: str = ""
    # Browser sessions of the web pages: idle time and absolute lifetime, in seconds (a patient
    # token's own expiry ends its session sooner).
    web_session_idle_seconds: float = 1800.0
    web_session_max_seconds: float = 8 * 3600.0
    # A STOW-RS request's whole body (each part is an instance, bounded by max_instance_bytes).
    max_stow_bytes: int = 16384 * 1024 * 1024
    # The OHIF viewer served under /viewer/: its unpacked dist/ (None: not served).
    viewer_dir: Path | None = None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{PREFIX}{name} must be true or false, got {raw!r}")


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{PREFIX}{name} must be at least {minimum:g}, got {raw!r}")
    return value


def _patient_key_secret(env: Mapping[str, str], data_dir: Path) -> tuple[bytes, str]:
    """The HMAC secret for patient keys, and where it came from.

    Without a setting, a random secret is made once and kept beside the embedded data, so keys
    stay stable for that data directory without anyone shipping a well-known default.
    """
    configured = env.get(PREFIX + "PATIENT_KEY_SECRET")
    if configured:
        if len(configured) < 32:
            raise ConfigError(f"{PREFIX}PATIENT_KEY_SECRET must be at least 32 characters")
        return configured.encode("utf-8"), f"{PREFIX}PATIENT_KEY_SECRET"
    path = data_dir / "patient-key.secret"
    if not path.exists():
        private_dir(data_dir)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    tighten_file(path)
    return path.read_text().strip().encode("utf-8"), str(path)


def _hex_key(raw: str, name: str) -> bytes:
    try:
        key = bytes.fromhex(raw.strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError(f"{PREFIX}{name} must be 64 hexadecimal digits (a 256-bit key)")
    return key


def _document_keys(env: Mapping[str, str], data_dir: Path) -> tuple[tuple[bytes, ...], str]:
    """The keys sealing kept FHIR originals (the current one first), and where they came from.

    ``DOCUMENT_KEY`` seals; ``DOCUMENT_KEYS_RETIRED`` (comma-separated) still opens what older
    keys sealed, so a deployment can roll its key. Without a setting, a random key is made once
    and kept beside the embedded data (0600), like the patient-key secret.
    """
    retired = tuple(
        _hex_key(raw, "DOCUMENT_KEYS_RETIRED")
        for raw in env.get(PREFIX + "DOCUMENT_KEYS_RETIRED", "").split(",")
        if raw.strip()
    )
    configured = env.get(PREFIX + "DOCUMENT_KEY")
    if configured:
        return (_hex_key(configured, "DOCUMENT_KEY"), *retired), f"{PREFIX}DOCUMENT_KEY"
    path = data_dir / "document-key.secret"
    if not path.exists():
        private_dir(data_dir)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
    tighten_file(path)
    return (_hex_key(path.read_text(), "DOCUMENT_KEY"), *retired), str(path)


# Fewer distinct characters than this is a placeholder ("xxxx...", "changeme" repeated), not a
# secret; 32 random hex digits hold 16.
_MIN_DISTINCT_SECRET_CHARACTERS = 10


def _require_production_secrets(env: Mapping[str, str]) -> None:
    """Refuse what is fine on a laptop and wrong with a city's data: a patient-key secret
    generated into one server's data directory (other servers would key patients differently),
    a token key derived from it, placeholders, and the same value for both."""
    problems = []
    values = {}
    for name in ("PATIENT_KEY_SECRET", "TOKEN_SECRET"):
        value = env.get(PREFIX + name, "")
        values[name] = value
        if not value:
            problems.append(f"{PREFIX}{name} must be set")
        elif len(set(value)) < _MIN_DISTINCT_SECRET_CHARACTERS:
            problems.append(f"{PREFIX}{name} looks like a placeholder, not a random secret")
    if values["PATIENT_KEY_SECRET"] and values["PATIENT_KEY_SECRET"] == values["TOKEN_SECRET"]:
        problems.append(f"{PREFIX}PATIENT_KEY_SECRET and {PREFIX}TOKEN_SECRET must differ")
    if not env.get(PREFIX + "DOCUMENT_KEY"):
        # A key generated into one server's directory: the others could not read the originals.
        problems.append(f"{PREFIX}DOCUMENT_KEY must be set")
    if problems:
        raise ConfigError(f"{PREFIX}PRODUCTION is on: " + "; ".join(problems))


def _tls_files(env: Mapping[str, str]) -> TlsFiles | None:
    names = ("TLS_CERT", "TLS_KEY", "TLS_CLIENT_CA")
    cert, key, client_ca = (env.get(PREFIX + name, "") for name in names)
    if not (cert or key or client_ca):
        return None
    if not (cert and key):
        raise ConfigError(f"{PREFIX}TLS_CERT and {PREFIX}TLS_KEY go together")
    paths = [Path(p) for p in (cert, key, client_ca) if p]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(f"TLS files not found: {', '.join(missing)}")
    return TlsFiles(Path(cert), Path(key), Path(client_ca) if client_ca else None)


def _token_secret(env: Mapping[str, str], patient_key_secret: bytes) -> bytes:
    """The key that signs patient tokens: its own setting, else one derived from the
    patient-key secret (a keyed hash with a fixed label, so the two never coincide and a
    token's signature reveals nothing of the patient-key secret)."""
    configured = env.get(PREFIX + "TOKEN_SECRET")
    if configured:
        if len(configured) < 32:
            raise ConfigError(f"{PREFIX}TOKEN_SECRET must be at least 32 characters")
        return configured.encode("utf-8")
    return hmac.new(patient_key_secret, b"mutualrec patient tokens v1", hashlib.sha256).digest()


def _s3_settings(env: Mapping[str, str], url: str) -> S3Settings:
    bucket = url.removeprefix("s3://").strip("/")
    if not bucket or "/" in bucket:
        raise ConfigError(f"{PREFIX}OBJECT_STORE must be s3://BUCKET, got {url!r}")
    missing = [
        PREFIX + name
        for name in ("S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY")
        if not env.get(PREFIX + name)
    ]
    if missing:
        raise ConfigError(f"an s3:// object store needs {', '.join(missing)}")
    return S3Settings(
        endpoint=env[PREFIX + "S3_ENDPOINT"],
        access_key=env[PREFIX + "S3_ACCESS_KEY"],
        secret_key=env[PREFIX + "S3_SECRET_KEY"],
        bucket=bucket,
        secure=_bool(env, "S3_SECURE", True),
        region=env.get(PREFIX + "S3_REGION") or None,
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``env`` (the process environment by default)."""
    env = os.environ if env is None else env
    data_dir = Path(env.get(PREFIX + "DATA_DIR") or "var").resolve()
    database_url = env.get(PREFIX + "DATABASE_URL") or f"sqlite:///{data_dir / 'index.sqlite3'}"
    object_store_url = env.get(PREFIX + "OBJECT_STORE") or f"file://{data_dir / 'objects'}"
    if object_store_url.startswith("s3://"):
        s3: S3Settings | None = _s3_settings(env, object_store_url)
    elif object_store_url.startswith("file://"):
        s3 = None
    else:
        raise ConfigError(
            f"{PREFIX}OBJECT_STORE must start with file:// or s3://, got {object_store_url!r}"
        )
    production = _bool(env, "PRODUCTION", False)
    if production:
        _require_production_secrets(env)
    secret, secret_source = _patient_key_secret(env, data_dir)
    document_keys, document_key_source = _document_keys(env, data_dir)
    listen = env.get(PREFIX + "LISTEN") or DEFAULT_ADDRESS
    processes = int(_number(env, "PROCESSES", 1, 1))
    if processes > 1 and listen.endswith(":0"):
        raise ConfigError(f"{PREFIX}PROCESSES > 1 needs a fixed port in {PREFIX}LISTEN")
    is_sqlite = database_url.startswith("sqlite")
    rate_limit = _number(env, "RATE_LIMIT", 200, 0)
    max_concurrent_calls = int(_number(env, "MAX_CONCURRENT_CALLS", 1000, 1))
    # A tenth of the call rate: a client whose credentials keep failing is broken or guessing.
    auth_failure_rate = _number(env, "AUTH_FAILURE_RATE", rate_limit / 10, 0)
    return Settings(
        listen=listen,
        data_dir=data_dir,
        database_url=database_url,
        object_store_url=object_store_url,
        s3=s3,
        patient_key_secret=secret,
        patient_key_secret_source=secret_source,
        auto_migrate=_bool(env, "AUTO_MIGRATE", is_sqlite),
        fs_fsync=_bool(env, "FS_FSYNC", True),
        max_instance_bytes=int(_number(env, "MAX_INSTANCE_MIB", 4096, 1) * MIB),
        max_chunk_bytes=MIB,
        max_fhir_bytes=int(_number(env, "MAX_FHIR_MIB", 16, 1) * MIB),
        dicomweb_cache_bytes=int(_number(env, "DICOMWEB_CACHE_MIB", 256, 0) * MIB),
        shutdown_grace_seconds=_number(env, "SHUTDOWN_GRACE_SECONDS", 30, 0),
        blocking_workers=int(_number(env, "BLOCKING_WORKERS", 8, 1)),
        auth_cache_seconds=_number(env, "AUTH_CACHE_SECONDS", 30, 0),
        parse_workers=int(_number(env, "PARSE_WORKERS", os.cpu_count() or 1, 0)),
        processes=processes,
        token_secret=_token_secret(env, secret),
        min_group_size=int(_number(env, "MIN_GROUP_SIZE", 0, 0)),
        max_concurrent_reports=int(_number(env, "MAX_CONCURRENT_REPORTS", 1, 1)),
        check_batch=int(_number(env, "CHECK_BATCH", 64, 1)),
        tally_interval_seconds=_number(env, "TALLY_INTERVAL_SECONDS", 5, 0.1),
        production=production,
        rate_limit=rate_limit,
        rate_burst=_number(env, "RATE_BURST", max(2 * rate_limit, 1), 1),
        max_uploads=int(_number(env, "MAX_UPLOADS", 16, 0)),
        max_concurrent_calls=max_concurrent_calls,
        max_calls_per_peer=int(
            _number(env, "MAX_CALLS_PER_PEER", max(max_concurrent_calls // 4, 1), 0)
        ),
        request_timeout_seconds=_number(env, "REQUEST_TIMEOUT_SECONDS", 10, 0.1),
        auth_failure_rate=auth_failure_rate,
        auth_failure_burst=_number(env, "AUTH_FAILURE_BURST", max(2 * auth_failure_rate, 1), 1),
        max_streams_per_connection=int(_number(env, "MAX_STREAMS_PER_CONNECTION", 100, 1)),
        keepalive_seconds=_number(env, "KEEPALIVE_SECONDS", 60, 1),
        max_connection_idle_seconds=_number(env, "MAX_CONNECTION_IDLE_SECONDS", 300, 0),
        max_connection_age_seconds=_number(env, "MAX_CONNECTION_AGE_SECONDS", 3600, 0),
        max_inflated_bytes=int(_number(env, "MAX_INFLATED_MIB", 1024, 1) * MIB),
        max_inflate_ratio=_number(env, "MAX_INFLATE_RATIO", 200, 1),
        max_dicom_elements=int(_number(env, "MAX_DICOM_ELEMENTS", 250_000, 1)),
        header_workers=int(_number(env, "HEADER_WORKERS", 2, 1)),
        tls=_tls_files(env),
        document_keys=document_keys,
        document_key_source=document_key_source,
        clock_skew_seconds=_number(env, "CLOCK_SKEW_SECONDS", 60, 0),
        dicom_listen=_dicom_listen(env),
        dicom_ae_title=_dicom_ae_title(env),
        http_listen=_http_listen(env, processes),
        http_public_url=_http_public_url(env),
        web_session_idle_seconds=_number(env, "WEB_SESSION_IDLE_SECONDS", 1800, 60),
        web_session_max_seconds=_number(env, "WEB_SESSION_MAX_SECONDS", 8 * 3600, 60),
        max_stow_bytes=int(_number(env, "MAX_STOW_MIB", 16384, 1) * MIB),
        viewer_dir=_viewer_dir(env),
    )


def _http_public_url(env: Mapping[str, str]) -> str:
    raw = (env.get(PREFIX + "HTTP_PUBLIC_URL") or "").strip().rstrip("/")
    if raw and not (raw.startswith(("https://", "http://")) and "?" not in raw and "#" not in raw):
        raise ConfigError(
            f"{PREFIX}HTTP_PUBLIC_URL must be an http(s) URL without query, e.g. "
            f"https://region.example.org, got {raw!r}"
        )
    return raw


def _viewer_dir(env: Mapping[str, str]) -> Path | None:
    """Where the OHIF viewer's files are: MUTUALREC_VIEWER_DIR, ``off`` for none; by default
    what ``make install`` unpacked beside the virtualenv, if it did."""
    raw = (env.get(PREFIX + "VIEWER_DIR") or "").strip()
    if raw.lower() in HTTP_OFF:
        return None
    if raw:
        path = Path(raw).expanduser()
        if not (path / "index.html").is_file():
            raise ConfigError(f"{PREFIX}VIEWER_DIR has no index.html: {raw!r}")
        return path
    installed = default_dir()
    return installed if (installed / INSTALLED_MARK).is_file() else None


# Values of MUTUALREC_HTTP_LISTEN that turn the HTTP door off.
HTTP_OFF = frozenset({"off", "none", "no", "false", "0"})
DEFAULT_HTTP_ADDRESS = "127.0.0.1:8080"


def _http_listen(env: Mapping[str, str], processes: int) -> tuple[str, int] | None:
    raw = (env.get(PREFIX + "HTTP_LISTEN") or DEFAULT_HTTP_ADDRESS).strip()
    if raw.lower() in HTTP_OFF:
        return None
    host, _, port = raw.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            f"{PREFIX}HTTP_LISTEN must be host:port (e.g. 0.0.0.0:8080) or off, got {raw!r}"
        )
    if processes > 1 and int(port) == 0:
        raise ConfigError(f"{PREFIX}PROCESSES > 1 needs a fixed port in {PREFIX}HTTP_LISTEN")
    return host.strip("[]"), int(port)


def _dicom_listen(env: Mapping[str, str]) -> tuple[str, int] | None:
    raw = (env.get(PREFIX + "DICOM_LISTEN") or "").strip()
    if not raw:
        return None
    host, _, port = raw.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            f"{PREFIX}DICOM_LISTEN must be host:port (e.g. 0.0.0.0:11112), got {raw!r}"
        )
    return host.strip("[]"), int(port)


def _dicom_ae_title(env: Mapping[str, str]) -> str:
    title = (env.get(PREFIX + "DICOM_AE_TITLE") or "MUTUALREC").strip()
    # PS3.5 6.2 (AE): 1 to 16 printable ASCII characters, no backslash.
    if len(title) > 16 or not title.isascii() or not title.isprintable() or "\\" in title:
        raise ConfigError(
            f"{PREFIX}DICOM_AE_TITLE must be 1 to 16 printable ASCII characters, got {title!r}"
        )
    return title


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """What the command-line clients read from the environment; each command's flags win.

    Empty means not set: the command then asks for the flag, or goes without (no TLS).
    """

    # HOST:PORT of the server.
    server: str
    # A hospital's, regulator's or administrator's API key.
    api_key: str
    # A patient token or a share link's token.
    token: str
    # The server's CA (PEM): connect with TLS.
    server_ca: str
    # A hospital's client certificate and its key (PEM), for mTLS.
    client_cert: str
    client_key: str


def load_client_settings(env: Mapping[str, str] | None = None) -> ClientSettings:
    """Read the clients' settings from ``env`` (the process environment by default)."""
    env = os.environ if env is None else env

    # Not the server's settings (`serve --help` lists those): each client option's help names
    # its variable instead.
    def client_variable(name: str, default: str = "") -> str:
        return env.get(f"{PREFIX}{name}", default)

    return ClientSettings(
        server=client_variable("SERVER", DEFAULT_ADDRESS),
        api_key=client_variable("API_KEY"),
        token=client_variable("TOKEN"),
        server_ca=client_variable("SERVER_CA"),
        client_cert=client_variable("CLIENT_CERT"),
        client_key=client_variable("CLIENT_KEY"),
    )
