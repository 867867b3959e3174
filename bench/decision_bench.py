#!/usr/bin/env python3
"""RecordDecision load benchmark on a synthetic city made by bench/city_gen.py (issue 22).

Per git ref and round (refs interleaved round by round), a fresh ``mutualrec serve``:

1. fresh checks through CheckOrder, of patients holding results reported in the last days
   (their lines are RECOGNIZABLE, so they take a decision);
2. decisions on those lines one after another from one client (latency alone);
3. decisions with ``--concurrency`` calls always in flight (closed loop, saturation): the
   decisions per second, latency, and the server's and PostgreSQL's CPU per decision.

Half the decisions accept, half decline for an emergency. The client runs on the same machine
(grpc.aio, one process); its CPU is reported too.

    .venv/bin/python bench/decision_bench.py --database bench_decisions \\
        --workdir /tmp/decisions-city --ref main decisions --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's directory is on sys.path, so the shared harness imports.
from harness import (
    MUTUALREC_CLI,
    START_TIMEOUT,
    ServerProcess,
    database_url,
    free_port,
    interleaved,
    last_line,
    latency_summary,
    log,
    mutualrec_env,
    postgres_cpu,
    process_tree_stats,
    run_cli,
    self_cpu,
    snapshot_code,
)

DEFAULT_SECRET = "mutualrec-bench-city-secret-0123456789abcdef"
LISTENING = re.compile(r"mutualrec listening on (\S+):(\d+)")


def recent_orders(args: argparse.Namespace, count: int) -> list[tuple[str, list[str]]]:
    """Up to ``count`` (resident ID, item codes) of patients with results of the last 6 days."""
    import psycopg

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from mutualrec.identity import parse_identity, patient_key

    numbers = (args.workdir / "patients.txt").read_text(encoding="ascii").split()
    keys = {
        patient_key(parse_identity("RESIDENT_ID_CARD", n), args.secret.encode()): n for n in numbers
    }
    with psycopg.connect(host=args.pg_host, user=args.pg_user, dbname=args.database) as conn:
        rows = conn.execute(
            "SELECT patient_key, array_agg(DISTINCT item_code) FROM recognition_result"
            " WHERE report_time > now() - interval '6 days' AND status = 'final'"
            " GROUP BY patient_key LIMIT %s",
            [count],
        ).fetchall()
    return [(keys[key], sorted(items)[:5]) for key, items in rows if key in keys]


async def make_checks(
    target: str, api_key: str, orders: list[tuple[str, list[str]]]
) -> list[tuple[str, int]]:
    """CheckOrder for each order (16 at a time): its (check id, line) RECOGNIZABLE lines."""
    import grpc

    from mutualrec.v1 import common_pb2, recognition_pb2, recognition_pb2_grpc

    lines: list[tuple[str, int]] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
        pending = iter(orders)

        async def worker() -> None:
            for number, codes in pending:
                reply = await stub.CheckOrder(
                    recognition_pb2.CheckOrderRequest(
                        patient=common_pb2.PatientIdentity(
                            document_type=common_pb2.RESIDENT_ID_CARD, document_number=number
                        ),
                        ordered_codes=codes,
                        context=recognition_pb2.ClinicalContext(order_id="BENCH"),
                    ),
                    metadata=(("authorization", f"Bearer {api_key}"),),
                    timeout=30,
                )
                lines.extend(
                    (reply.check_id, line.line)
                    for line in reply.lines
                    if line.verdict == recognition_pb2.RECOGNIZABLE
                )

        await asyncio.gather(*(worker() for _ in range(16)))
    return lines


async def decide(
    target: str, api_key: str, lines: list[tuple[str, int]], concurrency: int
) -> tuple[list[float], int, float]:
    """RecordDecision on each line, ``concurrency`` in flight: latencies, errors, seconds."""
    import grpc

    from mutualrec.v1 import recognition_pb2, recognition_pb2_grpc

    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
        pending = iter(enumerate(lines))

        async def worker() -> None:
            nonlocal errors
            for n, (check_id, line) in pending:
                accept = n % 2 == 0
                started = time.perf_counter()
                try:
                    await stub.RecordDecision(
                        recognition_pb2.RecordDecisionRequest(
                            check_id=check_id,
                            line=line,
                            decision=recognition_pb2.ACCEPTED
                            if accept
                            else recognition_pb2.DECLINED,
                            reason=0 if accept else recognition_pb2.EMERGENCY,
                        ),
                        metadata=(("authorization", f"Bearer {api_key}"),),
                        timeout=30,
                    )
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


def phase(
    server: ServerProcess,
    args: argparse.Namespace,
    target: str,
    api_key: str,
    lines: list,
    concurrency: int,
) -> dict[str, Any]:
    """One decision phase with its CPU accounting."""
    before = process_tree_stats(server.pid)
    pg_before, _ = postgres_cpu(args.database)
    client_before = self_cpu()
    with open("/proc/loadavg", encoding="ascii") as f:
        load = f.read().split()[0]
    latencies, errors, seconds = asyncio.run(decide(target, api_key, lines, concurrency))
    after = process_tree_stats(server.pid)
    # The backends of the city's database only: the other sessions' databases share the host.
    pg_after, ours = postgres_cpu(args.database)
    n = len(latencies)
    server_cpu = after.user_seconds + after.sys_seconds - before.user_seconds - before.sys_seconds
    pg_cpu = sum(pg_after[pid] - pg_before.get(pid, 0.0) for pid in ours)
    return {
        "concurrency": concurrency,
        "decisions": n,
        "errors": errors,
        "per_second": round(n / seconds, 1),
        "latency": latency_summary(latencies),
        "server_cpu_ms_per_decision": round(1000 * server_cpu / max(n, 1), 2),
        "postgres_cpu_ms_per_decision": round(1000 * pg_cpu / max(n, 1), 2),
        "client_cpu_ms_per_decision": round(1000 * (self_cpu() - client_before) / max(n, 1), 2),
        "loadavg_1min_before": load,
    }


def run_one(args: argparse.Namespace, ref: str, orders: list) -> dict[str, Any]:
    """A fresh server of ``ref``: checks, then the two decision phases."""
    code_dir, code = snapshot_code(args.scratch, ref)
    run_dir = Path(tempfile.mkdtemp(prefix="decide-", dir=args.scratch))
    env = mutualrec_env(
        code_dir,
        data_dir=str(run_dir / "data"),
        listen=f"127.0.0.1:{free_port()}",
        database_url=database_url(args.database, args.pg_host, args.pg_user),
        patient_key_secret=args.secret,
        auto_migrate="false",
    )
    institution = args.institution
    api_key = last_line(
        run_cli(
            env, code_dir, "admin", "issue-key", "--institution", institution, timeout=START_TIMEOUT
        )
    )
    server = ServerProcess(
        [sys.executable, *MUTUALREC_CLI, "serve"], run_dir / "server.log", env, cwd=code_dir
    )
    try:
        match = server.wait_for_line(LISTENING, START_TIMEOUT)
        target = f"127.0.0.1:{match[2]}"
        lines = asyncio.run(make_checks(target, api_key, orders))
        alone = args.alone
        if len(lines) < alone + args.decisions:
            raise SystemExit(f"only {len(lines)} recognizable lines; ask for fewer decisions")
        result = {
            "ref": ref,
            "code": code,
            "alone": phase(server, args, target, api_key, lines[:alone], 1),
            "loaded": phase(
                server,
                args,
                target,
                api_key,
                lines[alone : alone + args.decisions],
                args.concurrency,
            ),
        }
    finally:
        server.stop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="a database made by bench/city_gen.py")
    parser.add_argument("--workdir", type=Path, required=True, help="city_gen's workdir")
    parser.add_argument("--secret", default=DEFAULT_SECRET)
    parser.add_argument(
        "--institution", default="", help="asking institution (default: a tertiary)"
    )
    parser.add_argument("--ref", nargs="+", default=["HEAD"], help="git refs, interleaved")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checks", type=int, default=1500, help="CheckOrder calls per server")
    parser.add_argument("--alone", type=int, default=200, help="decisions one after another")
    parser.add_argument("--decisions", type=int, default=1500, help="decisions under load")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight under load")
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/mutualrec-decision-bench"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    if not args.institution:
        import psycopg

        with psycopg.connect(host=args.pg_host, user=args.pg_user, dbname=args.database) as conn:
            row = conn.execute(
                "SELECT code FROM institution WHERE level = 'tertiary' AND city = 'chongqing'"
                " ORDER BY code LIMIT 1"
            ).fetchone()
        assert row is not None
        args.institution = row[0]
    recent = recent_orders(args, args.checks)
    # Fewer patients than checks: each is checked again (a new check, new lines).
    orders = list(itertools.islice(itertools.cycle(recent), args.checks))
    log(f"{len(recent)} patients with recent results; asking as {args.institution}")
    results = []
    for number, ref in interleaved(args.rounds, args.ref):
        one = run_one(args, ref, orders)
        one["round"] = number
        results.append(one)
        for label in ("alone", "loaded"):
            p = one[label]
            log(
                f"round {number} {ref} {label} (c={p['concurrency']}): {p['per_second']}/s,"
                f" p50 {p['latency']['p50_ms']} ms, p99 {p['latency']['p99_ms']} ms,"
                f" server {p['server_cpu_ms_per_decision']} ms CPU/decision,"
                f" PG {p['postgres_cpu_ms_per_decision']} ms, errors {p['errors']},"
                f" load {p['loadavg_1min_before']}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
