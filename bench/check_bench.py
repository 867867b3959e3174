#!/usr/bin/env python3
"""CheckOrder load benchmark on a synthetic city made by bench/city_gen.py.

One ``mutualrec serve`` (``--processes`` worker processes) runs on the city's database with the
city's patient-key secret; an API key is issued for one tertiary institution with
``mutualrec admin issue-key``. A separate client process (grpc.aio, ``--channels`` channels
used round-robin) then sends ``CheckOrder`` calls open-loop at a fixed rate: call *i* is due at
``t0 + i / rate`` whether or not earlier calls have answered, and its latency is measured from
when it was due (so a client or server that falls behind shows in the latency, not in a lower
rate alone). Each call orders 5 distinct items for a random patient of ``patients.txt``: lab
items as catalog codes or as one of their LOINC codes, one imaging item in most calls; items
are drawn by how often the city holds them, so most calls find results.

With ``--door cds`` the same orders go to CDS Hooks' ``order-select`` over the HTTP door
instead (issue 21): an EHR key (ES384) is registered for the asking institution with
``mutualrec admin add-cds-client``, every call carries its own signed JWT (made before the load,
so signing costs the client nothing while it runs), the patient comes as prefetch with the
resident ID, and the orders as draft ServiceRequests coded with the catalog code or LOINC.
"Verdicts" then count cards and calls without one.

The first ``--warmup`` seconds are sent but not counted. Per rate the report gives the achieved
rate, latency median / p90 / p99 / max (ms), errors by gRPC status, the verdicts answered, the
CPU used by the server (process tree), by PostgreSQL (backends of the city's database, and all
PostgreSQL processes) and by the client, during the counted window, and the server's RSS.

Before the load, ``EXPLAIN (ANALYZE, BUFFERS)`` of the hot read for two real patients (one with
a typical number of rows, one busy), both the plain SQL and the statement that
``mutualrec.storage.recognition_index.results_for`` sends (when the benchmarked code has it);
during the load ``pg_stat_activity`` is sampled to show which statements the server is busy in.

mutualrec runs from a private copy of the package (``git archive`` of ``--ref``, default HEAD, or
the working tree with ``--worktree``), as every benchmark here does (bench/harness.py).

    .venv/bin/python bench/city_gen.py --database mutualrec_city_small \\
        --results 100000 --patients 10000
    .venv/bin/python bench/check_bench.py --database mutualrec_city_small --worktree \\
        --rate 200 --duration 10 --json /tmp/check.json
    .venv/bin/python bench/check_bench.py --database mutualrec_city --worktree \\
        --rates 250 500 1000 1500 --duration 30 --json /tmp/check-sweep.json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this file's directory is on sys.path, so the shared harness imports.
from harness import (
    MUTUALREC_CLI,
    START_TIMEOUT,
    RssSampler,
    ServerProcess,
    check_snapshot,
    client_env,
    code_options,
    database_url,
    env_option,
    extra_env,
    free_port,
    import_snapshot,
    last_line,
    log,
    machine,
    mutualrec_env,
    percentile,
    postgres_cpu,
    postgres_version,
    process_tree_stats,
    run_cli,
    self_cpu,
    snapshot_code,
    write_json,
)

DEFAULT_SECRET = "mutualrec-bench-city-secret-0123456789abcdef"
LISTENING = re.compile(r"(?:mutualrec|floor check) listening on (\S+):(\d+)")
FLOOR_SERVER = Path(__file__).resolve().parent / "floor_check_server.py"
# --server: the real service, or bench/floor_check_server.py as a floor under it.
SERVERS = {
    "mutualrec": [],
    "floor": ["--driver", "thread"],
    "floor-async": ["--driver", "async"],
    "transport": ["--no-sql"],
}
CALL_TIMEOUT = 10.0
ITEMS_PER_CALL = 5
CDS_ISSUER = "https://ehr.bench.example.org"
CDS_SERVICE = "order-select"
CATALOG_SYSTEM = "https://fhir.mutualrec.org/CodeSystem/recognition-item"
RESIDENT_ID_SYSTEM = "https://fhir.mutualrec.org/sid/resident-id-card"


# ---------------------------------------------------------------------------------------------
# Client process
# ---------------------------------------------------------------------------------------------


def _order_pool(numbers: Sequence[str], count: int, seed: int) -> list[tuple[str, list[str]]]:
    """``count`` (resident ID, 5 ordered codes) pairs, item mix like the city's."""
    from city_gen import ITEM_BOOST, LAB_WEIGHTS, MODALITY_WEIGHTS

    from mutualrec.matching.catalog import ItemCategory, packaged_catalog

    rng = random.Random(seed)
    items = packaged_catalog().items
    labs = [i for i in items if i.category is ItemCategory.LAB]
    imaging = [i for i in items if i.category is ItemCategory.IMAGING]
    lab_w = [LAB_WEIGHTS.get(i.code, 1.0) for i in labs]
    img_w = [MODALITY_WEIGHTS.get(i.modality, 1.0) * ITEM_BOOST.get(i.code, 1.0) for i in imaging]
    pool = []
    for _ in range(count):
        chosen: dict[str, Any] = {}
        want_imaging = rng.random() < 0.7
        while len(chosen) < ITEMS_PER_CALL - (1 if want_imaging else 0):
            item = rng.choices(labs, lab_w)[0]
            chosen.setdefault(item.code, item)
        if want_imaging:
            while len(chosen) < ITEMS_PER_CALL:
                item = rng.choices(imaging, img_w)[0]
                chosen.setdefault(item.code, item)
        codes = []
        for item in chosen.values():
            if item.loinc and rng.random() < 0.4:
                codes.append(rng.choice(item.loinc))
            else:
                codes.append(item.code)
        rng.shuffle(codes)
        pool.append((rng.choice(numbers), codes))
    return pool


def _cds_body(number: str, codes: Sequence[str]) -> bytes:
    """An order-select request for ``codes`` as draft orders of the patient ``number``."""
    orders = [
        {
            "resource": {
                "resourceType": "ServiceRequest",
                "id": f"sr-{n}",
                "status": "draft",
                "intent": "order",
                "code": {
                    "coding": [
                        {
                            # LOINC codes start with a digit, catalog codes with a letter.
                            "system": "http://loinc.org" if code[0].isdigit() else CATALOG_SYSTEM,
                            "code": code,
                        }
                    ]
                },
                "subject": {"reference": "Patient/bench"},
            }
        }
        for n, code in enumerate(codes)
    ]
    request = {
        "hookInstance": f"bench-{number}",
        "hook": CDS_SERVICE,
        "context": {
            "userId": "PractitionerRole/bench",
            "patientId": "bench",
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": orders},
            "selections": [f"ServiceRequest/sr-{n}" for n in range(len(codes))],
        },
        "prefetch": {
            "patient": {
                "resourceType": "Patient",
                "id": "bench",
                "identifier": [{"system": RESIDENT_ID_SYSTEM, "value": number}],
            }
        },
    }
    return json.dumps(request, ensure_ascii=False).encode("utf-8")


def _cds_tokens(key_pem: str, issuer: str, audience: str, count: int) -> list[str]:
    """``count`` JWTs of the bench EHR for ``audience``, each with its own id, valid 5 minutes."""
    import uuid

    import jwt
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(key_pem.encode("ascii"), password=None)
    now = int(time.time())
    claims = {"iss": issuer, "sub": "bench-ehr", "aud": audience, "iat": now}
    claims["exp"] = now + 300
    return [
        jwt.encode(
            {**claims, "jti": str(uuid.uuid4())},
            key,  # type: ignore[arg-type]
            algorithm="ES384",
            headers={"kid": "bench-ehr", "typ": "JWT"},
        )
        for _ in range(count)
    ]


async def _drive(config: dict[str, Any]) -> dict[str, Any]:
    import grpc

    from mutualrec.v1 import common_pb2, recognition_pb2, recognition_pb2_grpc

    rate = float(config["rate"])
    warmup = float(config["warmup"])
    duration = float(config["duration"])
    numbers = config["numbers"]
    pool = _order_pool(numbers, min(20_000, int(rate * (warmup + duration)) + 1), config["seed"])
    cds = config.get("door") == "cds"
    if cds:
        import httpx

        url = f"{config['http_base']}/cds-services/{CDS_SERVICE}"
        bodies = [_cds_body(number, codes) for number, codes in pool]
        tokens = _cds_tokens(
            config["ehr_key_pem"], config["ehr_issuer"], url, int(rate * (warmup + duration)) + 1
        )
        http = httpx.AsyncClient(
            timeout=CALL_TIMEOUT,
            limits=httpx.Limits(max_connections=int(config["channels"])),
        )
    requests = [
        recognition_pb2.CheckOrderRequest(
            patient=common_pb2.PatientIdentity(
                document_type=common_pb2.RESIDENT_ID_CARD, document_number=number
            ),
            ordered_codes=codes,
            context=recognition_pb2.ClinicalContext(
                order_id=f"BENCH{i:08d}", department="内科", emergency=False
            ),
        )
        for i, (number, codes) in enumerate(pool)
    ]
    metadata = (("authorization", f"Bearer {config['api_key']}"),)
    channels = [
        grpc.aio.insecure_channel(config["target"], options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(int(config["channels"]))
    ]
    for channel in channels:
        await asyncio.wait_for(channel.channel_ready(), START_TIMEOUT)
    stubs = [recognition_pb2_grpc.RecognitionServiceStub(c) for c in channels]
    verdict_name = recognition_pb2.Verdict.Name
    total_calls = int(rate * (warmup + duration))
    max_in_flight = int(config["max_in_flight"])
    loop = asyncio.get_running_loop()
    # Per counted call: (due, sent, done) offsets, status.
    latencies: list[float] = []
    service: list[float] = []
    # Per counted second of due time, its calls' latencies: a stall shows as one bad second,
    # a server short of CPU as a tail spread over all of them.
    by_second: collections.defaultdict[int, list[float]] = collections.defaultdict(list)
    statuses: collections.Counter[str] = collections.Counter()
    verdicts: collections.Counter[str] = collections.Counter()
    error_samples: list[str] = []
    skipped = 0
    in_flight = 0
    tasks: set[asyncio.Task[None]] = set()
    last_done = [0.0]

    async def one(i: int, due: float, counted: bool) -> None:
        nonlocal in_flight
        sent = loop.time()
        code = "OK"
        seen: list[str] = []
        try:
            if cds:
                answer = await http.post(
                    url,
                    content=bodies[i % len(bodies)],
                    headers={
                        "Authorization": f"Bearer {tokens[i]}",
                        "Content-Type": "application/json",
                    },
                )
                if answer.status_code == 200:
                    cards = answer.json()["cards"]
                    seen = ["CARD"] * len(cards) or ["NO_CARD"]
                else:
                    code = f"HTTP_{answer.status_code}"
                    if len(error_samples) < 10:
                        error_samples.append(f"{code}: {answer.text[:300]}")
            else:
                reply = await stubs[i % len(stubs)].CheckOrder(
                    requests[i % len(requests)], metadata=metadata, timeout=CALL_TIMEOUT
                )
                seen = [verdict_name(line.verdict) for line in reply.lines]
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            if len(error_samples) < 10:
                error_samples.append(f"{code}: {exc.details()}")
        except httpx.HTTPError as exc:
            code = type(exc).__name__
            if len(error_samples) < 10:
                error_samples.append(f"{code}: {exc}")
        done = loop.time()
        in_flight -= 1
        if counted:
            last_done[0] = max(last_done[0], done)
            statuses[code] += 1
            verdicts.update(seen)
            if code == "OK":
                latencies.append(done - due)
                service.append(done - sent)
                by_second[int(due - measure_from)].append(done - due)

    t0 = loop.time() + 0.05
    measure_from = t0 + warmup
    print("START", flush=True)
    measuring = False
    cpu_start = 0.0
    i = 0
    while i < total_calls:
        now = loop.time()
        if not measuring and now >= measure_from:
            measuring = True
            cpu_start = self_cpu()
            print("MEASURE_START", flush=True)
        due = t0 + i / rate
        if due > now:
            await asyncio.sleep(due - now)
            continue
        counted = due >= measure_from
        if in_flight >= max_in_flight:
            skipped += counted
        else:
            in_flight += 1
            task = asyncio.ensure_future(one(i, due, counted))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        i += 1
    sent_until = loop.time()
    if tasks:
        await asyncio.wait(set(tasks), timeout=CALL_TIMEOUT + 5)
    end = max(last_done[0], sent_until)
    print("MEASURE_END", flush=True)
    cpu_end = self_cpu()
    for channel in channels:
        await channel.close()
    if cds:
        await http.aclose()
    window = max(end - measure_from, 1e-9)
    counted_calls = sum(statuses.values())
    return {
        "rate": rate,
        "calls_counted": counted_calls,
        "skipped_client_saturated": skipped,
        "window_s": round(window, 3),
        "sending_lag_s": round(max(0.0, sent_until - (t0 + total_calls / rate)), 3),
        "achieved_rate": round(statuses.get("OK", 0) / window, 1),
        "latency_ms": {
            "median": round(1000 * percentile(latencies, 50), 2),
            "p90": round(1000 * percentile(latencies, 90), 2),
            "p99": round(1000 * percentile(latencies, 99), 2),
            "max": round(1000 * max(latencies, default=0.0), 2),
            "mean": round(1000 * statistics.fmean(latencies), 2) if latencies else 0.0,
        },
        "service_latency_ms": {
            "median": round(1000 * percentile(service, 50), 2),
            "p99": round(1000 * percentile(service, 99), 2),
        },
        "latency_by_second": [
            {
                "second": second,
                "calls": len(values),
                "median_ms": round(1000 * percentile(values, 50), 2),
                "max_ms": round(1000 * max(values), 2),
            }
            for second, values in sorted(by_second.items())
        ],
        "statuses": dict(statuses),
        "errors": {k: v for k, v in statuses.items() if k != "OK"},
        "error_samples": error_samples,
        "verdicts": dict(verdicts),
        "client_cpu_s": round(cpu_end - cpu_start, 2),
    }


def client_main(config_path: Path) -> int:
    """The client process: read its config, drive the load, write its result as JSON."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["numbers"] = Path(config["patients_file"]).read_text(encoding="ascii").split()
    result = asyncio.run(_drive(config))
    Path(config["out"]).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


# ---------------------------------------------------------------------------------------------
# Server, key, plans
# ---------------------------------------------------------------------------------------------


def server_env(
    args: argparse.Namespace, code_dir: Path, run_dir: Path, listen: str
) -> dict[str, str]:
    """Environment of the server and of the admin commands."""
    env = mutualrec_env(
        code_dir,
        data_dir=str(run_dir / "data"),
        listen=listen,
        database_url=database_url(args.database, args.pg_host, args.pg_user),
        patient_key_secret=args.secret,
        auto_migrate="false",
    )
    if args.processes > 1:
        env["MUTUALREC_PROCESSES"] = str(args.processes)
    return extra_env(env, args.mutualrec_env)


def server_argv(args: argparse.Namespace) -> list[str]:
    """The command of the server under load: ``mutualrec serve`` or the floor server."""
    if args.server == "mutualrec":
        return [sys.executable, *MUTUALREC_CLI, "serve"]
    conninfo = f"host={args.pg_host} user={args.pg_user} dbname={args.database}"
    return [
        sys.executable,
        str(FLOOR_SERVER),
        "--database-url",
        conninfo,
        "--secret",
        args.secret,
        "--processes",
        str(args.processes),
        *SERVERS[args.server],
    ]


def issue_key(env: dict[str, str], code_dir: Path, institution: str) -> str:
    """``mutualrec admin issue-key --institution CODE``: the token it prints (once)."""
    output = run_cli(
        env, code_dir, "admin", "issue-key", "--institution", institution, timeout=START_TIMEOUT
    )
    return last_line(output)


def register_ehr(
    env: dict[str, str], code_dir: Path, run_dir: Path, institution: str, issuer: str
) -> str:
    """A new EHR key (ES384) registered for ``institution`` as ``issuer``; its private key,
    PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    key = ec.generate_private_key(ec.SECP384R1())
    public = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    public.update(kid="bench-ehr", use="sig", alg="ES384")
    jwks = run_dir / "ehr.jwks.json"
    jwks.write_text(json.dumps({"keys": [public]}), encoding="utf-8")
    run_cli(
        env,
        code_dir,
        "admin",
        "add-cds-client",
        "--institution",
        institution,
        "--issuer",
        issuer,
        "--jwks",
        str(jwks),
        timeout=START_TIMEOUT,
    )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def probe_cds(args: argparse.Namespace, number: str) -> tuple[str, str]:
    """One order-select call for potassium and a chest CT: (status, body)."""
    import httpx

    url = f"{args.http_base}/cds-services/{CDS_SERVICE}"
    token = _cds_tokens(args.ehr_key_pem, args.ehr_issuer, url, 1)[0]
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            answer = httpx.post(
                url,
                content=_cds_body(number, ["LAB-K", "IMG-CT-CHEST"]),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                timeout=CALL_TIMEOUT,
            )
            break
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return ("OK" if answer.status_code == 200 else f"HTTP_{answer.status_code}", answer.text)


def probe(target: str, api_key: str, number: str) -> tuple[str, str]:
    """One CheckOrder call: (status name, details)."""
    import grpc

    from mutualrec.v1 import common_pb2, recognition_pb2, recognition_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
        try:
            reply = stub.CheckOrder(
                recognition_pb2.CheckOrderRequest(
                    patient=common_pb2.PatientIdentity(
                        document_type=common_pb2.RESIDENT_ID_CARD, document_number=number
                    ),
                    ordered_codes=["LAB-K", "2345-7", "LAB-CBC", "IMG-CT-CHEST", "LAB-ALT"],
                    context=recognition_pb2.ClinicalContext(order_id="PROBE", department="内科"),
                ),
                metadata=(("authorization", f"Bearer {api_key}"),),
                timeout=30,
            )
        except grpc.RpcError as exc:
            return exc.code().name, str(exc.details())
    lines = ", ".join(
        f"{line.ordered_code}={recognition_pb2.Verdict.Name(line.verdict)}" for line in reply.lines
    )
    return "OK", lines


def pick_patients(conn: Any, numbers: Sequence[str], secret: bytes) -> dict[str, dict[str, Any]]:
    """A typical and a busy patient among the first numbers, with their 5 most held items."""
    from mutualrec.identity import parse_identity, patient_key

    sample = {patient_key(parse_identity("RESIDENT_ID_CARD", n), secret): n for n in numbers[:400]}
    rows = conn.execute(
        "SELECT patient_key, count(*) FROM recognition_result WHERE patient_key = ANY(%s) "
        "GROUP BY patient_key ORDER BY count(*)",
        [list(sample)],
    ).fetchall()
    if not rows:
        raise SystemExit("none of the first 400 patients of patients.txt holds a result")
    chosen = {"typical": rows[len(rows) // 2], "busy": rows[-1]}
    out = {}
    for label, (key, count) in chosen.items():
        items = [
            r[0]
            for r in conn.execute(
                "SELECT item_code FROM recognition_result WHERE patient_key = %s "
                "GROUP BY item_code ORDER BY count(*) DESC, item_code LIMIT 5",
                [key],
            ).fetchall()
        ]
        for filler in ("LAB-K", "LAB-CBC", "LAB-GLU", "IMG-CT-CHEST", "LAB-ALT"):
            if len(items) < 5 and filler not in items:
                items.append(filler)
        out[label] = {"patient_key": key, "number": sample[key], "rows": count, "items": items}
    return out


def explain_plans(args: argparse.Namespace, patients: dict[str, dict[str, Any]]) -> list[dict]:
    """EXPLAIN (ANALYZE, BUFFERS) of the hot read: the server's SQL and results_for's statement."""
    import psycopg

    try:
        from mutualrec.storage.recognition_index import RESULTS_SQL
    except ImportError:  # --ref before the statement was public: results_for's plan only
        return _explain_results_for(args, patients)

    plans = []
    with psycopg.connect(host=args.pg_host, user=args.pg_user, dbname=args.database) as conn:
        for label, p in patients.items():
            rows = conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS) " + RESULTS_SQL, [p["patient_key"], p["items"]]
            ).fetchall()
            plans.append(
                {
                    "query": "hot SQL (= ANY)",
                    "patient": label,
                    "patient_rows": p["rows"],
                    "items": p["items"],
                    "sql": RESULTS_SQL,
                    "plan": "\n".join(r[0] for r in rows),
                }
            )
        conn.rollback()
    plans.extend(_explain_results_for(args, patients))
    return plans


def _explain_results_for(
    args: argparse.Namespace, patients: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The statement ``recognition_index.results_for`` executes, captured and explained."""
    try:
        from mutualrec.storage import recognition_index
    except ImportError:
        return []
    if not hasattr(recognition_index, "results_for"):
        return []
    from sqlalchemy import create_engine, event
    from sqlalchemy.orm import Session

    engine = create_engine(database_url(args.database, args.pg_host, args.pg_user))
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    out = []
    try:
        for label, p in patients.items():
            captured.clear()
            with Session(engine) as session:
                found = recognition_index.results_for(session, p["patient_key"], p["items"])
                session.rollback()
            if not captured:
                continue
            statement, parameters = captured[-1]
            raw = engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                plan = "\n".join(r[0] for r in cur.fetchall())
                raw.rollback()
            finally:
                raw.close()
            out.append(
                {
                    "query": "recognition_index.results_for",
                    "patient": label,
                    "patient_rows": p["rows"],
                    "items": p["items"],
                    "rows_returned": len(found),
                    "sql": statement,
                    "plan": plan,
                }
            )
    finally:
        engine.dispose()
    return out


class ActivitySampler:
    """Samples pg_stat_activity of the city's database: which statements are running."""

    def __init__(self, args: argparse.Namespace, interval: float = 0.05) -> None:
        self.args = args
        self.interval = interval
        self.counts: collections.Counter[str] = collections.Counter()
        self.waits: collections.Counter[str] = collections.Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psycopg

        try:
            conn = psycopg.connect(
                host=self.args.pg_host,
                user=self.args.pg_user,
                dbname=self.args.database,
                autocommit=True,
            )
        except psycopg.Error:
            return
        with conn:
            while not self._stop.is_set():
                rows = conn.execute(
                    "SELECT query, coalesce(wait_event_type || ':' || wait_event, 'CPU') "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'active' AND pid <> pg_backend_pid()"
                ).fetchall()
                self.samples += 1
                for query, wait in rows:
                    self.counts[" ".join(query.split())[:300]] += 1
                    self.waits[wait] += 1
                self._stop.wait(self.interval)

    def stop(self) -> dict[str, Any]:
        """Stop; the most seen statements and wait events (per sample: active backends)."""
        self._stop.set()
        self._thread.join(5)
        n = max(self.samples, 1)
        return {
            "samples": self.samples,
            "statements": [
                {"query": q, "active_per_sample": round(c / n, 3)}
                for q, c in self.counts.most_common(8)
            ],
            "waits": {w: round(c / n, 3) for w, c in self.waits.most_common(8)},
        }


# ---------------------------------------------------------------------------------------------
# Runs and report
# ---------------------------------------------------------------------------------------------


@dataclass
class RateResult:
    """One rate: what the client saw and what the processes used during the counted window."""

    target_rate: float
    achieved_rate: float
    calls: int
    ok: int
    errors: dict[str, int]
    skipped_client_saturated: int
    sending_lag_s: float
    window_s: float
    latency_ms: dict[str, float]
    service_latency_ms: dict[str, float]
    verdicts: dict[str, int]
    server_cpu_s: float
    server_cpu_pct: float
    server_rss_mib: float
    server_peak_rss_mib: float
    pg_db_cpu_s: float
    pg_db_cpu_pct: float
    pg_all_cpu_s: float
    pg_all_cpu_pct: float
    client_cpu_s: float
    client_cpu_pct: float
    loadavg_1m: float
    pg_activity: dict[str, Any] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    latency_by_second: list[dict[str, float]] = field(default_factory=list)


def run_rate(
    args: argparse.Namespace,
    rate: float,
    target: str,
    api_key: str,
    server: ServerProcess,
    code_dir: Path,
    run_dir: Path,
) -> RateResult:
    """Drive one rate from a client process; measure the server and PostgreSQL meanwhile."""
    out = run_dir / f"client-{rate:g}.json"
    config = {
        "target": target,
        "api_key": api_key,
        "rate": rate,
        "duration": args.duration,
        "warmup": args.warmup,
        "channels": args.channels,
        "max_in_flight": args.max_in_flight,
        "patients_file": str(args.workdir / "patients.txt"),
        "seed": args.seed + int(rate),
        "out": str(out),
        "door": args.door,
        "http_base": args.http_base,
        "ehr_key_pem": args.ehr_key_pem,
        "ehr_issuer": args.ehr_issuer,
    }
    config_path = run_dir / f"client-{rate:g}.config.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    client = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--client-config", str(config_path)],
        env=client_env(code_dir),
        cwd=code_dir,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None
    marks: dict[str, Any] = {}
    sampler: RssSampler | None = None
    activity: ActivitySampler | None = None
    for line in client.stdout:
        mark = line.strip()
        if mark == "MEASURE_START":
            marks["start"] = (
                time.perf_counter(),
                process_tree_stats(server.pid),
                postgres_cpu(args.database),
                os.getloadavg()[0],
            )
            sampler = RssSampler(server.pid, interval=0.25)
            activity = ActivitySampler(args)
        elif mark == "MEASURE_END":
            marks["end"] = (
                time.perf_counter(),
                process_tree_stats(server.pid),
                postgres_cpu(args.database),
                os.getloadavg()[0],
            )
    code = client.wait(timeout=CALL_TIMEOUT + 60)
    peak_rss = sampler.stop()[0] if sampler else 0
    pg_activity = activity.stop() if activity else {}
    if code != 0 or "start" not in marks or "end" not in marks:
        raise RuntimeError(f"client for rate {rate:g} failed (exit {code})")
    client_result = json.loads(out.read_text(encoding="utf-8"))
    (t0, s0, (pg0, _), _), (t1, s1, (pg1, ours1), load1) = marks["start"], marks["end"]
    wall = max(t1 - t0, 1e-9)
    pg_all = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())
    pg_db = sum(pg1[pid] - pg0.get(pid, 0.0) for pid in ours1 if pid in pg1)
    server_cpu = (s1.user_seconds + s1.sys_seconds) - (s0.user_seconds + s0.sys_seconds)
    statuses = client_result["statuses"]
    return RateResult(
        target_rate=rate,
        achieved_rate=client_result["achieved_rate"],
        calls=client_result["calls_counted"],
        ok=statuses.get("OK", 0),
        errors=client_result["errors"],
        skipped_client_saturated=client_result["skipped_client_saturated"],
        sending_lag_s=client_result["sending_lag_s"],
        window_s=client_result["window_s"],
        latency_ms=client_result["latency_ms"],
        service_latency_ms=client_result["service_latency_ms"],
        verdicts=client_result["verdicts"],
        server_cpu_s=round(server_cpu, 2),
        server_cpu_pct=round(100 * server_cpu / wall, 1),
        server_rss_mib=round(s1.rss_kib / 1024, 1),
        server_peak_rss_mib=round(max(peak_rss, s1.rss_kib) / 1024, 1),
        pg_db_cpu_s=round(pg_db, 2),
        pg_db_cpu_pct=round(100 * pg_db / wall, 1),
        pg_all_cpu_s=round(pg_all, 2),
        pg_all_cpu_pct=round(100 * pg_all / wall, 1),
        client_cpu_s=client_result["client_cpu_s"],
        client_cpu_pct=round(100 * client_result["client_cpu_s"] / wall, 1),
        loadavg_1m=round(load1, 2),
        pg_activity=pg_activity,
        error_samples=client_result["error_samples"],
        latency_by_second=client_result["latency_by_second"],
    )


def markdown(results: Sequence[RateResult], header: str) -> str:
    """The results as a markdown table."""
    lines = [
        header,
        "",
        "| target/s | achieved/s | calls | errors | median ms | p90 ms | p99 ms | max ms "
        "| server CPU % | server RSS MiB | PG CPU % (db / all) | client CPU % |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(r.errors.items())) or "0"
        if r.skipped_client_saturated:
            errors += f", {r.skipped_client_saturated} not sent (in-flight cap)"
        lat = r.latency_ms
        lines.append(
            f"| {r.target_rate:g} | {r.achieved_rate:.0f} | {r.calls} | {errors} "
            f"| {lat['median']:.1f} | {lat['p90']:.1f} | {lat['p99']:.1f} | {lat['max']:.1f} "
            f"| {r.server_cpu_pct:.0f} | {r.server_peak_rss_mib:.0f} "
            f"| {r.pg_db_cpu_pct:.0f} / {r.pg_all_cpu_pct:.0f} | {r.client_cpu_pct:.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--database", required=True, help="a database made by bench/city_gen.py")
    p.add_argument(
        "--workdir",
        type=Path,
        help="city_gen's workdir: patients.txt, city.json (default /tmp/mutualrec-city/DATABASE)",
    )
    p.add_argument("--secret", help="patient-key secret (default: city.json's, or city_gen's)")
    p.add_argument("--institution", help="code of the asking institution (default: a tertiary)")
    p.add_argument("--rate", type=float, default=1000.0, help="target calls per second")
    p.add_argument("--rates", type=float, nargs="+", help="sweep these rates (one server)")
    p.add_argument("--duration", type=float, default=30.0, help="counted seconds per rate")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds sent first, not counted")
    p.add_argument("--channels", type=int, default=8, help="gRPC channels of the client")
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=5000,
        help="calls the client keeps open at most; beyond, due calls are not sent (counted)",
    )
    p.add_argument("--processes", type=int, default=1, help="MUTUALREC_PROCESSES of the server")
    p.add_argument(
        "--door",
        choices=("grpc", "cds"),
        default="grpc",
        help="cds: CDS Hooks order-select over the HTTP door instead of CheckOrder over gRPC",
    )
    p.add_argument(
        "--server",
        choices=tuple(SERVERS),
        default="mutualrec",
        help="diagnostic: load bench/floor_check_server.py instead of mutualrec, keying the "
        "patient and running the check's two statements (floor, floor-async: threads or the "
        "async driver) or nothing but the transport",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--pg-host", default="/var/run/postgresql")
    p.add_argument("--pg-user", default="postgres")
    p.add_argument(
        "--scratch",
        type=Path,
        default=Path(tempfile.gettempdir()) / "mutualrec-check-bench",
        help="code snapshot, server data directory and logs",
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="write every result here")
    env_option(p, "MUTUALREC_BLOCKING_WORKERS=16")
    p.add_argument("--skip-explain", action="store_true", help="no EXPLAIN before the load")
    code_options(p)
    args = p.parse_args(argv)
    if args.processes < 1 or args.channels < 1 or args.duration <= 0 or args.warmup < 0:
        p.error("--processes, --channels, --duration must be positive, --warmup not negative")
    args.rates = args.rates or [args.rate]
    if min(args.rates) <= 0:
        p.error("rates must be positive")
    args.workdir = (args.workdir or Path("/tmp/mutualrec-city") / args.database).resolve()
    manifest: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        manifest = json.loads((args.workdir / "city.json").read_text(encoding="utf-8"))
    args.city = manifest
    if args.secret is None:
        args.secret = manifest.get("secret", DEFAULT_SECRET)
    if not (args.workdir / "patients.txt").exists():
        p.error(f"no patients.txt in {args.workdir} (run bench/city_gen.py, or give --workdir)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "--client-config":
        return client_main(Path(argv[1]))
    args = parse_args(argv)
    scratch: Path = args.scratch.resolve()
    (scratch / "runs").mkdir(parents=True, exist_ok=True)
    code_dir, code = snapshot_code(scratch, None if args.worktree else args.ref)
    check_snapshot(code_dir)
    import_snapshot(code_dir)
    log(f"benchmarking mutualrec from {code} ({code_dir})")

    import psycopg

    numbers = (args.workdir / "patients.txt").read_text(encoding="ascii").split()
    with psycopg.connect(host=args.pg_host, user=args.pg_user, dbname=args.database) as conn:
        held = conn.execute(
            "SELECT (SELECT count(*) FROM recognition_result), "
            "(SELECT count(*) FROM patient), (SELECT count(*) FROM institution)"
        ).fetchone()
        assert held is not None
        institution = (
            args.institution
            or conn.execute(
                "SELECT code FROM institution WHERE level = 'tertiary' AND city = 'chongqing' "
                "ORDER BY code LIMIT 1"
            ).fetchone()[0]
        )
        patients = pick_patients(conn, numbers, args.secret.encode("utf-8"))
    log(
        f"{args.database}: {held[0]:,} results, {held[1]:,} patients, {held[2]} institutions; "
        f"asking as {institution}"
    )

    plans: list[dict[str, Any]] = []
    if not args.skip_explain:
        plans = explain_plans(args, patients)
        for plan in plans:
            print(
                f"\n-- {plan['query']}, {plan['patient']} patient ({plan['patient_rows']} rows), "
                f"items {plan['items']}\n{plan['sql']}\n{plan['plan']}\n",
                flush=True,
            )

    run_dir = Path(tempfile.mkdtemp(prefix="check-", dir=scratch / "runs"))
    listen = f"127.0.0.1:{free_port()}"
    env = server_env(args, code_dir, run_dir, listen)
    api_key = issue_key(env, code_dir, institution) if args.server == "mutualrec" else "unused"
    args.http_base, args.ehr_key_pem, args.ehr_issuer = "", "", ""
    if args.door == "cds":
        http_listen = f"127.0.0.1:{free_port()}"
        env["MUTUALREC_HTTP_LISTEN"] = http_listen
        args.http_base = f"http://{http_listen}"
        # An issuer of its own per run: registrations stay in the city's database.
        args.ehr_issuer = f"{CDS_ISSUER}/{run_dir.name}"
        args.ehr_key_pem = register_ehr(env, code_dir, run_dir, institution, args.ehr_issuer)
    info = machine(scratch)
    info["postgres_server"] = postgres_version(args.pg_host, args.pg_user)
    results: list[RateResult] = []
    failure = ""
    probe_result: tuple[str, str] = ("", "")
    server = ServerProcess(server_argv(args), run_dir / "server.log", env, cwd=code_dir)
    try:
        match = server.wait_for_line(LISTENING, START_TIMEOUT)
        target = f"127.0.0.1:{match[2]}"
        log(f"server pid {server.pid} on {target}, {args.processes} process(es)")
        probe_result = (
            probe_cds(args, patients["typical"]["number"])
            if args.door == "cds"
            else probe(target, api_key, patients["typical"]["number"])
        )
        log(f"probe CheckOrder: {probe_result[0]} {probe_result[1][:300]}")
        if probe_result[0] != "OK":
            failure = f"CheckOrder answers {probe_result[0]}: {probe_result[1]}"
        else:
            for rate in args.rates:
                log(f"rate {rate:g}/s: {args.warmup:g} s warmup + {args.duration:g} s")
                result = run_rate(args, rate, target, api_key, server, code_dir, run_dir)
                results.append(result)
                lat = result.latency_ms
                log(
                    f"  achieved {result.achieved_rate:.0f}/s, median {lat['median']:.1f} ms, "
                    f"p99 {lat['p99']:.1f} ms, errors {result.errors or 0}, "
                    f"server CPU {result.server_cpu_pct:.0f} %, PG {result.pg_db_cpu_pct:.0f} %"
                )
    except RuntimeError as exc:
        failure = str(exc)
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            shutil.copyfile(run_dir / "server.log", scratch / "last-server.log")

    header = (
        f"**{'CDS Hooks order-select' if args.door == 'cds' else 'CheckOrder'}**, "
        f"{args.server} {code}, PostgreSQL {info.get('postgres_server', '?')}, "
        f"{args.database} ({held[0]:,} results, {held[1]:,} patients), {args.processes} server "
        f"process(es), {args.channels} client channels, {ITEMS_PER_CALL} items per call, "
        f"{args.duration:g} s per rate after {args.warmup:g} s warmup; "
        f"{info['nproc']} x {info['cpu']}, {info['mem_gib']} GiB"
    )
    table = markdown(results, header)
    print("\n" + table)
    for r in results:
        print(f"\nverdicts at {r.target_rate:g}/s: {r.verdicts}")
        if r.pg_activity.get("statements"):
            print("busiest statements (active backends per sample):")
            for s in r.pg_activity["statements"][:4]:
                print(f"  {s['active_per_sample']:.2f}  {s['query'][:160]}")
    if args.json:
        write_json(
            args.json,
            {
                "command": [Path(sys.executable).name, "bench/check_bench.py", *argv],
                "machine": info,
                "mutualrec_code": code,
                "database": args.database,
                "city": {k: v for k, v in args.city.items() if k != "secret"},
                "held": {"results": held[0], "patients": held[1], "institutions": held[2]},
                "institution": institution,
                "server": args.server,
                "door": args.door,
                "processes": args.processes,
                "channels": args.channels,
                "mutualrec_env": args.mutualrec_env,
                "probe": probe_result,
                "plans": plans,
                "failure": failure,
                "runs": [asdict(r) for r in results],
                "markdown": table,
            },
        )
    if failure:
        print(f"FAILED: {failure}; server log: {scratch / 'last-server.log'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
