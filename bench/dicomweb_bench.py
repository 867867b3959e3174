#!/usr/bin/env python3
"""DICOMweb WADO-RS benchmark: a whole CT study (``multipart/related; type="application/dicom"``)
and its metadata (``application/dicom+json``), mutualrec against Orthanc's DICOMweb plugin.

Both hold the same files (a ``--instances``-instance 512x512 CT study made by
dicom_samples/make_samples.py --bench-ct); mutualrec runs as ``mutualrec serve`` (embedded
default: SQLite index, local-directory object store) from a snapshot of the code, Orthanc from
Debian's package with its default SQLite index. One client (Python ``http.client``, one
keep-alive connection per server) reads each answer to its last byte; the four measurements
run interleaved, round after round, so a drift of the shared machine touches them alike.

Orthanc listens on every interface, so the whole run happens in a loopback-only network
namespace (``unshare --net``; ``--no-netns`` only where that is impossible and safe).

    .venv/bin/python bench/dicomweb_bench.py --instances 300 --rounds 15
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    REPO,
    RESULTS_DIR,
    ServerProcess,
    code_options,
    enter_netns,
    free_port,
    import_snapshot,
    last_line,
    latency_summary,
    log,
    loopback_only,
    machine,
    mutualrec_env,
    process_tree_stats,
    run_cli,
    serve,
    snapshot_code,
    write_json,
)
from orthanc_dicomweb import OrthancDicomWeb

NETNS_ENV = "MUTUALREC_DICOMWEB_BENCH_NETNS"
MAKE_SAMPLES = REPO / "dicom_samples" / "make_samples.py"
INSTITUTION = ("H500103001", "Bench Hospital", "Yuzhong", "tertiary")
CALL_TIMEOUT = 600.0


def prepare_study(data_dir: Path, count: int, seed: int) -> tuple[list[Path], dict[str, Any]]:
    """A ``count``-instance CT study of one series, made once per seed and reused."""
    folder = data_dir / f"ct{count}-seed{seed}"
    summary = folder / "bench.json"
    if not summary.exists() or len(list(folder.glob("bench_*.dcm"))) != count:
        subprocess.run(
            [
                sys.executable,
                str(MAKE_SAMPLES),
                "--bench-ct",
                str(folder),
                "--count",
                str(count),
                "--series",
                "1",
                "--seed",
                str(seed),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=1800,
        )
    files = sorted(folder.glob("bench_*.dcm"))
    return files, json.loads(summary.read_text(encoding="utf-8"))


class Client:
    """One keep-alive HTTP connection; GETs read to the last byte."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.headers = headers
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CALL_TIMEOUT)
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def get(self, path: str, accept: str) -> tuple[float, int, bytes]:
        """Seconds to the last byte, the body's size, and its first bytes."""
        headers = {**self.headers, "Accept": accept}
        t0 = time.perf_counter()
        try:
            self.conn.request("GET", path, headers=headers)
            reply = self.conn.getresponse()
        except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest):
            # Orthanc closes an idle keep-alive connection after a while.
            self.conn.close()
            self.conn = self._connect()
            t0 = time.perf_counter()
            self.conn.request("GET", path, headers=headers)
            reply = self.conn.getresponse()
        size = 0
        head = b""
        while chunk := reply.read(1 << 20):
            if not head:
                head = chunk[:4096]
            size += len(chunk)
        elapsed = time.perf_counter() - t0
        if reply.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {reply.status} {head[:300]!r}")
        return elapsed, size, head


def _parts(client: Client, path: str) -> int:
    """How many application/dicom parts a retrieval holds (a check, outside the timings)."""
    client.conn.request("GET", path, headers={**client.headers, "Accept": STUDY_ACCEPT})
    reply = client.conn.getresponse()
    body = reply.read()
    boundary = reply.getheader("content-type", "").split("boundary=", 1)[1].split(";")[0]
    return body.count(b"--" + boundary.strip('"').encode() + b"\r\n")


STUDY_ACCEPT = 'multipart/related; type="application/dicom"'
METADATA_ACCEPT = "application/dicom+json"


@dataclass(frozen=True)
class ServedStudy:
    """``mutualrec serve`` (embedded default) holding one study, and how to reach it."""

    server: ServerProcess
    http_port: int
    patient_token: str


def serve_study(
    code_dir: Path,
    run_dir: Path,
    files: Sequence[Path],
    identity: dict[str, Any],
    cache_mib: int | None = None,
) -> ServedStudy:
    """Start ``mutualrec serve`` from ``code_dir`` with its data in ``run_dir`` (and its DICOMweb
    cache of ``cache_mib``, None: the default), upload the study over gRPC as its hospital, and
    mint its patient a token (valid two hours)."""
    import grpc

    from mutualrec.client.upload import make_header, upload_study

    http_port = free_port()
    env = mutualrec_env(
        code_dir,
        data_dir=str(run_dir / "data"),
        listen=f"127.0.0.1:{free_port()}",
        http_listen=f"127.0.0.1:{http_port}",
        database_url=f"sqlite:///{run_dir / 'index.sqlite3'}",
        patient_key_secret="dicomweb-bench-" + "x" * 32,
    )
    if cache_mib is not None:
        env["MUTUALREC_DICOMWEB_CACHE_MIB"] = str(cache_mib)
    run_cli(env, code_dir, "db", "upgrade")
    code, name, district, level = INSTITUTION
    run_cli(
        env,
        code_dir,
        "admin",
        "add-institution",
        *("--code", code, "--name", name, "--district", district, "--level", level),
    )
    api_key = last_line(run_cli(env, code_dir, "admin", "issue-key", "--institution", code))
    number = identity["patient"]["document_number"]
    minted = run_cli(
        env, code_dir, "admin", "patient-token", "--patient-id", number, "--ttl", "7200"
    )
    token = minted.strip().splitlines()[0].strip()
    server, target = serve(env, code_dir, run_dir / "server.log")
    try:
        header = make_header(
            number,
            identity["patient"]["document_type"],
            "",
            identity.get("accession_number", ""),
            identity.get("performed_item_code", ""),
        )
        with grpc.insecure_channel(target) as channel:
            stored = upload_study(channel, api_key, header, files, timeout=1800).counts.stored
        if stored != len(files):
            raise RuntimeError(f"mutualrec stored {stored} of {len(files)}")
    except BaseException:
        server.stop()
        raise
    return ServedStudy(server, http_port, token)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if not args.no_netns and os.environ.get(NETNS_ENV) != "1":
        enter_netns(argv, NETNS_ENV, __file__)
    if os.environ.get(NETNS_ENV) == "1":
        loopback_only()
    scratch: Path = args.workdir.resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    code_dir, code = snapshot_code(scratch, None if args.worktree else args.ref)
    import_snapshot(code_dir)
    files, identity = prepare_study(scratch / "data", args.instances, args.seed)
    size = sum(p.stat().st_size for p in files)
    log(f"{len(files)} files, {size / 1e6:.1f} MB, study {identity['study_instance_uid']}")
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=scratch))
    held = serve_study(code_dir, run_dir, files, identity, args.cache_mib)
    server, http_port, token = held.server, held.http_port, held.patient_token
    orthanc = None
    try:
        orthanc = OrthancDicomWeb(run_dir / "orthanc", free_port())
        for path in files:
            orthanc.store(path.read_bytes())
        log(f"both hold the study; Orthanc {orthanc.version}")
        uid = identity["study_instance_uid"]
        ours = Client(http_port, {"Authorization": f"Bearer {token}"})
        theirs = Client(orthanc.port, {})
        paths = {
            "mutualrec": f"/dicomweb/studies/{uid}",
            "orthanc": f"/dicom-web/studies/{uid}",
        }
        for who, client in (("mutualrec", ours), ("orthanc", theirs)):
            parts = _parts(client, paths[who])
            if parts != len(files):
                raise RuntimeError(f"{who} answered {parts} parts of {len(files)}")
        # The first metadata request of each, before anything is cached (mutualrec keeps
        # metadata by content hash once built).
        first_metadata = {
            who: round(1000 * client.get(paths[who] + "/metadata", METADATA_ACCEPT)[0], 2)
            for who, client in (("mutualrec", ours), ("orthanc", theirs))
        }
        measurements = [
            (who, what) for what in ("study", "metadata") for who in ("mutualrec", "orthanc")
        ]
        times: dict[tuple[str, str], list[float]] = {m: [] for m in measurements}
        sizes: dict[tuple[str, str], int] = {}
        cpu_before = process_tree_stats(server.pid)
        for number_ in range(args.warmup + args.rounds):
            for who, what in measurements:
                client = ours if who == "mutualrec" else theirs
                path = paths[who] + ("/metadata" if what == "metadata" else "")
                accept = METADATA_ACCEPT if what == "metadata" else STUDY_ACCEPT
                elapsed, got, head = client.get(path, accept)
                if what == "metadata" and not head.startswith(b"["):
                    raise RuntimeError(f"{who}: metadata is not a JSON array")
                sizes[(who, what)] = got
                if number_ >= args.warmup:
                    times[(who, what)].append(elapsed)
            log(f"round {number_ + 1} of {args.warmup + args.rounds}")
        cpu_after = process_tree_stats(server.pid)
        results: dict[str, Any] = {}
        for what in ("study", "metadata"):
            ours_s = latency_summary(times[("mutualrec", what)])
            theirs_s = latency_summary(times[("orthanc", what)])
            results[what] = {
                "mutualrec": {**ours_s, "bytes": sizes[("mutualrec", what)]},
                "orthanc": {**theirs_s, "bytes": sizes[("orthanc", what)]},
                "median_ratio": statistics.median(times[("mutualrec", what)])
                / statistics.median(times[("orthanc", what)]),
            }
        document = {
            "benchmark": "dicomweb_bench",
            "command": " ".join([sys.executable, "bench/dicomweb_bench.py", *argv]),
            "code": code,
            "orthanc": orthanc.version,
            "netns": os.environ.get(NETNS_ENV) == "1",
            "study": {"instances": len(files), "bytes": size, "rows_columns": "512x512"},
            "rounds": args.rounds,
            "dicomweb_cache_mib": args.cache_mib,
            "warmup": args.warmup,
            "mutualrec_server_cpu_s": round(
                cpu_after.user_seconds
                + cpu_after.sys_seconds
                - cpu_before.user_seconds
                - cpu_before.sys_seconds,
                2,
            ),
            "mutualrec_peak_rss_kib": cpu_after.peak_rss_kib,
            "results": results,
            "first_metadata_ms": first_metadata,
            "raw_seconds": {f"{w}/{m}": v for (w, m), v in times.items()},
            "machine": machine(scratch),
        }
        write_json(args.output, document)
        log(f"results written to {args.output}")
        print(json.dumps(results, indent=2))
    finally:
        if orthanc is not None:
            orthanc.stop()
        server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mutualrec-dicomweb-bench"))
    parser.add_argument(
        "--output", type=Path, default=RESULTS_DIR / "issue20" / "dicomweb-wado.json"
    )
    parser.add_argument("--no-netns", action="store_true", help="do not enter a network namespace")
    parser.add_argument(
        "--cache-mib",
        type=int,
        help="MUTUALREC_DICOMWEB_CACHE_MIB of the server (default: its own default; 0 measures "
        "every retrieval reading and hashing the files)",
    )
    code_options(parser)
    return run(parser.parse_args(argv), argv)


if __name__ == "__main__":
    raise SystemExit(main())
