#!/usr/bin/env python3
"""FHIR lab ingest benchmark: ``SubmitObservations`` throughput on PostgreSQL, empty and full.

One ``mutualrec serve`` runs on a freshly created PostgreSQL database (``mutualrec_fhir_bench``,
dropped at the end) and a fresh data directory. C client threads, each with its own gRPC
channel, submit Bundles of synthetic lab results (tests/fhir_factory.py: a Chongqing LIS feed,
10-20 Observations per DiagnosticReport, Patient and Specimen entries) in three phases, after
``--warmup-calls`` calls (phase ``warmup``) that take the server's first-call costs:

1. ``empty``: ``--observations`` Observations per bundle size, starting on an empty index;
2. ``preload``: bundles of ``--preload-bundle-size`` until the index holds ``--preload``
   Observations, generated in segments of ``--segment`` Observations so memory stays bounded
   (only sending is timed);
3. ``preloaded``: the bundle sizes of phase 1 again, with new identifiers.

Bundles are generated and serialized before each timed run. Every Observation entry must come
back CREATED and every Patient, Specimen and DiagnosticReport entry CONTEXT; any other outcome
or gRPC error fails the run. Per phase and bundle size the report gives Observations/s, calls,
per-call median and p99 latency, server CPU (the server process and its workers), the server's
peak RSS (sampled during the phase, and VmHWM since start), PostgreSQL CPU, and client CPU.

mutualrec runs from a private copy of the package (``git archive`` of ``--ref``, default HEAD, or
the working tree with ``--worktree``), as every benchmark here does (bench/harness.py); the
server is bench/ingest_bench.py's, on PostgreSQL.

    .venv/bin/python bench/fhir_bench.py --bundle-sizes 100 1000 --clients 4 \\
        --observations 50000 --preload 1000000 --json /tmp/fhir.json
    .venv/bin/python bench/fhir_bench.py --quick --worktree
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import json
import math
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this file's directory is on sys.path, so the harness and the sibling
# benchmark (whose mutualrec server this one runs on PostgreSQL) import.
from harness import (
    REPO,
    START_TIMEOUT,
    ProcessStats,
    RssSampler,
    check_snapshot,
    code_options,
    env_option,
    free_port,
    machine,
    percentile,
    postgres_cpu,
    postgres_version,
    process_tree_stats,
    self_cpu,
    snapshot_code,
    write_json,
)
from ingest_bench import MIB, MutualrecServer, Options, cleanup

DATABASE = "mutualrec_fhir_bench"
INSTITUTION = ("H500103001", "重庆市渝中区示范人民医院", "渝中区", "tertiary")
CALL_TIMEOUT = 600.0
QUICK = {"observations": 2_000, "preload": 10_000, "segment": 4_000}


# ---------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------


class FhirBenchServer(MutualrecServer):
    """``mutualrec serve`` on PostgreSQL, on a fixed port, with the benchmark's institution."""

    institution = INSTITUTION

    def __init__(self, options: Options, run_dir: Path, *, processes: int) -> None:
        super().__init__(options, run_dir, postgres=True, processes=processes)
        # ingest_bench numbers one database per run; this benchmark has one, under a fixed name.
        options.databases.remove(self.database)
        self.database = options.pg_database
        options.databases.append(self.database)
        self.listen = f"127.0.0.1:{free_port()}"
        self.backend = "postgres" if processes == 1 else f"postgres-p{processes}"


# ---------------------------------------------------------------------------------------------
# Bundles and clients
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """Bundles generated for one timed run, as ready-made requests."""

    requests: list[Any]
    observations: list[int]
    entries: list[int]
    body_bytes: int


class SeedSource:
    """Bundle seeds never reused within a session, so every bundle holds new identifiers."""

    def __init__(self) -> None:
        self._next = 1

    def take(self, count: int) -> range:
        """``count`` fresh seeds."""
        seeds = range(self._next, self._next + count)
        self._next += count
        return seeds


def report_centred(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` as a report-centred LIS exports it: each DiagnosticReport carries the
    collection time (effectiveDateTime) and its results carry no time of their own."""
    by_url = {e["fullUrl"]: e["resource"] for e in document["entry"]}
    for entry in document["entry"]:
        report = entry["resource"]
        if report["resourceType"] != "DiagnosticReport":
            continue
        results = [by_url[r["reference"]] for r in report["result"]]
        report["effectiveDateTime"] = results[0]["effectiveDateTime"]
        for result in results:
            del result["effectiveDateTime"], result["issued"]
    return document


def generate(
    seeds: SeedSource,
    observations: int,
    bundle_size: int,
    bundle_type: str,
    centred: bool = False,
) -> Batch:
    """``observations`` Observations in bundles of ``bundle_size`` (the last one may be smaller);
    ``centred``: shaped by :func:`report_centred`."""
    from mutualrec.v1 import ingest_pb2
    from tests.fhir_factory import CHINA, make_bundle, to_bytes

    # Generated just before sending: every time in the bundles is in the past, but recent.
    now = dt.datetime.now(CHINA)
    calls = math.ceil(observations / bundle_size)
    requests: list[Any] = []
    counts: list[int] = []
    entries: list[int] = []
    size = 0
    for i, seed in enumerate(seeds.take(calls)):
        count = min(bundle_size, observations - i * bundle_size)
        document = make_bundle(seed, observations=count, bundle_type=bundle_type, now=now)
        body = to_bytes(report_centred(document) if centred else document)
        requests.append(
            ingest_pb2.SubmitObservationsRequest(body=body, fhir_version=ingest_pb2.FHIR_R4)
        )
        counts.append(count)
        # Entries are counted from the document itself, to check the reply has one per entry.
        entries.append(len(json.loads(body)["entry"]))
        size += len(body)
    return Batch(requests, counts, entries, size)


@dataclass
class SendResult:
    """What the clients saw during one timed run."""

    seconds: float
    client_cpu_s: float
    latencies_s: list[float]
    outcomes: collections.Counter[str]
    errors: list[str]


def send_all(target: str, api_key: str, batch: Batch, clients: int) -> SendResult:
    """Submit every request of ``batch`` from ``clients`` threads, each with its own channel.

    Threads take the next request from a shared position, so a slow call does not leave the
    other clients idle. A gRPC error stops every client; wrong outcomes are counted and kept.
    """
    import grpc

    from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc

    metadata = (("authorization", f"Bearer {api_key}"),)
    channel_options = [
        ("grpc.max_send_message_length", 64 * MIB),
        ("grpc.max_receive_message_length", 64 * MIB),
    ]
    position = iter(range(len(batch.requests)))
    position_lock = threading.Lock()
    result_lock = threading.Lock()
    barrier = threading.Barrier(clients + 1, timeout=START_TIMEOUT)
    stop = threading.Event()
    ends = [0.0] * clients
    latencies: list[float] = []
    outcomes: collections.Counter[str] = collections.Counter()
    errors: list[str] = []
    outcome_name = ingest_pb2.EntryOutcomeKind.Name

    def check(index: int, reply: Any) -> tuple[collections.Counter[str], list[str]]:
        seen: collections.Counter[str] = collections.Counter()
        wrong: list[str] = []
        for entry in reply.entries:
            kind = outcome_name(entry.outcome)
            seen[f"{entry.resource_type}:{kind}"] += 1
            expected = "CREATED" if entry.resource_type == "Observation" else "CONTEXT"
            if kind != expected and len(wrong) < 5:
                fields = ", ".join(v.field for v in entry.violations)
                wrong.append(
                    f"call {index} entry {entry.index} ({entry.resource_type}): {kind}: "
                    f"{entry.reason}" + (f" [{fields}]" if fields else "")
                )
        if len(reply.entries) != batch.entries[index] and len(wrong) < 5:
            wrong.append(
                f"call {index}: {len(reply.entries)} entry outcomes for "
                f"{batch.entries[index]} entries"
            )
        if reply.counts.created != batch.observations[index] and len(wrong) < 5:
            wrong.append(
                f"call {index}: counts.created={reply.counts.created}, "
                f"expected {batch.observations[index]}"
            )
        return seen, wrong

    def worker(slot: int) -> None:
        channel = grpc.insecure_channel(target, options=channel_options)
        try:
            grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT)
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            barrier.wait()
            mine: list[float] = []
            while not stop.is_set():
                with position_lock:
                    index = next(position, None)
                if index is None:
                    break
                started = time.perf_counter()
                reply = stub.SubmitObservations(
                    batch.requests[index], metadata=metadata, timeout=CALL_TIMEOUT
                )
                mine.append(time.perf_counter() - started)
                seen, wrong = check(index, reply)
                with result_lock:
                    outcomes.update(seen)
                    errors.extend(wrong)
            ends[slot] = time.perf_counter()
            with result_lock:
                latencies.extend(mine)
        except grpc.RpcError as exc:
            stop.set()
            with result_lock:
                errors.append(f"gRPC {exc.code().name}: {exc.details()}")
        except BaseException as exc:
            stop.set()
            barrier.abort()
            with result_lock:
                errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            channel.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    cpu0 = self_cpu()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    cpu1 = self_cpu()
    seconds = max([*ends, t0]) - t0
    return SendResult(seconds, cpu1 - cpu0, latencies, outcomes, errors)


# ---------------------------------------------------------------------------------------------
# Phases and report
# ---------------------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    """One timed run: a phase at one bundle size."""

    phase: str
    bundle_size: int
    index_before: int
    observations: int
    calls: int
    body_mb: float
    seconds: float
    observations_per_s: float
    call_median_ms: float
    call_p99_ms: float
    call_max_ms: float
    server_cpu_s: float
    server_user_s: float
    server_sys_s: float
    server_peak_rss_mib: float
    server_vmhwm_mib: float
    postgres_cpu_s: float
    client_cpu_s: float
    generate_s: float
    created: int
    context: int
    other_outcomes: int
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    segments: list[dict[str, float]] = field(default_factory=list)


class Session:
    """The running server and what every timed run of the session shares."""

    def __init__(self, server: FhirBenchServer, args: argparse.Namespace) -> None:
        self.server = server
        self.args = args
        self.seeds = SeedSource()
        self.stored = 0
        self.target = f"127.0.0.1:{server.port}"

    def run(self, phase: str, bundle_size: int, observations: int, segment: int) -> PhaseResult:
        """Send ``observations`` in bundles of ``bundle_size``, generating ``segment`` at a time.

        Only sending is timed; server, PostgreSQL and client statistics cover the timed parts.
        """
        assert self.server.process is not None
        pid = self.server.process.pid
        index_before = self.stored
        totals = collections.Counter[str]()
        latencies: list[float] = []
        errors: list[str] = []
        seconds = client_cpu = generate_s = pg_cpu_s = 0.0
        body_bytes = calls = 0
        peak_rss_kib = 0
        segments: list[dict[str, float]] = []
        start = process_tree_stats(pid)
        done = 0
        while done < observations and not errors:
            part = min(segment, observations - done)
            t_gen = time.perf_counter()
            batch = generate(
                self.seeds, part, bundle_size, self.args.bundle_type, self.args.report_centred
            )
            generate_s += time.perf_counter() - t_gen
            pg_before = postgres_cpu()[0]
            sampler = RssSampler(pid)
            try:
                sent = send_all(self.target, self.server.api_key, batch, self.args.clients)
            finally:
                sampled_peak, _ = sampler.stop()
            pg_after = postgres_cpu()[0]
            pg_cpu_s += sum(t - pg_before.get(p, 0.0) for p, t in pg_after.items())
            peak_rss_kib = max(peak_rss_kib, sampled_peak)
            seconds += sent.seconds
            client_cpu += sent.client_cpu_s
            latencies += sent.latencies_s
            totals.update(sent.outcomes)
            errors += sent.errors
            body_bytes += batch.body_bytes
            calls += len(batch.requests)
            created = sum(n for k, n in sent.outcomes.items() if k == "Observation:CREATED")
            self.stored += created
            done += part
            if segment < observations:
                segments.append(
                    {
                        "index_before": self.stored - created,
                        "observations": part,
                        "seconds": round(sent.seconds, 3),
                        "observations_per_s": round(part / max(sent.seconds, 1e-9), 1),
                    }
                )
                print(
                    f"    {phase}: {self.stored:>9} stored, last {part} at "
                    f"{part / max(sent.seconds, 1e-9):8.1f} obs/s",
                    flush=True,
                )
            del batch
        end = process_tree_stats(pid)
        created = totals["Observation:CREATED"]
        context = sum(n for k, n in totals.items() if k.endswith(":CONTEXT"))
        user = end.user_seconds - start.user_seconds
        system = end.sys_seconds - start.sys_seconds
        # The server's CPU while generating is idle time; what it used is all in the timed parts.
        return PhaseResult(
            phase=phase,
            bundle_size=bundle_size,
            index_before=index_before,
            observations=done,
            calls=calls,
            body_mb=round(body_bytes / 1e6, 1),
            seconds=round(seconds, 3),
            observations_per_s=round(created / seconds, 1) if seconds else 0.0,
            call_median_ms=round(statistics.median(latencies) * 1000, 1) if latencies else 0.0,
            call_p99_ms=round(percentile(latencies, 99) * 1000, 1),
            call_max_ms=round(max(latencies, default=0.0) * 1000, 1),
            server_cpu_s=round(user + system, 2),
            server_user_s=round(user, 2),
            server_sys_s=round(system, 2),
            server_peak_rss_mib=round(peak_rss_kib / 1024, 1),
            server_vmhwm_mib=round(end.peak_rss_kib / 1024, 1),
            postgres_cpu_s=round(pg_cpu_s, 2),
            client_cpu_s=round(client_cpu, 2),
            generate_s=round(generate_s, 2),
            created=created,
            context=context,
            other_outcomes=sum(totals.values()) - created - context,
            outcomes=dict(sorted(totals.items())),
            errors=errors[:20],
            segments=segments,
        )


def markdown(results: list[PhaseResult], header: str) -> str:
    """One table row per phase and bundle size."""
    lines = [
        header,
        "",
        "| phase | bundle size | index before | observations | calls | obs/s | call median ms | "
        "call p99 ms | server CPU s | server peak RSS MiB (VmHWM) | PostgreSQL CPU s | "
        "client CPU s | CREATED | CONTEXT | other |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.phase} | {r.bundle_size} | {r.index_before} | {r.observations} | {r.calls} | "
            f"{r.observations_per_s:.1f} | {r.call_median_ms:.1f} | {r.call_p99_ms:.1f} | "
            f"{r.server_cpu_s:.1f} | {r.server_peak_rss_mib:.0f} ({r.server_vmhwm_mib:.0f}) | "
            f"{r.postgres_cpu_s:.1f} | {r.client_cpu_s:.1f} | {r.created} | {r.context} | "
            f"{r.other_outcomes} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--bundle-sizes", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    p.add_argument(
        "--observations", type=int, default=50_000, help="Observations per bundle size and phase"
    )
    p.add_argument(
        "--preload",
        type=int,
        default=1_000_000,
        help="Observations the index holds before the second measurement (0: skip)",
    )
    p.add_argument("--preload-bundle-size", type=int, default=1000)
    p.add_argument(
        "--segment",
        type=int,
        default=100_000,
        help="Observations generated at once while preloading (bounds client memory)",
    )
    p.add_argument("--bundle-type", choices=["batch", "transaction"], default="batch")
    p.add_argument(
        "--report-centred",
        action="store_true",
        help="results without times of their own: they inherit the DiagnosticReport's",
    )
    p.add_argument(
        "--warmup-calls",
        type=int,
        help="calls of the smallest bundle size sent first, reported as phase warmup "
        "(default: --clients)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke check: {QUICK['observations']} Observations per run, "
        f"preload {QUICK['preload']} in segments of {QUICK['segment']}",
    )
    p.add_argument("--processes", type=int, default=1, help="MUTUALREC_PROCESSES of the server")
    p.add_argument(
        "--pg-host",
        default="/var/run/postgresql",
        help="PostgreSQL socket directory or address (e.g. 127.0.0.1); trust auth",
    )
    p.add_argument("--pg-user", default="postgres")
    p.add_argument("--pg-database", default=DATABASE, help="created fresh, dropped at the end")
    p.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "mutualrec-fhir-bench"
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="write every result here")
    p.add_argument("--keep", action="store_true", help="keep the data directory and database")
    p.add_argument("--no-fsync", action="store_true", help="diagnostic: MUTUALREC_FS_FSYNC=false")
    env_option(p, "MUTUALREC_BLOCKING_WORKERS=16")
    code_options(p)
    args = p.parse_args(argv)
    if args.warmup_calls is None:
        args.warmup_calls = args.clients
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    sizes = [*args.bundle_sizes, args.preload_bundle_size, args.segment]
    if min(sizes) < 1 or args.clients < 1 or args.observations < 1 or args.processes < 1:
        p.error("bundle sizes, --segment, --clients, --observations, --processes must be positive")
    if args.preload < 0 or args.warmup_calls < 0:
        p.error("--preload and --warmup-calls must not be negative")
    return args


def _print_run(r: PhaseResult) -> None:
    print(
        f"  {r.phase:>9} bundle={r.bundle_size:<5} {r.observations_per_s:9.1f} obs/s "
        f"({r.calls} calls, median {r.call_median_ms:.0f} ms, p99 {r.call_p99_ms:.0f} ms; "
        f"server CPU {r.server_cpu_s:.1f} s, peak RSS {r.server_peak_rss_mib:.0f} MiB; "
        f"PostgreSQL CPU {r.postgres_cpu_s:.1f} s; generated in {r.generate_s:.1f} s)",
        flush=True,
    )


def run_phases(
    session: Session, args: argparse.Namespace, record: Callable[[PhaseResult], None]
) -> None:
    """empty -> preload -> preloaded; stops at the first run with errors."""
    measure = args.observations

    def one(phase: str, size: int, count: int, segment: int) -> None:
        result = session.run(phase, size, count, segment)
        record(result)
        _print_run(result)
        if result.errors or result.other_outcomes or result.created != result.observations:
            for line in result.errors[:10]:
                print(f"    error: {line}", file=sys.stderr)
            raise RunFailed(
                f"{phase} bundle={size}: {result.created} of {result.observations} CREATED, "
                f"{result.other_outcomes} other outcomes, {len(result.errors)} errors"
            )

    # The first calls pay for lazy imports, connection pools and cold caches in the server.
    warmup = args.warmup_calls * min(args.bundle_sizes)
    if warmup:
        one("warmup", min(args.bundle_sizes), warmup, warmup)
    for size in args.bundle_sizes:
        one("empty", size, measure, max(measure, 1))
    remaining = args.preload - session.stored
    if remaining > 0:
        one("preload", args.preload_bundle_size, remaining, args.segment)
    for size in args.bundle_sizes:
        one("preloaded", size, measure, max(measure, 1))


class RunFailed(RuntimeError):
    """A timed run saw gRPC errors or outcomes other than CREATED/CONTEXT."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    workdir: Path = args.workdir.resolve()
    (workdir / "runs").mkdir(parents=True, exist_ok=True)
    code_dir, code = snapshot_code(workdir, None if args.worktree else args.ref)
    check_snapshot(code_dir)
    # The generated stubs (and mutualrec.identity for the factory) come from the same snapshot
    # as the server; the factory itself lives in the repository's tests package.
    sys.path[:0] = [str(code_dir), str(REPO)]
    import mutualrec.v1.ingest_pb2

    if not Path(mutualrec.v1.ingest_pb2.__file__).resolve().is_relative_to(code_dir.resolve()):
        raise SystemExit(f"the client imports {mutualrec.v1.ingest_pb2.__file__}")
    if not hasattr(mutualrec.v1.ingest_pb2, "SubmitObservationsRequest"):
        raise SystemExit(f"mutualrec from {code} has no SubmitObservations (try --worktree)")
    print(f"benchmarking mutualrec from {code} ({code_dir})", flush=True)

    options = Options(
        workdir=workdir,
        code_dir=code_dir,
        pg_socket_dir=args.pg_host,
        pg_user=args.pg_user,
        pg_database=args.pg_database,
        keep=args.keep,
        profile_dir=None,
        profile_rate=100,
        profile_gil=False,
        fsync=not args.no_fsync,
        mutualrec_env=dict(item.split("=", 1) for item in args.mutualrec_env),
    )
    run_dir = Path(tempfile.mkdtemp(prefix="fhir-", dir=workdir / "runs"))
    run_dir.rmdir()
    server = FhirBenchServer(options, run_dir, processes=args.processes)
    results: list[PhaseResult] = []
    info = machine(workdir)
    info["postgres_server"] = postgres_version(args.pg_host, args.pg_user)
    header = (
        f"**SubmitObservations**, mutualrec {code}, PostgreSQL {info['postgres_server']}, "
        f"{args.clients} clients, {args.processes} server process(es), {args.bundle_type} "
        f"bundles; {info['nproc']} x {info['cpu']}, {info['mem_gib']} GiB"
    )
    failure = ""

    def save() -> None:
        table = markdown(results, header)
        if args.json:
            write_json(
                args.json,
                {
                    "command": [Path(sys.executable).name, "bench/fhir_bench.py", *argv],
                    "machine": info,
                    "mutualrec_code": code,
                    "clients": args.clients,
                    "processes": args.processes,
                    "bundle_type": args.bundle_type,
                    "fsync": not args.no_fsync,
                    "mutualrec_env": options.mutualrec_env,
                    "failure": failure,
                    "runs": [asdict(r) for r in results],
                    "markdown": table,
                },
            )

    try:
        server.start()
        print(f"server pid {server.process.pid if server.process else '?'} on {server.port}")
        session = Session(server, args)
        try:
            run_phases(session, args, results.append)
        except RunFailed as exc:
            failure = str(exc)
        stats: ProcessStats = server.stats()
        print(f"server at the end: VmHWM {stats.peak_rss_kib / 1024:.0f} MiB", flush=True)
    finally:
        server.stop()
        # The run directory goes with the cleanup; its log is what explains a failure.
        log = workdir / "last-server.log"
        with contextlib.suppress(OSError):
            shutil.copyfile(run_dir / "server.log", log)
        if args.keep:
            print(f"kept {run_dir} and database {args.pg_database}")
        else:
            cleanup(options)
    print(markdown(results, header))
    save()
    if failure:
        print(f"FAILED: {failure}; server log: {log}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
