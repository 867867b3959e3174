#!/usr/bin/env python3
"""Ingest benchmark: mutualrec (SQLite or PostgreSQL index, local-directory objects) vs Orthanc.

Every configuration uploads the same CT-like study (512x512 int16 instances of about 0.5 MB,
written by ``dicom_samples/make_samples.py --bench-ct``) with 1 and with N parallel streams:

* mutualrec: one ``UploadStudy`` call per stream, each on its own gRPC channel, the files split
  into N disjoint contiguous parts of the same study and patient;
* Orthanc: one persistent HTTP/1.1 connection per stream, ``POST /instances`` per file.

Throughput is timed from the first byte sent to the last reply received. Each run starts a fresh
server on a fresh data directory (and, for PostgreSQL, a freshly created database) and reads the
server's peak RSS (``VmHWM``) and CPU time from ``/proc`` right before stopping it.

Orthanc listens on every interface, so by default the script re-executes itself inside a new
network namespace (``unshare --net``) that has only a loopback interface, and runs every server
and client there: all peers are measured the same way and no traffic can leave the machine.
PostgreSQL is then reached over its Unix socket.

    .venv/bin/python bench/ingest_bench.py --files 1800 --streams 1 4 \\
        --backends sqlite postgres orthanc --runs 2 --json /tmp/ingest.json
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
MAKE_SAMPLES = REPO / "dicom_samples" / "make_samples.py"
NETNS_ENV = "MUTUALREC_BENCH_IN_NETNS"
BACKENDS = ("sqlite", "postgres", "orthanc")
INSTITUTION = ("H500103001", "CQ YUZHONG DEMO PEOPLES HOSPITAL", "Yuzhong", "tertiary")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
UPLOAD_TIMEOUT = 3600.0
MB = 1_000_000
MIB = 1024 * 1024
# Multi-frame Grayscale Word Secondary Capture: a storage class that allows many 16-bit frames.
MULTIFRAME_SC_WORD = "1.2.840.10008.5.1.4.1.1.7.3"


# ---------------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyData:
    """A folder of instances of one study and the identity to upload them with."""

    label: str
    files: list[Path]
    size_bytes: int
    identity: dict[str, Any]

    def parts(self, streams: int) -> list[list[Path]]:
        """The files split into ``streams`` disjoint contiguous parts of near-equal length."""
        count = len(self.files)
        bounds = [count * i // streams for i in range(streams + 1)]
        return [self.files[bounds[i] : bounds[i + 1]] for i in range(streams) if bounds[i + 1]]


def _load_study(label: str, folder: Path) -> StudyData:
    identity = json.loads((folder / "bench.json").read_text(encoding="utf-8"))
    files = sorted(folder.glob("bench_*.dcm"))
    return StudyData(label, files, sum(p.stat().st_size for p in files), identity)


def prepare_ct(data_dir: Path, count: int, series: int) -> StudyData:
    """The ``count``-instance CT study, generated with make_samples.py unless already there."""
    folder = data_dir / f"ct{count}x{series}"
    summary = folder / "bench.json"
    if summary.exists():
        held = json.loads(summary.read_text(encoding="utf-8"))
        if (
            held.get("instance_count") == count
            and held.get("series_count") == series
            and len(list(folder.glob("bench_*.dcm"))) == count
        ):
            return _load_study(f"CT {count}", folder)
    subprocess.run(
        [
            sys.executable,
            str(MAKE_SAMPLES),
            "--bench-ct",
            str(folder),
            "--count",
            str(count),
            "--series",
            str(series),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=1800,
    )
    return _load_study(f"CT {count}", folder)


def prepare_large(data_dir: Path, template: StudyData, mib: int) -> StudyData:
    """One multi-frame instance of about ``mib`` MiB, made with pydicom from a bench CT slice.

    It keeps the template's patient, and gets a study, series and SOP instance UID of its own.
    """
    import pydicom
    from pydicom.uid import generate_uid

    folder = data_dir / f"large{mib}"
    path = folder / "bench_large_00001.dcm"
    if path.exists() and (folder / "bench.json").exists():
        return _load_study(f"1 x {mib} MiB multi-frame", folder)
    folder.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(template.files[0])
    frame = bytes(ds.PixelData)
    frames = max(1, round(mib * MIB / len(frame)))
    entropy = [f"mutualrec-bench-large-{mib}"]
    study_uid = generate_uid(entropy_srcs=[*entropy, "study"])
    ds.SOPClassUID = MULTIFRAME_SC_WORD
    ds.file_meta.MediaStorageSOPClassUID = MULTIFRAME_SC_WORD
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[*entropy, "series"])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[*entropy, "instance"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.NumberOfFrames = frames
    ds.AccessionNumber = f"BENCHL{mib:05d}"
    ds.PixelData = frame * frames
    ds.save_as(path, enforce_file_format=True)
    identity = dict(template.identity)
    identity.update(
        study_instance_uid=study_uid,
        accession_number=str(ds.AccessionNumber),
        series_count=1,
        instance_count=1,
        size_bytes=path.stat().st_size,
    )
    (folder / "bench.json").write_text(json.dumps(identity, indent=2) + "\n", encoding="utf-8")
    return _load_study(f"1 x {mib} MiB multi-frame", folder)


def warm_page_cache(study: StudyData) -> None:
    """Read every file once, so no run pays for cold reads of its input."""
    for path in study.files:
        with path.open("rb") as handle:
            while handle.read(8 * MIB):
                pass


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


class ServerProcess:
    """A child process whose output is copied to a log file by a reader thread."""

    def __init__(self, argv: Sequence[str], log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self._log: TextIO = log_path.open("w", encoding="utf-8")
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """Process id of the server."""
        return self.proc.pid

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.write(line)
            self._log.flush()
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first output line matching ``pattern``; fails on exit or after ``timeout``."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    match = pattern.search(line)
                    if match:
                        return match
                seen = len(self._lines)
                remaining = deadline - time.monotonic()
                if self.proc.poll() is not None or remaining <= 0:
                    raise RuntimeError(
                        f"server did not print {pattern.pattern!r} "
                        f"(exit {self.proc.returncode}); see {self.log_path}:\n"
                        + "\n".join(self._lines[-20:])
                    )
                self._cond.wait(min(remaining, 0.5))

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL if it does not exit in time; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self._reader.join(5)
        self._log.close()
        return self.proc.returncode


@dataclass(frozen=True)
class ProcessStats:
    """Memory and CPU use of a server process, read from /proc."""

    peak_rss_kib: int
    rss_kib: int
    cpu_seconds: float


def process_stats(pid: int) -> ProcessStats:
    """VmHWM (peak resident set), VmRSS and user+system CPU seconds of ``pid``."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmHWM", "VmRSS"}:
            fields[key] = int(value.split()[0])
    stat = Path(f"/proc/{pid}/stat").read_text()
    ticks = os.sysconf("SC_CLK_TCK")
    after_name = stat.rsplit(")", 1)[1].split()
    utime, stime = int(after_name[11]), int(after_name[12])
    return ProcessStats(fields["VmHWM"], fields["VmRSS"], (utime + stime) / ticks)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Profiler:
    """py-spy attached to a server process for one run, writing collapsed stacks."""

    def __init__(self, pid: int, out: Path, rate: int) -> None:
        exe = shutil.which("py-spy", path=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
        if exe is None:
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.out = out
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)  # let it attach before the upload starts

    def stop(self) -> None:
        """Stop sampling and let py-spy write its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def summarize_profile(raw: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function of a py-spy ``raw`` (collapsed) file."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    frame_shape = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")

    def name(frame: str) -> str:
        match = frame_shape.match(frame)
        if not match:
            return frame
        path = match["file"]
        for marker in ("site-packages/", "lib/python3.11/", str(REPO) + "/"):
            if marker in path:
                path = path.split(marker, 1)[1]
                break
        return f"{path}:{match['func']}"

    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [name(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} samples\n", "self time (leaf frame):"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines.append("inclusive time (frame anywhere on the stack), mutualrec code:")
    ours = [(f, n) for f, n in inclusive.most_common() if f.startswith("mutualrec/")]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in ours[:top]]
    lines.append("inclusive time, everything:")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------


@dataclass
class Options:
    """What every server of this session shares."""

    workdir: Path
    pg_socket_dir: str
    pg_user: str
    pg_database: str
    keep: bool
    profile_dir: Path | None
    profile_rate: int


class Server:
    """A server under test: start on fresh state, upload, report stats, stop."""

    backend = ""

    def __init__(self, options: Options, run_dir: Path) -> None:
        self.options = options
        self.run_dir = run_dir
        self.process: ServerProcess | None = None
        self.profiler: Profiler | None = None

    def start(self) -> None:
        """Start the server on fresh state and wait until it answers."""
        raise NotImplementedError

    def upload(self, study: StudyData, streams: int) -> UploadTiming:
        """Upload ``study`` over ``streams`` parallel streams."""
        raise NotImplementedError

    def verify(self, study: StudyData) -> None:
        """Check that the server holds every instance of ``study``."""

    def stats(self) -> ProcessStats:
        """Peak RSS and CPU time of the server process so far."""
        assert self.process is not None
        return process_stats(self.process.pid)

    def attach_profiler(self, label: str) -> None:
        """Start py-spy on the server when profiling is on (Python servers only)."""

    def stop(self) -> None:
        """Stop the server (and the profiler) and remove its state unless asked to keep it."""
        if self.profiler is not None:
            self.profiler.stop()
            if self.profiler.out.exists():
                summary = self.profiler.out.with_suffix(".summary.txt")
                summary.write_text(summarize_profile(self.profiler.out), encoding="utf-8")
            self.profiler = None
        if self.process is not None:
            code = self.process.stop()
            if code not in (0, -signal.SIGTERM):
                print(f"  warning: {self.backend} exited with {code}", file=sys.stderr)
            self.process = None
        if not self.options.keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)


@dataclass
class UploadTiming:
    """Wall time from the first byte to the last reply, and the bench process's CPU time."""

    seconds: float
    client_cpu_seconds: float
    accepted: int
    reported_new: int


def _run_streams(
    parts: list[list[Path]],
    prepare: Callable[[int], Any],
    send: Callable[[Any, list[Path]], tuple[int, int]],
    close: Callable[[Any], None],
) -> UploadTiming:
    """Run ``send`` for each part on its own thread, all released at once; time them."""
    barrier = threading.Barrier(len(parts) + 1, timeout=START_TIMEOUT)
    ends: list[float] = [0.0] * len(parts)
    counts: list[tuple[int, int]] = [(0, 0)] * len(parts)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        handle = None
        try:
            handle = prepare(i)
            barrier.wait()
            counts[i] = send(handle, parts[i])
            ends[i] = time.perf_counter()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            if handle is not None:
                close(handle)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(parts))]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    cpu0 = _self_cpu()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join(UPLOAD_TIMEOUT)
    cpu1 = _self_cpu()
    if errors:
        raise errors[0]
    if any(t.is_alive() for t in threads):
        raise TimeoutError("an upload stream did not finish in time")
    return UploadTiming(
        max(ends) - t0, cpu1 - cpu0, sum(c[0] for c in counts), sum(c[1] for c in counts)
    )


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class MutualrecServer(Server):
    """``mutualrec serve`` with the local-directory object store on SQLite or PostgreSQL."""

    LISTENING = re.compile(r"mutualrec listening on (\S+):(\d+)")

    def __init__(self, options: Options, run_dir: Path, *, postgres: bool) -> None:
        super().__init__(options, run_dir)
        self.backend = "postgres" if postgres else "sqlite"
        self.postgres = postgres
        self.port = 0
        self.api_key = ""

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MUTUALREC_")}
        env["MUTUALREC_DATA_DIR"] = str(self.run_dir / "data")
        env["MUTUALREC_LISTEN"] = "127.0.0.1:0"
        if self.postgres:
            opts = self.options
            env["MUTUALREC_DATABASE_URL"] = (
                f"postgresql+psycopg://{opts.pg_user}@/{opts.pg_database}?host={opts.pg_socket_dir}"
            )
            env["MUTUALREC_AUTO_MIGRATE"] = "false"
        return env

    def _fresh_database(self) -> None:
        import psycopg

        opts = self.options
        with psycopg.connect(
            host=opts.pg_socket_dir, user=opts.pg_user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{opts.pg_database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{opts.pg_database}"')

    def _cli(self, *args: str) -> str:
        result = subprocess.run(
            [str(VENV_BIN / "mutualrec"), *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"mutualrec {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def start(self) -> None:
        """Fresh data directory (and database), an institution and key, then ``serve``."""
        self.run_dir.mkdir(parents=True)
        if self.postgres:
            self._fresh_database()
            self._cli("db", "upgrade")
        code, name, district, level = INSTITUTION
        self._cli(
            "admin",
            "add-institution",
            "--code",
            code,
            "--name",
            name,
            "--district",
            district,
            "--level",
            level,
        )
        self.api_key = self._cli("admin", "issue-key", "--institution", code).strip()
        self.process = ServerProcess(
            [str(VENV_BIN / "mutualrec"), "serve"], self.run_dir / "server.log", self._env()
        )
        match = self.process.wait_for_line(self.LISTENING, START_TIMEOUT)
        self.port = int(match[2])

    def attach_profiler(self, label: str) -> None:
        """Start py-spy on the server process."""
        if self.options.profile_dir is not None and self.process is not None:
            self.options.profile_dir.mkdir(parents=True, exist_ok=True)
            out = self.options.profile_dir / f"{label}.txt"
            self.profiler = Profiler(self.process.pid, out, self.options.profile_rate)

    def upload(self, study: StudyData, streams: int) -> UploadTiming:
        """One UploadStudy call per part, each on its own channel."""
        import grpc

        from mutualrec.client.upload import make_header, upload_study
        from mutualrec.v1 import ingest_pb2

        ident = study.identity
        header = make_header(
            ident["patient"]["document_number"],
            ident["patient"]["document_type"],
            "",
            ident.get("accession_number", ""),
            ident.get("performed_item_code", ""),
        )
        target = f"127.0.0.1:{self.port}"
        self.responses: list[ingest_pb2.UploadStudyResponse] = []
        lock = threading.Lock()

        def prepare(_i: int) -> grpc.Channel:
            channel = grpc.insecure_channel(
                target, options=[("grpc.max_receive_message_length", 64 * MIB)]
            )
            grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT)
            return channel

        def send(channel: grpc.Channel, files: list[Path]) -> tuple[int, int]:
            response = upload_study(channel, self.api_key, header, files, timeout=UPLOAD_TIMEOUT)
            with lock:
                self.responses.append(response)
            counts = response.counts
            if counts.rejected:
                bad = next(i for i in response.instances if i.outcome == ingest_pb2.REJECTED)
                raise RuntimeError(f"mutualrec rejected {bad.source_name}: {bad.reason}")
            # Every instance the server accepted; on a fresh server each should be STORED, and
            # how many the server called STORED is reported beside it.
            accepted = counts.stored + counts.duplicate_identical + counts.new_version
            return int(accepted), int(counts.stored)

        return _run_streams(study.parts(streams), prepare, send, lambda ch: ch.close())

    def verify(self, study: StudyData) -> None:
        """The study's instance count as GetStudyStatus reports it."""
        import grpc

        from mutualrec.client.upload import auth_metadata
        from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc

        with grpc.insecure_channel(
            f"127.0.0.1:{self.port}", options=[("grpc.max_receive_message_length", 64 * MIB)]
        ) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            reply = stub.GetStudyStatus(
                ingest_pb2.GetStudyStatusRequest(
                    study_instance_uid=study.identity["study_instance_uid"]
                ),
                metadata=auth_metadata(self.api_key),
                timeout=120,
            )
        held = reply.study.instance_count
        if held != len(study.files):
            raise RuntimeError(f"mutualrec holds {held} instances, expected {len(study.files)}")

    def stop(self) -> None:
        """Stop the server; drop the benchmark database unless asked to keep state."""
        super().stop()
        if self.postgres and not self.options.keep:
            import psycopg

            opts = self.options
            with psycopg.connect(
                host=opts.pg_socket_dir, user=opts.pg_user, dbname="postgres", autocommit=True
            ) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{opts.pg_database}" WITH (FORCE)')


class OrthancServer(Server):
    """Orthanc with its default SQLite index and filesystem storage area."""

    backend = "orthanc"

    def __init__(self, options: Options, run_dir: Path) -> None:
        super().__init__(options, run_dir)
        self.port = 0

    def _config(self) -> dict[str, Any]:
        return {
            "Name": "mutualrec-bench",
            "StorageDirectory": str(self.run_dir / "storage"),
            "IndexDirectory": str(self.run_dir / "index"),
            "HttpServerEnabled": True,
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "HttpCompressionEnabled": False,
            "StorageCompression": False,
            "Plugins": [],
        }

    def start(self) -> None:
        """Write a config into a fresh directory, start Orthanc, wait for ``GET /system``."""
        exe = shutil.which("Orthanc")
        if exe is None:
            raise RuntimeError("Orthanc is not installed (apt-get install -y orthanc)")
        self.run_dir.mkdir(parents=True)
        self.port = free_port()
        config = self.run_dir / "orthanc.json"
        config.write_text(json.dumps(self._config(), indent=2), encoding="utf-8")
        self.process = ServerProcess(
            [exe, str(config)], self.run_dir / "server.log", dict(os.environ)
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self._get("/system").get("Version"):
                    return
            if self.process.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc did not start; see {self.process.log_path}")
            time.sleep(0.2)

    def _get(self, path: str) -> dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path)
            reply = conn.getresponse()
            body = reply.read()
            if reply.status != 200:
                raise http.client.HTTPException(f"GET {path}: HTTP {reply.status}")
            result: dict[str, Any] = json.loads(body)
            return result
        finally:
            conn.close()

    def upload(self, study: StudyData, streams: int) -> UploadTiming:
        """``POST /instances`` per file, one persistent connection per stream."""

        def prepare(_i: int) -> http.client.HTTPConnection:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=UPLOAD_TIMEOUT)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return conn

        def send(conn: http.client.HTTPConnection, files: list[Path]) -> tuple[int, int]:
            stored = 0
            for path in files:
                body = path.read_bytes()
                conn.request(
                    "POST", "/instances", body=body, headers={"Content-Type": "application/dicom"}
                )
                reply = conn.getresponse()
                answer = reply.read()
                if reply.status != 200:
                    raise RuntimeError(f"Orthanc answered HTTP {reply.status} for {path.name}")
                if json.loads(answer).get("Status") == "Success":
                    stored += 1
            return len(files), stored

        return _run_streams(study.parts(streams), prepare, send, lambda conn: conn.close())

    def verify(self, study: StudyData) -> None:
        """The instance count of ``GET /statistics``."""
        held = int(self._get("/statistics")["CountInstances"])
        if held != len(study.files):
            raise RuntimeError(f"Orthanc holds {held} instances, expected {len(study.files)}")


# ---------------------------------------------------------------------------------------------
# Runs and report
# ---------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """One upload of one study to one fresh server."""

    backend: str
    study: str
    streams: int
    run: int
    instances: int
    size_bytes: int
    seconds: float
    instances_per_s: float
    mb_per_s: float
    accepted: int
    reported_new: int
    start_rss_kib: int
    peak_rss_kib: int
    server_cpu_s: float
    client_cpu_s: float
    loadavg_before: float
    profiled: bool = False


@dataclass
class Summary:
    """The median of the runs of one configuration."""

    backend: str
    study: str
    streams: int
    runs: int
    instances: int
    size_bytes: int
    seconds: float
    instances_per_s: float
    mb_per_s: float
    peak_rss_mib: float
    server_cpu_s: float
    client_cpu_s: float
    all_instances_per_s: list[float] = field(default_factory=list)


def make_server(backend: str, options: Options, run_dir: Path) -> Server:
    """The server object of ``backend``."""
    if backend == "orthanc":
        return OrthancServer(options, run_dir)
    return MutualrecServer(options, run_dir, postgres=backend == "postgres")


def one_run(backend: str, study: StudyData, streams: int, run: int, options: Options) -> RunResult:
    """Start a fresh server, upload ``study`` once, read its stats, stop it."""
    label = f"{backend}-{study.label.split()[0].lower()}{len(study.files)}-s{streams}-r{run}"
    run_dir = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=options.workdir / "runs"))
    run_dir.rmdir()
    server = make_server(backend, options, run_dir)
    try:
        server.start()
        start = server.stats()
        server.attach_profiler(label)
        load = os.getloadavg()[0]
        timing = server.upload(study, streams)
        end = server.stats()
        server.verify(study)
    finally:
        server.stop()
    if timing.accepted != len(study.files):
        raise RuntimeError(f"{backend}: {timing.accepted} accepted of {len(study.files)}")
    if timing.reported_new != len(study.files):
        print(
            f" (warning: {backend} reported {timing.reported_new} of {len(study.files)} "
            "instances as newly stored on a fresh server)",
            end="",
        )
    return RunResult(
        backend=backend,
        study=study.label,
        streams=streams,
        run=run,
        instances=len(study.files),
        size_bytes=study.size_bytes,
        seconds=round(timing.seconds, 3),
        instances_per_s=round(len(study.files) / timing.seconds, 2),
        mb_per_s=round(study.size_bytes / MB / timing.seconds, 2),
        accepted=timing.accepted,
        reported_new=timing.reported_new,
        start_rss_kib=start.rss_kib,
        peak_rss_kib=end.peak_rss_kib,
        server_cpu_s=round(end.cpu_seconds - start.cpu_seconds, 2),
        client_cpu_s=round(timing.client_cpu_seconds, 2),
        loadavg_before=round(load, 2),
        profiled=options.profile_dir is not None,
    )


def summarize(results: list[RunResult]) -> list[Summary]:
    """Median throughput per (study, backend, streams); peak RSS is the largest of the runs."""
    groups: dict[tuple[str, str, int], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.study, r.backend, r.streams), []).append(r)
    out = []
    for (study, backend, streams), runs in groups.items():
        out.append(
            Summary(
                backend=backend,
                study=study,
                streams=streams,
                runs=len(runs),
                instances=runs[0].instances,
                size_bytes=runs[0].size_bytes,
                seconds=round(statistics.median(r.seconds for r in runs), 3),
                instances_per_s=round(statistics.median(r.instances_per_s for r in runs), 1),
                mb_per_s=round(statistics.median(r.mb_per_s for r in runs), 1),
                peak_rss_mib=round(max(r.peak_rss_kib for r in runs) / 1024, 1),
                server_cpu_s=round(statistics.median(r.server_cpu_s for r in runs), 1),
                client_cpu_s=round(statistics.median(r.client_cpu_s for r in runs), 1),
                all_instances_per_s=[r.instances_per_s for r in runs],
            )
        )
    return out


def markdown(summaries: list[Summary]) -> str:
    """Throughput tables (one per study) with the mutualrec/Orthanc ratio."""
    names = {
        "sqlite": "mutualrec, local dir + SQLite",
        "postgres": "mutualrec, local dir + PostgreSQL",
        "orthanc": "Orthanc 1.10 REST",
    }
    lines: list[str] = []
    for study in dict.fromkeys(s.study for s in summaries):
        rows = [s for s in summaries if s.study == study]
        first = rows[0]
        lines.append(
            f"\n**{study}**: {first.instances} instances, {first.size_bytes / MB:.1f} MB "
            f"({first.size_bytes / first.instances / MB:.3f} MB each)\n"
        )
        lines.append(
            "| server | streams | runs | inst/s (median) | MB/s | vs Orthanc | "
            "peak RSS MiB | server CPU s | client CPU s | inst/s per run |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        orthanc = {s.streams: s.instances_per_s for s in rows if s.backend == "orthanc"}
        order = {b: i for i, b in enumerate(BACKENDS)}
        for s in sorted(rows, key=lambda s: (s.streams, order[s.backend])):
            ratio = (
                f"{s.instances_per_s / orthanc[s.streams]:.2f}x"
                if s.backend != "orthanc" and orthanc.get(s.streams)
                else "-"
            )
            runs = ", ".join(f"{v:.1f}" for v in s.all_instances_per_s)
            lines.append(
                f"| {names[s.backend]} | {s.streams} | {s.runs} | {s.instances_per_s:.1f} | "
                f"{s.mb_per_s:.1f} | {ratio} | {s.peak_rss_mib:.0f} | {s.server_cpu_s:.1f} | "
                f"{s.client_cpu_s:.1f} | {runs} |"
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Network namespace and main
# ---------------------------------------------------------------------------------------------


def enter_netns(argv: Sequence[str]) -> None:
    """Re-execute this script inside a new network namespace with only loopback (no return)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SystemExit("unshare (util-linux) is needed, or pass --no-netns")
    os.environ[NETNS_ENV] = "1"
    flags = ["--net"] if os.geteuid() == 0 else ["--net", "--map-root-user"]
    sys.stdout.flush()
    os.execv(unshare, [unshare, *flags, "--", sys.executable, str(Path(__file__)), *argv])


def loopback_only() -> None:
    """Bring up ``lo`` in this namespace and check it is the only interface."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
    # /proc/self/net is per network namespace (unlike /sys/class/net, which belongs to the
    # namespace that mounted sysfs).
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    interfaces = sorted(line.split(":", 1)[0].strip() for line in lines)
    if interfaces != ["lo"]:
        raise SystemExit(f"expected only lo in the benchmark namespace, found {interfaces}")


def machine() -> dict[str, Any]:
    """CPU, memory and software versions of this machine."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    orthanc = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        orthanc = subprocess.run(
            ["Orthanc", "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.splitlines()[0]
    postgres = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
        postgres = subprocess.run(
            ["psql", "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "orthanc": orthanc,
        "postgres_client": postgres,
    }


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--files", type=int, default=1800, help="instances in the main study")
    p.add_argument("--series", type=int, default=1, help="series in the generated studies")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 4], help="parallel streams")
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    p.add_argument("--runs", type=int, default=2, help="runs per configuration (median)")
    p.add_argument(
        "--rss-files",
        type=int,
        nargs="*",
        default=[600],
        help="also upload studies of these sizes, to compare peak RSS across study sizes",
    )
    p.add_argument(
        "--large-mib",
        type=int,
        default=200,
        help="also upload one multi-frame instance of this many MiB (0: skip)",
    )
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "mutualrec-bench")
    p.add_argument("--json", type=Path, metavar="OUT", help="write all runs and medians here")
    p.add_argument("--pg-socket-dir", default="/var/run/postgresql")
    p.add_argument("--pg-user", default="postgres")
    p.add_argument("--pg-database", default="bench_mutualrec")
    p.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the mutualrec servers")
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument("--keep", action="store_true", help="keep server data directories")
    p.add_argument(
        "--no-netns", action="store_true", help="do not enter a loopback-only network namespace"
    )
    args = p.parse_args(argv)
    if args.files < 1 or args.runs < 1 or min(args.streams) < 1:
        p.error("--files, --runs and --streams must be positive")
    return args


def plan(args: argparse.Namespace, studies: dict[str, StudyData]) -> Iterator[tuple[str, str, int]]:
    """(study key, backend, streams) in the order to run them; runs of a round interleave."""
    for run in range(args.runs):
        for streams in args.streams:
            for backend in args.backends:
                yield "main", backend, streams
        if run == 0:
            for key in studies:
                if key == "main":
                    continue
                for backend in args.backends:
                    for streams in [1] if key.startswith("large") else args.streams:
                        yield key, backend, streams


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if not args.no_netns and os.environ.get(NETNS_ENV) != "1":
        enter_netns(argv)
    if os.environ.get(NETNS_ENV) == "1":
        loopback_only()
    sys.path.insert(0, str(REPO))

    workdir: Path = args.workdir.resolve()
    (workdir / "runs").mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    print(f"preparing data under {data_dir}", flush=True)
    studies = {"main": prepare_ct(data_dir, args.files, args.series)}
    for count in args.rss_files:
        if count != args.files:
            studies[f"ct{count}"] = prepare_ct(data_dir, count, args.series)
    if args.large_mib > 0:
        studies[f"large{args.large_mib}"] = prepare_large(data_dir, studies["main"], args.large_mib)
    for study in studies.values():
        warm_page_cache(study)

    options = Options(
        workdir=workdir,
        pg_socket_dir=args.pg_socket_dir,
        pg_user=args.pg_user,
        pg_database=args.pg_database,
        keep=args.keep,
        profile_dir=args.profile.resolve() if args.profile else None,
        profile_rate=args.profile_rate,
    )
    results: list[RunResult] = []
    counters: collections.Counter[tuple[str, str, int]] = collections.Counter()
    for key, backend, streams in plan(args, studies):
        study = studies[key]
        counters[(key, backend, streams)] += 1
        run = counters[(key, backend, streams)]
        print(f"{study.label:>24} {backend:>8} streams={streams} run={run} ...", end="", flush=True)
        result = one_run(backend, study, streams, run, options)
        results.append(result)
        print(
            f" {result.instances_per_s:8.1f} inst/s {result.mb_per_s:7.1f} MB/s "
            f"peak RSS {result.peak_rss_kib / 1024:6.0f} MiB "
            f"(server CPU {result.server_cpu_s:.1f} s, client CPU {result.client_cpu_s:.1f} s, "
            f"load {result.loadavg_before:.2f})",
            flush=True,
        )

    summaries = summarize(results)
    table = markdown(summaries)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "command": [Path(sys.executable).name, "bench/ingest_bench.py", *argv],
                    "machine": machine(),
                    "runs": [asdict(r) for r in results],
                    "summary": [asdict(s) for s in summaries],
                    "markdown": table,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
