#!/usr/bin/env python3
"""Ingest benchmark: mutualrec (SQLite or PostgreSQL index, local-directory objects) vs Orthanc.

Every configuration uploads the same CT-like study (512x512 int16 instances of about 0.5 MB,
written by ``dicom_samples/make_samples.py --bench-ct``) with 1 and with N parallel streams:

* mutualrec: one ``UploadStudy`` call per stream, each on its own gRPC channel, the files split
  into N disjoint contiguous parts of the same study and patient;
* Orthanc: one persistent HTTP/1.1 connection per stream, ``POST /instances`` per file;
* C-STORE (``cstore-postgres``: mutualrec's DICOM door on PostgreSQL, ``orthanc-cstore``:
  Orthanc's DICOM server): one dcmtk ``storescu`` association per stream, the PatientID linked
  to the patient beforehand on mutualrec's side (``link-patient``), TCP_NODELAY on both (dcmtk
  sets it by default, and pynetdicom's door on every accepted socket).

Throughput is timed from the first byte sent to the last reply received. Each run starts a fresh
server on a fresh data directory (and, for PostgreSQL, a freshly created database) and reads the
server's peak RSS (``VmHWM``) and CPU time from ``/proc`` right before stopping it; VmRSS is also
polled during the upload. Runs of the different servers interleave, and each configuration's
median is reported. Both servers fsync every stored file (their defaults).

mutualrec runs from a private copy of the package (``git archive`` of ``--ref``, default HEAD, or
the working tree with ``--worktree``), so edits made while the benchmark runs do not affect it.

Orthanc listens on every interface, so by default the script re-executes itself inside a new
network namespace (``unshare --net``) that has only a loopback interface, and runs every server
and client there: all peers are measured the same way and no traffic can leave the machine.
PostgreSQL is then reached over its Unix socket.

    .venv/bin/python bench/ingest_bench.py --files 1800 --streams 1 4 \\
        --backends sqlite postgres orthanc --runs 3 --json /tmp/ingest.json
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import os
import re
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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

# Run as a script, this file's directory is on sys.path, so the shared harness imports.
from harness import (
    REPO,
    START_TIMEOUT,
    ProcessStats,
    Profiler,
    RssSampler,
    ServerProcess,
    check_snapshot,
    code_options,
    database_url,
    drop_database,
    enter_netns,
    env_option,
    free_port,
    import_snapshot,
    loopback_only,
    machine,
    mutualrec_env,
    process_tree_stats,
    recreate_database,
    run_cli,
    self_cpu,
    serve,
    snapshot_code,
    summarize_profile,
    write_json,
)

MAKE_SAMPLES = REPO / "dicom_samples" / "make_samples.py"
NETNS_ENV = "MUTUALREC_BENCH_IN_NETNS"
BACKENDS = (
    "sqlite",
    "postgres",
    "orthanc",
    "grpc-null",
    "grpc-store",
    "grpc-store-group",
    "cstore-postgres",
    "orthanc-cstore",
    "cstore-floor",
    "cstore-floor-waiting",
)
# The peer each backend's throughput is compared with: C-STORE with C-STORE, the rest with
# Orthanc's REST upload.
PEER = {
    "cstore-postgres": "orthanc-cstore",
    "cstore-floor": "orthanc-cstore",
    "cstore-floor-waiting": "orthanc-cstore",
}
# dcmtk's storescu: the PACS side of both C-STORE configurations.
STORESCU_AET = "BENCHSCU"
DEFAULT_BACKENDS = ("sqlite", "postgres", "orthanc")
NULL_SERVER = Path(__file__).resolve().parent / "null_ingest_server.py"
NULL_CSTORE_SERVER = Path(__file__).resolve().parent / "null_cstore_server.py"
INSTITUTION = ("H500103001", "CQ YUZHONG DEMO PEOPLES HOSPITAL", "Yuzhong", "tertiary")
UPLOAD_TIMEOUT = 3600.0
MB = 1_000_000
# ext4 without a journal skips inodes freed in the last 30 s (35 s while dirty) when allocating.
INODE_SETTLE = 36.0
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
    from pydicom.uid import UID, generate_uid

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
    ds.file_meta.MediaStorageSOPClassUID = UID(MULTIFRAME_SC_WORD)
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


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------


@dataclass
class Options:
    """What every server of this session shares."""

    workdir: Path
    code_dir: Path
    pg_socket_dir: str
    pg_user: str
    pg_database: str
    keep: bool
    profile_dir: Path | None
    profile_rate: int
    profile_gil: bool
    fsync: bool = True
    mutualrec_env: dict[str, str] = field(default_factory=dict)
    # Server state is removed only at the end of the session: on ext4 without a journal (this
    # machine) a freshly freed inode slows every inode allocation for ~30 s ("recently_deleted"),
    # so deleting one run's files would slow the next run's file and directory creation.
    leftovers: list[Path] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)


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
        """Peak RSS and CPU time of the server process (and its workers) so far."""
        assert self.process is not None
        return process_tree_stats(self.process.pid)

    def attach_profiler(self, label: str) -> None:
        """Start py-spy on the server when profiling is on (Python servers only)."""

    def stop(self) -> None:
        """Stop the server (and the profiler); its state is removed at the end of the session."""
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
        self.options.leftovers.append(self.run_dir)


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
    cpu0 = self_cpu()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join(UPLOAD_TIMEOUT)
    cpu1 = self_cpu()
    if errors:
        raise errors[0]
    if any(t.is_alive() for t in threads):
        raise TimeoutError("an upload stream did not finish in time")
    return UploadTiming(
        max(ends) - t0, cpu1 - cpu0, sum(c[0] for c in counts), sum(c[1] for c in counts)
    )


class MutualrecServer(Server):
    """``mutualrec serve`` with the local-directory object store on SQLite or PostgreSQL."""

    # The institution that uploads (code, name, district, level).
    institution = INSTITUTION

    def __init__(
        self, options: Options, run_dir: Path, *, postgres: bool, processes: int = 1
    ) -> None:
        super().__init__(options, run_dir)
        self.backend = server_ids(["postgres" if postgres else "sqlite"], [processes])[0]
        self.postgres = postgres
        self.processes = processes
        # Several processes share one port (SO_REUSEPORT), so it must be fixed beforehand.
        self.listen = f"127.0.0.1:{free_port() if processes > 1 else 0}"
        self.port = 0
        self.api_key = ""
        self.database = ""
        if postgres:
            self.database = f"{options.pg_database}_{len(options.databases) + 1}"
            options.databases.append(self.database)

    def _env(self) -> dict[str, str]:
        env = mutualrec_env(
            self.options.code_dir, data_dir=str(self.run_dir / "data"), listen=self.listen
        )
        if self.processes > 1:
            env["MUTUALREC_PROCESSES"] = str(self.processes)
        if self.postgres:
            opts = self.options
            env["MUTUALREC_DATABASE_URL"] = database_url(
                self.database, opts.pg_socket_dir, opts.pg_user
            )
            env["MUTUALREC_AUTO_MIGRATE"] = "false"
        if not self.options.fsync:
            env["MUTUALREC_FS_FSYNC"] = "false"
        env.update(self.options.mutualrec_env)
        return env

    def _fresh_database(self) -> None:
        import psycopg

        opts = self.options
        with psycopg.connect(
            host=opts.pg_socket_dir, user=opts.pg_user, dbname="postgres", autocommit=True
        ) as conn:
            recreate_database(conn, self.database)

    def _cli(self, *args: str) -> str:
        return run_cli(self._env(), self.options.code_dir, *args, timeout=START_TIMEOUT)

    def start(self) -> None:
        """Fresh data directory (and database), an institution and key, then ``serve``."""
        self.run_dir.mkdir(parents=True)
        if self.postgres:
            self._fresh_database()
            self._cli("db", "upgrade")
        code, name, district, level = self.institution
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
        log_path = self.run_dir / "server.log"
        self.process, target = serve(self._env(), self.options.code_dir, log_path)
        self.port = int(target.rsplit(":", 1)[1])

    def attach_profiler(self, label: str) -> None:
        """Start py-spy on the server process."""
        if self.options.profile_dir is not None and self.process is not None:
            self.options.profile_dir.mkdir(parents=True, exist_ok=True)
            out = self.options.profile_dir / f"{label}.txt"
            self.profiler = Profiler(
                self.process.pid, out, self.options.profile_rate, gil=self.options.profile_gil
            )

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
            # Its own connection too: channels to one target otherwise share one TCP connection
            # (gRPC's global subchannel pool), which would hand every stream to one server process
            # under MUTUALREC_PROCESSES (the kernel balances connections, not streams), where
            # Orthanc's client opens one HTTP connection per stream.
            channel = grpc.insecure_channel(
                target,
                options=[
                    ("grpc.max_receive_message_length", 64 * MIB),
                    ("grpc.use_local_subchannel_pool", 1),
                ],
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


class NullGrpcServer(MutualrecServer):
    """bench/null_ingest_server.py: the gRPC transport with nothing stored (a ceiling)."""

    LISTENING = re.compile(r"null ingest listening on (\S+):(\d+)")

    def __init__(self, options: Options, run_dir: Path, backend: str) -> None:
        super().__init__(options, run_dir, postgres=False)
        self.backend = backend
        self.store = backend != "grpc-null"
        self.group = backend == "grpc-store-group"
        self.api_key = "unused"

    def start(self) -> None:
        """Start the null server from the same code snapshot as mutualrec."""
        self.run_dir.mkdir(parents=True)
        keep = ["--store", str(self.run_dir / "objects")] if self.store else []
        if self.store and not self.options.fsync:
            keep.append("--no-fsync")
        if self.group:
            keep.append("--group")
        self.process = ServerProcess(
            [sys.executable, str(NULL_SERVER), "--listen", "127.0.0.1:0", *keep],
            self.run_dir / "server.log",
            self._env(),
            cwd=self.options.code_dir,
        )
        self.port = int(self.process.wait_for_line(self.LISTENING, START_TIMEOUT)[2])

    def verify(self, study: StudyData) -> None:
        """Nothing is held."""


class NullCStoreServer(MutualrecServer):
    """bench/null_cstore_server.py: pynetdicom receiving, each instance hashed, written, fsynced
    and renamed, nothing more (the floor of a pynetdicom C-STORE door), fed by ``storescu``."""

    LISTENING = re.compile(r"null cstore listening on (\S+):(\d+)")
    AE_TITLE = "MUTUALREC"

    def __init__(self, options: Options, run_dir: Path, waiting: bool) -> None:
        super().__init__(options, run_dir, postgres=False)
        self.backend = "cstore-floor-waiting" if waiting else "cstore-floor"
        self.waiting = waiting
        self.api_key = "unused"

    def start(self) -> None:
        """Start the floor server from the same code snapshot as mutualrec."""
        self.run_dir.mkdir(parents=True)
        extra = ["--waiting-reactors"] if self.waiting else []
        if not self.options.fsync:
            extra.append("--no-fsync")
        self.process = ServerProcess(
            [
                sys.executable,
                str(NULL_CSTORE_SERVER),
                "--listen",
                "127.0.0.1:0",
                "--store",
                str(self.run_dir / "objects"),
                *extra,
            ],
            self.run_dir / "server.log",
            self._env(),
            cwd=self.options.code_dir,
        )
        self.port = int(self.process.wait_for_line(self.LISTENING, START_TIMEOUT)[2])

    def upload(self, study: StudyData, streams: int) -> UploadTiming:
        """One storescu association per part."""
        return _storescu_streams(study, streams, self.port, self.AE_TITLE)

    def verify(self, study: StudyData) -> None:
        """One file per instance."""
        held = len(list((self.run_dir / "objects").glob("*.dcm")))
        if held != len(study.files):
            raise RuntimeError(f"the floor holds {held} files, expected {len(study.files)}")


class CStoreMutualrec(MutualrecServer):
    """``mutualrec serve`` on PostgreSQL with its DICOM door, fed by ``storescu``."""

    AE_TITLE = "MUTUALREC"

    def __init__(self, options: Options, run_dir: Path) -> None:
        super().__init__(options, run_dir, postgres=True)
        self.backend = "cstore-postgres"
        self.dicom_port = free_port()

    def _env(self) -> dict[str, str]:
        env = super()._env()
        env["MUTUALREC_DICOM_LISTEN"] = f"127.0.0.1:{self.dicom_port}"
        env["MUTUALREC_DICOM_AE_TITLE"] = self.AE_TITLE
        return env

    def start(self) -> None:
        """As for UploadStudy, then the PACS's AE title registered and the PatientID linked."""
        super().start()
        code = self.institution[0]
        self._cli("admin", "add-dicom-peer", "--institution", code, "--ae-title", STORESCU_AET)

    def link(self, study: StudyData) -> None:
        """Link the study's PatientID to its patient, as a hospital does once per patient."""
        patient = study.identity["patient"]
        self._cli(
            "link-patient",
            "--server",
            f"127.0.0.1:{self.port}",
            "--key",
            self.api_key,
            "--patient-id",
            patient["document_number"],
            "--id-type",
            patient["document_type"],
            _patient_id(study),
        )

    def upload(self, study: StudyData, streams: int) -> UploadTiming:
        """One storescu association per part."""
        self.link(study)
        return _storescu_streams(study, streams, self.dicom_port, self.AE_TITLE)


def _patient_id(study: StudyData) -> str:
    """The PatientID the study's files carry."""
    import pydicom

    return str(pydicom.dcmread(study.files[0], stop_before_pixels=True).PatientID)


def _storescu_streams(study: StudyData, streams: int, port: int, called: str) -> UploadTiming:
    """Send each part with its own ``storescu`` (one association); all must succeed."""
    exe = shutil.which("storescu")
    if exe is None:
        raise RuntimeError("dcmtk is not installed (make test-tools, or apt-get install dcmtk)")

    def send(_handle: None, files: list[Path]) -> tuple[int, int]:
        command = [exe, "-aet", STORESCU_AET, "-aec", called, "127.0.0.1", str(port)]
        done = subprocess.run(
            [*command, *map(str, files)], capture_output=True, text=True, timeout=UPLOAD_TIMEOUT
        )
        if done.returncode != 0:
            raise RuntimeError(f"storescu exited {done.returncode}: {done.stderr[-500:]}")
        # storescu exits non-zero on any failed or refused instance: every file was stored.
        return len(files), len(files)

    return _run_streams(study.parts(streams), lambda _i: None, send, lambda _h: None)


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
            # Orthanc's default (true) fsyncs every stored file, like mutualrec's default.
            "SyncStorageArea": self.options.fsync,
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


class OrthancCStore(OrthancServer):
    """Orthanc's DICOM server (any calling AE title may store, its default), fed by storescu."""

    backend = "orthanc-cstore"
    AE_TITLE = "ORTHANC"

    def __init__(self, options: Options, run_dir: Path) -> None:
        super().__init__(options, run_dir)
        self.dicom_port = free_port()

    def _config(self) -> dict[str, Any]:
        config = super()._config()
        config.update(
            {
                "DicomServerEnabled": True,
                "DicomAet": self.AE_TITLE,
                "DicomPort": self.dicom_port,
                "DicomAlwaysAllowStore": True,
            }
        )
        return config

    def upload(self, study: StudyData, streams: int) -> UploadTiming:
        """One storescu association per part."""
        return _storescu_streams(study, streams, self.dicom_port, self.AE_TITLE)


# ---------------------------------------------------------------------------------------------
# Runs and report
# ---------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """One upload of one study to one fresh server."""

    backend: str
    processes: int
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
    sampled_peak_rss_kib: int
    sampled_peak_at: float
    server_cpu_s: float
    server_user_s: float
    server_sys_s: float
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
    server_user_s: float
    server_sys_s: float
    client_cpu_s: float
    all_instances_per_s: list[float] = field(default_factory=list)
    # mutualrec/Orthanc of the runs of the same round (run index): runs of a round are close in
    # time, so this ratio is less affected by load that drifts during the session.
    round_ratios: list[float] = field(default_factory=list)


def cleanup(options: Options) -> None:
    """Remove every run's data directory and drop every benchmark database."""
    for path in options.leftovers:
        shutil.rmtree(path, ignore_errors=True)
    options.leftovers.clear()
    if options.databases:
        import psycopg

        with psycopg.connect(
            host=options.pg_socket_dir, user=options.pg_user, dbname="postgres", autocommit=True
        ) as conn:
            for name in options.databases:
                drop_database(conn, name)
        options.databases.clear()


def parse_server_id(server_id: str) -> tuple[str, int]:
    """``postgres-p2`` -> (``postgres``, 2): the backend and its number of server processes."""
    backend, _, processes = server_id.partition("-p")
    if backend in BACKENDS and processes.isdigit():
        return backend, int(processes)
    return server_id, 1


def server_ids(backends: Sequence[str], processes: Sequence[int]) -> list[str]:
    """One id per server configuration: mutualrec backends once per process count."""
    ids: list[str] = []
    for backend in backends:
        if backend in {"sqlite", "postgres"}:
            ids += [backend if n == 1 else f"{backend}-p{n}" for n in processes]
        else:
            ids.append(backend)
    return ids


def display_name(server_id: str) -> str:
    """How a server configuration is named in the tables."""
    names = {
        "sqlite": "mutualrec, local dir + SQLite",
        "postgres": "mutualrec, local dir + PostgreSQL",
        "orthanc": "Orthanc 1.10 REST",
        "grpc-null": "gRPC transport only (null UploadStudy)",
        "grpc-store": "gRPC transport + hash, fsync, rename only (no parse, no index)",
        "grpc-store-group": "gRPC transport + hash, mutualrec's store, one barrier per batch only",
        "cstore-postgres": "mutualrec C-STORE (storescu), local dir + PostgreSQL",
        "orthanc-cstore": "Orthanc 1.10 C-STORE (storescu)",
        "cstore-floor": "pynetdicom C-STORE + hash, fsync, rename only (storescu)",
        "cstore-floor-waiting": "the same with mutualrec's waiting reactors (storescu)",
    }
    backend, processes = parse_server_id(server_id)
    return names[backend] + (f", {processes} processes" if processes > 1 else "")


def make_server(server_id: str, options: Options, run_dir: Path) -> Server:
    """The server object of a configuration from :func:`server_ids`."""
    backend, processes = parse_server_id(server_id)
    if backend == "orthanc":
        return OrthancServer(options, run_dir)
    if backend == "orthanc-cstore":
        return OrthancCStore(options, run_dir)
    if backend == "cstore-postgres":
        return CStoreMutualrec(options, run_dir)
    if backend in ("cstore-floor", "cstore-floor-waiting"):
        return NullCStoreServer(options, run_dir, waiting=backend == "cstore-floor-waiting")
    if backend in ("grpc-null", "grpc-store", "grpc-store-group"):
        return NullGrpcServer(options, run_dir, backend)
    return MutualrecServer(options, run_dir, postgres=backend == "postgres", processes=processes)


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
        assert server.process is not None
        sampler = RssSampler(server.process.pid)
        try:
            timing = server.upload(study, streams)
        finally:
            sampled_peak, peak_at = sampler.stop()
        end = server.stats()
        server.verify(study)
    finally:
        server.stop()
    user = end.user_seconds - start.user_seconds
    system = end.sys_seconds - start.sys_seconds
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
        processes=parse_server_id(backend)[1],
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
        sampled_peak_rss_kib=sampled_peak,
        sampled_peak_at=round(peak_at, 3),
        server_cpu_s=round(user + system, 2),
        server_user_s=round(user, 2),
        server_sys_s=round(system, 2),
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
        peer = PEER.get(backend, "orthanc")
        orthanc = {r.run: r.instances_per_s for r in groups.get((study, peer, streams), [])}
        ratios = [
            round(r.instances_per_s / orthanc[r.run], 3)
            for r in runs
            if not backend.startswith("orthanc") and orthanc.get(r.run)
        ]
        out.append(
            Summary(
                backend=backend,
                study=study,
                streams=streams,
                runs=len(runs),
                instances=runs[0].instances,
                size_bytes=runs[0].size_bytes,
                seconds=round(statistics.median(r.seconds for r in runs), 3),
                instances_per_s=round(statistics.median(r.instances_per_s for r in runs), 3),
                mb_per_s=round(statistics.median(r.mb_per_s for r in runs), 1),
                peak_rss_mib=round(max(r.peak_rss_kib for r in runs) / 1024, 1),
                server_cpu_s=round(statistics.median(r.server_cpu_s for r in runs), 1),
                server_user_s=round(statistics.median(r.server_user_s for r in runs), 1),
                server_sys_s=round(statistics.median(r.server_sys_s for r in runs), 1),
                client_cpu_s=round(statistics.median(r.client_cpu_s for r in runs), 1),
                all_instances_per_s=[r.instances_per_s for r in runs],
                round_ratios=ratios,
            )
        )
    return out


def _table_place(s: Summary) -> tuple[int, int, int]:
    backend, processes = parse_server_id(s.backend)
    return s.streams, BACKENDS.index(backend), processes


def markdown(summaries: list[Summary]) -> str:
    """Throughput tables (one per study) with the mutualrec/Orthanc ratio."""
    lines: list[str] = []
    for study in dict.fromkeys(s.study for s in summaries):
        rows = [s for s in summaries if s.study == study]
        first = rows[0]
        lines.append(
            f"\n**{study}**: {first.instances} instances, {first.size_bytes / MB:.1f} MB "
            f"({first.size_bytes / first.instances / MB:.3f} MB each)\n"
        )
        lines.append(
            "| server | streams | runs | inst/s (median) | MB/s | vs Orthanc (medians) | "
            "vs Orthanc (median of rounds) | peak RSS MiB | server CPU s (user + sys) | "
            "client CPU s | inst/s per run |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        orthanc = {(s.backend, s.streams): s.instances_per_s for s in rows}
        for s in sorted(rows, key=_table_place):
            peer = orthanc.get((PEER.get(s.backend, "orthanc"), s.streams))
            ratio = (
                f"{s.instances_per_s / peer:.2f}x"
                if not s.backend.startswith("orthanc") and peer
                else "-"
            )
            paired = (
                f"{statistics.median(s.round_ratios):.2f}x "
                f"({', '.join(f'{v:.2f}' for v in s.round_ratios)})"
                if s.round_ratios
                else "-"
            )
            runs = ", ".join(f"{v:.1f}" for v in s.all_instances_per_s)
            lines.append(
                f"| {display_name(s.backend)} | {s.streams} | {s.runs} | {s.instances_per_s:.1f} | "
                f"{s.mb_per_s:.1f} | {ratio} | {paired} | {s.peak_rss_mib:.0f} | "
                f"{s.server_cpu_s:.1f} "
                f"({s.server_user_s:.1f} + {s.server_sys_s:.1f}) | "
                f"{s.client_cpu_s:.1f} | {runs} |"
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Network namespace and main
# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--files", type=int, default=1800, help="instances in the main study")
    p.add_argument("--series", type=int, default=1, help="series in the generated studies")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 4], help="parallel streams")
    p.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        default=list(DEFAULT_BACKENDS),
        help="grpc-null (diagnostic): mutualrec's gRPC contract with an UploadStudy that "
        "stores nothing, i.e. the transport's ceiling; grpc-store: the same keeping each "
        "instance as a hashed, fsynced file and nothing more, i.e. a storage floor; "
        "grpc-store-group: the same through mutualrec's store with one durability barrier "
        "per batch (group durability's floor)",
    )
    p.add_argument("--runs", type=int, default=3, help="runs per configuration (median)")
    p.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[1],
        help="MUTUALREC_PROCESSES values to run each mutualrec backend with",
    )
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
    p.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="only print the tables of a --json file written earlier (runs nothing)",
    )
    p.add_argument("--pg-socket-dir", default="/var/run/postgresql")
    p.add_argument("--pg-user", default="postgres")
    p.add_argument(
        "--pg-database",
        default="bench_mutualrec",
        help="name prefix of the per-run databases (NAME_1, NAME_2, ...), dropped at the end",
    )
    p.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the mutualrec servers")
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument(
        "--profile-gil",
        action="store_true",
        help="sample only the thread holding the GIL (CPU-bound Python), not I/O waits",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the servers' data directories and databases"
    )
    env_option(p, "MALLOC_ARENA_MAX=2 (diagnostic)")
    p.add_argument(
        "--no-fsync",
        action="store_true",
        help="diagnostic: MUTUALREC_FS_FSYNC=false and Orthanc SyncStorageArea=false",
    )
    code_options(p)
    p.add_argument(
        "--no-netns", action="store_true", help="do not enter a loopback-only network namespace"
    )
    args = p.parse_args(argv)
    if args.files < 1 or args.runs < 1 or min(args.streams) < 1 or min(args.processes) < 1:
        p.error("--files, --runs, --streams and --processes must be positive")
    return args


def plan(args: argparse.Namespace, studies: dict[str, StudyData]) -> Iterator[tuple[str, str, int]]:
    """(study key, server id, streams) in the order to run them; runs of a round interleave."""
    servers = server_ids(args.backends, args.processes)
    for run in range(args.runs):
        for streams in args.streams:
            for server in servers:
                yield "main", server, streams
        if run == 0:
            for key in studies:
                if key == "main":
                    continue
                for server in servers:
                    for streams in [1] if key.startswith("large") else args.streams:
                        yield key, server, streams


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.report is not None:
        saved = json.loads(args.report.read_text(encoding="utf-8"))
        known = {f.name for f in fields(RunResult)}
        runs = [
            RunResult(**{"processes": 1, **{k: v for k, v in run.items() if k in known}})
            for run in saved["runs"]
        ]
        print(markdown(summarize(runs)))
        return 0
    if not args.no_netns and os.environ.get(NETNS_ENV) != "1":
        enter_netns(argv, NETNS_ENV, __file__)
    if os.environ.get(NETNS_ENV) == "1":
        loopback_only()
    workdir: Path = args.workdir.resolve()
    (workdir / "runs").mkdir(parents=True, exist_ok=True)
    code_dir, code = snapshot_code(workdir, None if args.worktree else args.ref)
    check_snapshot(code_dir)
    # The client side (mutualrec.client.upload) comes from the same snapshot as the servers.
    import_snapshot(code_dir)
    print(f"benchmarking mutualrec from {code} ({code_dir})", flush=True)
    data_dir = workdir / "data"
    print(f"preparing data under {data_dir}", flush=True)
    started = time.time()
    studies = {"main": prepare_ct(data_dir, args.files, args.series)}
    for count in args.rss_files:
        if count != args.files:
            studies[f"ct{count}"] = prepare_ct(data_dir, count, args.series)
    if args.large_mib > 0:
        studies[f"large{args.large_mib}"] = prepare_large(data_dir, studies["main"], args.large_mib)
    # Regenerating a study first deletes its old files (see INODE_SETTLE).
    generated = any(s.files[0].stat().st_mtime >= started for s in studies.values())
    for study in studies.values():
        warm_page_cache(study)

    options = Options(
        workdir=workdir,
        code_dir=code_dir,
        pg_socket_dir=args.pg_socket_dir,
        pg_user=args.pg_user,
        pg_database=args.pg_database,
        keep=args.keep,
        profile_dir=args.profile.resolve() if args.profile else None,
        profile_rate=args.profile_rate,
        profile_gil=args.profile_gil,
        fsync=not args.no_fsync,
        mutualrec_env=dict(item.split("=", 1) for item in args.mutualrec_env),
    )
    steps = list(plan(args, studies))
    needed = sum(studies[key].size_bytes for key, _, _ in steps) * 1.1 + 2e9
    free = shutil.disk_usage(workdir).free
    if free < needed:
        raise SystemExit(
            f"{workdir} has {free / 1e9:.1f} GB free; these runs keep about {needed / 1e9:.1f} GB "
            "until the end of the session"
        )
    stale = list((workdir / "runs").iterdir())
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    if stale or generated:
        print(f"files were just deleted or written: waiting {INODE_SETTLE:.0f} s", flush=True)
        time.sleep(INODE_SETTLE)

    results: list[RunResult] = []
    counters: collections.Counter[tuple[str, str, int]] = collections.Counter()
    try:
        for key, backend, streams in steps:
            study = studies[key]
            counters[(key, backend, streams)] += 1
            run = counters[(key, backend, streams)]
            print(
                f"{study.label:>24} {backend:>11} streams={streams} run={run} ...",
                end="",
                flush=True,
            )
            result = one_run(backend, study, streams, run, options)
            results.append(result)
            print(
                f" {result.instances_per_s:8.1f} inst/s {result.mb_per_s:7.1f} MB/s "
                f"peak RSS {result.peak_rss_kib / 1024:6.0f} MiB "
                f"(sampled {result.sampled_peak_rss_kib / 1024:.0f} MiB "
                f"at {result.sampled_peak_at:.0%}) "
                f"(server CPU {result.server_user_s:.1f} user + {result.server_sys_s:.1f} sys s, "
                f"client CPU {result.client_cpu_s:.1f} s, "
                f"load {result.loadavg_before:.2f})",
                flush=True,
            )
    finally:
        if not args.keep:
            cleanup(options)

    summaries = summarize(results)
    table = markdown(summaries)
    print(table)
    if args.json:
        write_json(
            args.json,
            {
                "command": [Path(sys.executable).name, "bench/ingest_bench.py", *argv],
                "machine": machine(workdir),
                "mutualrec_code": code,
                "fsync": not args.no_fsync,
                "mutualrec_env": options.mutualrec_env,
                "runs": [asdict(r) for r in results],
                "summary": [asdict(s) for s in summaries],
                "markdown": table,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
