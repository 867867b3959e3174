#!/usr/bin/env python3
"""ImagingService benchmark: ListStudies on a large synthetic index, Orthanc's study lookup by
PatientID as the peer, and the time to the first thumbnail of a fresh 300-instance CT study.

Subcommands (each can add its figures to one JSON file with ``--json FILE``; ``report FILE``
prints the tables of everything gathered there):

``generate``
    A PostgreSQL database migrated to head with ``mutualrec db upgrade``, then bulk-loaded with
    COPY: ``--institutions`` institutions, patients (most with 1 to 5 studies: a geometric
    number, mean studies/patients), ``--studies`` studies over ``--years`` years with their sort
    key, counts and sizes, 1 to 4 series each (modality, body part, contrast), recognition rows
    (``study:<uid>``, one per catalog item the study is) for ``--recognized`` of them, and the
    ``patient`` rows. ``--bench-patients`` patients hold exactly ``--bench-studies`` studies
    each, spread over the years; their resident ID numbers are valid (check digit), so patient
    tokens can be minted for them. No instance rows: listing a history never reads them (the
    counts it shows are kept on the study row). Secondary indexes and unique constraints are
    dropped for the load and built again with their own definitions; VACUUM ANALYZE at the end.
    ``<workdir>/<database>/manifest.json`` records the secret and the benchmark patients.

``list``
    For each database given (in interleaved ``--rounds``): ``mutualrec serve`` on it, patient
    tokens minted locally for its benchmark patients, then a separate client process calls
    ListStudies: the first page (20), a page in the middle (page 6 of 10, reached with page
    tokens), a page of 100, a modality filter (CT) and the first page of "typical" patients
    (1 to 5 studies), sequentially (one client, one persistent channel) and with
    ``--concurrency`` closed-loop clients (a channel each); warm-up calls first. Before each
    timed phase it waits (up to ``--quiet-timeout``) for the machine to be quiet, and it records
    the CPU used meanwhile by the server, PostgreSQL, the client and everything else. Before the
    servers: EXPLAIN (ANALYZE, BUFFERS) of the statements ``history_index.patient_studies``
    sends, and that function's own latency in-process (the database and ORM share of a call).

``orthanc``
    Orthanc (Debian's ``orthanc`` package, default SQLite index, fresh storage) loaded over one
    keep-alive HTTP connection (``POST /instances``) with one small Secondary Capture instance
    per study: a patient with ``--small-studies`` studies, the benchmark patient with
    ``--bench-studies``, then background patients, in that order, up to each of ``--sizes``
    studies; at each size ``POST /tools/find`` (Level Study, PatientID) is timed, with and
    without ``"Expand": true``. Orthanc listens on every interface, so by default this runs in a
    new network namespace with only a loopback interface (``unshare --net``), as
    bench/ingest_bench.py does; RemoteAccessAllowed is false and the DICOM server is off.

``thumbnail``
    A fresh database and server; ``--studies`` CT studies of ``--instances`` 512x512 instances
    written by dicom_samples/make_samples.py (new UIDs each), uploaded with
    ``mutualrec.client.upload.upload_study``; right after each upload, as the patient: GetStudy,
    then GetThumbnail of its first series (rendered on this first request) and ``--repeats``
    more (served from the object store).

mutualrec runs from a private copy of the package (the working tree by default, or ``git
archive`` of ``--ref``), so edits made while a benchmark runs do not affect it.

    .venv/bin/python bench/imaging_bench.py generate --ref 8378e8a \\
        --database mutualrec_bench_imaging_20k --studies 20000 --json bench/results/imaging.json
    .venv/bin/python bench/imaging_bench.py generate --ref 8378e8a \\
        --database mutualrec_bench_imaging_1m --studies 1000000 --json bench/results/imaging.json
    .venv/bin/python bench/imaging_bench.py list --ref 8378e8a \\
        --database mutualrec_bench_imaging_20k mutualrec_bench_imaging_1m --rounds 2 \\
        --calls 2000 --warmup 200 --concurrent-calls 2000 --json bench/results/imaging.json
    .venv/bin/python bench/imaging_bench.py orthanc --sizes 20 1000 5000 20000 50000 \\
        --json bench/results/imaging.json
    .venv/bin/python bench/imaging_bench.py thumbnail --ref 8378e8a --studies 5 \\
        --json bench/results/imaging.json
    .venv/bin/python bench/imaging_bench.py report bench/results/imaging.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import io
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script, this file's directory is on sys.path, so the sibling benchmarks import.
import harness
import numpy as np
from city_gen import Inst, copy_text, make_institutions, make_resident_ids, result_columns
from harness import (
    REPO,
    START_TIMEOUT,
    Profiler,
    ServerProcess,
    check_snapshot,
    client_env,
    enter_netns,
    env_option,
    extra_env,
    free_port,
    git_head,
    import_snapshot,
    interleaved,
    last_line,
    log,
    loopback_only,
    machine,
    mutualrec_env,
    percentile,
    postgres_cpu,
    process_tree_stats,
    read_json,
    run_cli,
    self_cpu,
    serve,
    snapshot_code,
    summarize_profile,
    table_columns,
    tree_dirty,
    write_json,
)

MAKE_SAMPLES = REPO / "dicom_samples" / "make_samples.py"
DB_PREFIX = "mutualrec_bench_imaging"
DEFAULT_SECRET = "mutualrec-bench-imaging-secret-0123456789abcdef"
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "mutualrec-bench-imaging"
NETNS_ENV = "MUTUALREC_IMAGING_BENCH_IN_NETNS"
CALL_TIMEOUT = 30.0
CHUNK = 50_000
# Our own UID root for synthetic studies (bench/city_gen.py uses ...1151.<n>).
UID_ROOT = "1.2.826.0.1.3680043.10.1151.9."
# DICOM dates and times are Asia/Shanghai wall-clock time (UTC+8, no DST).
LOCAL_OFFSET_S = 8 * 3600
# A hospital in make_samples.py's bench CT study (the uploading institution's code).
THUMB_INSTITUTION = ("H500103001", "CQ YUZHONG DEMO PEOPLES HOSPITAL", "Yuzhong", "tertiary")

# How often each modality is seen in a study, and catalog items seen more than others.
MODALITY_WEIGHTS = {"CT": 4.0, "DX": 3.0, "US": 3.0, "MR": 1.2, "MG": 0.6, "NM": 0.2, "ECG": 0.5}
ITEM_BOOST = {"IMG-CT-CHEST": 4.0, "IMG-DX-CHEST-PA": 3.0, "IMG-US-ABD": 2.0, "IMG-CT-HEAD": 2.0}


@dataclass(frozen=True)
class ModalityPlan:
    """Series per study, instances per study and bytes per instance of one modality."""

    series: tuple[int, int]
    instances: tuple[int, int]
    instance_bytes: int
    series_names: tuple[str, ...]


MODALITY_PLANS = {
    "CT": ModalityPlan((2, 4), (150, 600), 526_000, ("Topogram", "Axial 5.0", "Axial 1.25", "MPR")),
    "MR": ModalityPlan((3, 4), (200, 1200), 135_000, ("Localizer", "T1 AX", "T2 AX", "FLAIR")),
    "DX": ModalityPlan((1, 2), (1, 3), 7_500_000, ("PA", "LAT")),
    "MG": ModalityPlan((1, 2), (4, 5), 22_000_000, ("CC", "MLO")),
    "US": ModalityPlan((1, 1), (10, 60), 650_000, ("US",)),
    "ECG": ModalityPlan((1, 1), (1, 2), 280_000, ("12-lead",)),
    "NM": ModalityPlan((1, 2), (2, 20), 140_000, ("Static", "SPECT")),
}
SR_BYTES = 30_000
# NULL in COPY text format.
NULL = "\\N"


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50 / p90 / p99 / max / mean of latencies in seconds, as milliseconds."""
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    return {
        "p50": round(1000 * percentile(values, 50), 3),
        "p90": round(1000 * percentile(values, 90), 3),
        "p99": round(1000 * percentile(values, 99), 3),
        "max": round(1000 * max(values), 3),
        "mean": round(1000 * statistics.fmean(values), 3),
    }


def _terminate(signum: int, _frame: Any) -> None:
    """SIGTERM ends the benchmark like Ctrl-C, so every ``finally`` cleans up."""
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------------------------------------
# Code snapshot, PostgreSQL, results file
# ---------------------------------------------------------------------------------------------


def use_snapshot(workdir: Path, ref: str | None) -> tuple[Path, str]:
    """A private copy of the package (working tree, or ``ref``), first on this process's path."""
    code_dir, code = snapshot_code(workdir, ref)
    check_snapshot(code_dir)
    import_snapshot(code_dir)
    log(f"benchmarking mutualrec from {code} ({code_dir})")
    return code_dir, code


def git_commit() -> dict[str, Any]:
    """HEAD's full hash and whether the package's working tree differs from it."""
    return {"head": git_head(), "working_tree_dirty": tree_dirty("mutualrec", "proto")}


def pg_connect(args: argparse.Namespace, dbname: str, *, autocommit: bool = True) -> Any:
    """A psycopg connection to ``dbname`` on the benchmark's PostgreSQL."""
    import psycopg

    return psycopg.connect(
        host=args.pg_host,
        port=args.pg_port,
        user=args.pg_user,
        dbname=dbname,
        autocommit=autocommit,
    )


def database_url(args: argparse.Namespace, name: str) -> str:
    """The SQLAlchemy URL the server uses for ``name``."""
    return harness.database_url(name, args.pg_host, args.pg_user, args.pg_port)


def check_database_name(name: str) -> None:
    """Refuse to create or drop a database that is not this benchmark's."""
    if not name.startswith(DB_PREFIX) or not re.fullmatch(r"[a-z0-9_]+", name):
        raise SystemExit(f"the database name must start with {DB_PREFIX} (a-z, 0-9, _): {name!r}")


def fresh_database(args: argparse.Namespace, name: str) -> None:
    """Drop and create ``name``."""
    check_database_name(name)
    with pg_connect(args, args.pg_maintenance_db) as conn:
        harness.recreate_database(conn, name)


def drop_database(args: argparse.Namespace, name: str) -> None:
    """Drop ``name`` if it exists."""
    check_database_name(name)
    with pg_connect(args, args.pg_maintenance_db) as conn:
        harness.drop_database(conn, name)


def server_env(
    args: argparse.Namespace, code_dir: Path, run_dir: Path, database: str, secret: str
) -> dict[str, str]:
    """Environment of ``mutualrec serve`` and of the admin commands."""
    return mutualrec_env(
        code_dir,
        data_dir=str(run_dir / "data"),
        # A fixed port: several server processes (MUTUALREC_PROCESSES) share it.
        listen=f"127.0.0.1:{free_port()}",
        database_url=database_url(args, database),
        patient_key_secret=secret,
        auto_migrate="false",
        parse_workers="0",
    )


def start_server(env: dict[str, str], code_dir: Path, log_path: Path) -> tuple[ServerProcess, str]:
    """``mutualrec serve``; the process and its ``host:port`` once it listens."""
    server, target = serve(env, code_dir, log_path)
    log(f"server pid {server.pid} listening on {target}")
    return server, target


def merge_json(path: Path | None, section: str, key: str | None, value: Any) -> None:
    """Put ``value`` at ``section`` (or ``section.key``) of the results file, keeping the rest."""
    if path is None:
        return
    doc = read_json(path)
    doc["machine"] = machine(DEFAULT_WORKDIR if DEFAULT_WORKDIR.exists() else Path("/tmp"))
    with contextlib.suppress(Exception):
        doc["machine"]["postgres_server"] = postgres_version_cached()
    if key is None:
        doc[section] = value
    else:
        doc.setdefault(section, {})[key] = value
    write_json(path, doc)
    log(f"results written to {path} ({section}{'.' + key if key else ''})")


_PG_VERSION: list[str] = []


def postgres_version(args: argparse.Namespace) -> str:
    """``SHOW server_version`` of the benchmark's PostgreSQL (remembered for the results)."""
    with pg_connect(args, args.pg_maintenance_db) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    _PG_VERSION[:] = [str(row[0]) if row else ""]
    return _PG_VERSION[0]


def postgres_version_cached() -> str:
    """The version :func:`postgres_version` read, if any."""
    return _PG_VERSION[0] if _PG_VERSION else ""


def provenance(argv: Sequence[str], code: str) -> dict[str, Any]:
    """The command, the code benchmarked and when."""
    return {
        "command": [Path(sys.executable).name, "bench/imaging_bench.py", *argv],
        "mutualrec_code": code,
        "repository_at_finish": git_commit(),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImagingItem:
    """A catalog imaging item as the generator uses it."""

    code: str
    name_en: str
    modality: str
    body_part: str
    contrast: bool
    satisfies: tuple[str, ...]


def imaging_items() -> tuple[list[ImagingItem], np.ndarray]:
    """The packaged catalog's imaging items and how often a study is each (sums to 1)."""
    from mutualrec.matching.catalog import ItemCategory, packaged_catalog

    items = [
        ImagingItem(
            i.code, i.name_en, i.modality, i.body_part, i.contrast, tuple(sorted(i.satisfies))
        )
        for i in packaged_catalog().items
        if i.category is ItemCategory.IMAGING and i.modality in MODALITY_PLANS
    ]
    weights = np.array(
        [MODALITY_WEIGHTS[i.modality] * ITEM_BOOST.get(i.code, 1.0) for i in items], dtype=float
    )
    by_modality: dict[str, float] = {}
    for item, weight in zip(items, weights, strict=True):
        by_modality[item.modality] = by_modality.get(item.modality, 0.0) + float(weight)
    # Each modality's share is its weight, however many items it has.
    shares = np.array(
        [
            w / by_modality[i.modality] * MODALITY_WEIGHTS[i.modality]
            for i, w in zip(items, weights, strict=True)
        ]
    )
    return items, shares / shares.sum()


def studies_per_patient(
    patients: int, studies: int, cap: int, rng: np.random.Generator
) -> np.ndarray:
    """How many studies each of ``patients`` holds: at least 1, geometric, summing to
    ``studies``, at most ``cap``."""
    if studies < patients or studies > patients * cap:
        raise SystemExit(
            f"{studies} studies cannot be shared by {patients} patients (1 to {cap} each)"
        )
    counts = np.minimum(rng.geometric(patients / studies, size=patients), cap).astype(np.int64)
    while (diff := studies - int(counts.sum())) != 0:
        if diff > 0:
            np.add.at(counts, rng.integers(0, patients, size=diff), 1)
            np.minimum(counts, cap, out=counts)
        else:
            above = np.flatnonzero(counts > 1)
            take = rng.choice(above, size=min(-diff, len(above)), replace=False)
            counts[take] -= 1
    return counts


def table_indexes(conn: Any, table: str) -> list[tuple[str, str, str]]:
    """(kind, name, definition) of the table's unique constraints and other secondary indexes
    (not the primary key), as PostgreSQL would re-create them."""
    out: list[tuple[str, str, str]] = []
    for name, definition in conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'u' ORDER BY conname",
        [table],
    ).fetchall():
        out.append(("constraint", name, definition))
    for name, definition in conn.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary AND NOT EXISTS ("
        "  SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid "
        "  AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x')) ORDER BY 1",
        [table],
    ).fetchall():
        out.append(("index", name, definition))
    return out


def drop_indexes(conn: Any, table: str, indexes: Sequence[tuple[str, str, str]]) -> None:
    """Drop what :func:`table_indexes` listed."""
    for kind, name, _ in indexes:
        if kind == "constraint":
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        else:
            conn.execute(f'DROP INDEX "{name}"')


def build_indexes(
    conn: Any, table: str, indexes: Sequence[tuple[str, str, str]], timings: dict[str, float]
) -> None:
    """Create again what :func:`drop_indexes` dropped, with the same names and definitions."""
    for kind, name, definition in indexes:
        t0 = time.perf_counter()
        if kind == "constraint":
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        else:
            conn.execute(definition)
        timings[f"index {name}"] = round(time.perf_counter() - t0, 1)
        log(f"  {name}: {timings[f'index {name}']:.1f} s")


@dataclass
class StudyPlan:
    """Every generated study, in id order (= the order they were taken in), as arrays."""

    patient: np.ndarray  # index into the patient keys
    offset_s: np.ndarray  # seconds from the first day's local midnight
    unknown_time: np.ndarray
    institution: np.ndarray  # institution ids
    item: np.ndarray  # index into the imaging items


def plan_studies(
    counts: np.ndarray,
    insts: Sequence[Inst],
    items_p: np.ndarray,
    days: int,
    rng: np.random.Generator,
) -> StudyPlan:
    """Times, institutions and items of every study; sorted by start time, as ingest adds them."""
    total = int(counts.sum())
    patient = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    day = rng.integers(0, days, size=total, dtype=np.int64)
    # Most studies in working hours, some at night (emergencies); a few without a time.
    working = rng.integers(7 * 3600 + 1800, 20 * 3600, size=total)
    anytime = rng.integers(0, 86400, size=total)
    tod = np.where(rng.random(total) < 0.88, working, anytime)
    unknown = rng.random(total) < 0.02
    tod[unknown] = 0
    offset = day * 86400 + tod
    order = np.lexsort((patient, offset))
    patient, offset, unknown = patient[order], offset[order], unknown[order]
    # Imaging comes mostly from tertiary hospitals; a patient mostly returns to one of them.
    level = {"tertiary": 100.0, "secondary": 10.0, "primary": 0.15}
    weight = rng.lognormal(0.0, 0.5, size=len(insts)) * np.array([level[i.level] for i in insts])
    cdf = np.cumsum(weight) / weight.sum()
    ids = np.array([i.id for i in insts], dtype=np.int64)
    home = ids[np.minimum(np.searchsorted(cdf, rng.random(len(counts))), len(ids) - 1)]
    other = ids[np.minimum(np.searchsorted(cdf, rng.random(total)), len(ids) - 1)]
    institution = np.where(rng.random(total) < 0.6, home[patient], other)
    item_cdf = np.cumsum(items_p)
    item = np.minimum(np.searchsorted(item_cdf, rng.random(total)), len(items_p) - 1)
    return StudyPlan(patient, offset, unknown, institution, item)


@dataclass
class Blocks:
    """COPY text of one chunk of studies and what goes with them."""

    studies: str
    series: str
    results: str
    study_rows: int
    series_rows: int
    result_rows: int


def study_blocks(
    plan: StudyPlan,
    keys: Sequence[str],
    items: Sequence[ImagingItem],
    first_day: dt.date,
    recognized: float,
    rng: np.random.Generator,
) -> Iterator[Blocks]:
    """COPY text blocks of studies, their series and recognition rows, in id order."""
    base = np.datetime64(first_day.isoformat(), "s")
    plans = [MODALITY_PLANS[i.modality] for i in items]
    series_id = 0
    result_id = 0
    total = len(plan.patient)
    for start in range(0, total, CHUNK):
        stop = min(total, start + CHUNK)
        n = stop - start
        local = base + plan.offset_s[start:stop].astype("timedelta64[s]")
        utc = local - np.timedelta64(LOCAL_OFFSET_S, "s")
        created = utc + rng.integers(600, 7200, size=n).astype("timedelta64[s]")
        local_s = np.datetime_as_string(local, unit="s").tolist()
        utc_s = np.datetime_as_string(utc, unit="s").tolist()
        created_s = np.datetime_as_string(created, unit="s").tolist()
        r_series = rng.random(n).tolist()
        r_instances = rng.random(n).tolist()
        r_sr = rng.random(n).tolist()
        r_recognized = rng.random(n).tolist()
        r_code = rng.random(n).tolist()
        studies: list[str] = []
        series: list[str] = []
        results: list[str] = []
        for j, (p, unknown, inst, it) in enumerate(
            zip(
                plan.patient[start:stop].tolist(),
                plan.unknown_time[start:stop].tolist(),
                plan.institution[start:stop].tolist(),
                plan.item[start:stop].tolist(),
                strict=True,
            )
        ):
            sid = start + j + 1
            uid = f"{UID_ROOT}{sid}"
            item = items[it]
            mp = plans[it]
            key = keys[p]
            date, clock = local_s[j][:10], local_s[j][11:]
            lo, hi = mp.series
            n_series = lo + int(r_series[j] * (hi - lo + 1))
            ilo, ihi = mp.instances
            n_inst = ilo + int(r_instances[j] * (ihi - ilo + 1))
            # (modality, body part, contrast, instances, bytes per instance, name)
            parts: list[tuple[str, str, bool, int, int, str]] = []
            if item.modality == "CT" and n_series >= 2:
                parts.append(("CT", item.body_part, False, 2, mp.instance_bytes, "Topogram"))
                imaging_series = n_series - 1
                remaining = max(imaging_series, n_inst - 2)
            else:
                imaging_series = n_series
                remaining = max(imaging_series, n_inst)
            for k in range(imaging_series):
                share = remaining // imaging_series + (1 if k < remaining % imaging_series else 0)
                contrast = item.contrast and (k > 0 or imaging_series == 1)
                name = mp.series_names[min(len(parts), len(mp.series_names) - 1)]
                parts.append(
                    (item.modality, item.body_part, contrast, share, mp.instance_bytes, name)
                )
            if item.modality in ("CT", "MR") and n_series < 4 and r_sr[j] < 0.1:
                # A dose report / structured report series beside the images.
                parts.append(("SR", "", False, 1, SR_BYTES, "Dose Report"))
            count = sum(part[3] for part in parts)
            size = sum(part[3] * part[4] for part in parts)
            for number, (modality, body, contrast, k_inst, _, name) in enumerate(parts, 1):
                series_id += 1
                agent = ("Iohexol 350" if modality == "CT" else "Gadobutrol") if contrast else ""
                series.append(
                    f"{series_id}\t{sid}\t{uid}.{number}\t{modality}\t{body}\t{body}\t{agent}\t"
                    f"{'t' if contrast else 'f'}\t{number}\t{name} ({k_inst} images)\t"
                    f"{created_s[j]}+00\n"
                )
            code = item.code if r_code[j] < 0.9 else ""
            studies.append(
                f"{sid}\t{uid}\t{key}\t{inst}\tRIS{sid:010d}\t{date}\t"
                f"{NULL if unknown else clock}\t{item.name_en}\t{code}\t{date} {clock}\t"
                f"{len(parts)}\t{count}\t{size}\t{created_s[j]}+00\n"
            )
            if r_recognized[j] < recognized:
                for held in (item.code, *item.satisfies):
                    result_id += 1
                    results.append(
                        f"{result_id}\t{key}\t{held}\timaging\tstudy:{uid}\t1\tfinal\t"
                        f"{utc_s[j]}+00\t{inst}\t{{}}\n"
                    )
        yield Blocks(
            "".join(studies),
            "".join(series),
            "".join(results),
            len(studies),
            len(series),
            len(results),
        )


def study_columns() -> tuple[str, ...]:
    """The ``study`` columns of :func:`study_blocks`' rows, in the table's order: all but those
    left to their server defaults (no date source, review or reason to record here)."""
    from mutualrec.storage.models import Study

    return table_columns(
        Study, omit=("date_source", "declared_item_review", "not_recognized_reason")
    )


def series_columns() -> tuple[str, ...]:
    """The ``series`` columns of :func:`study_blocks`' rows: every one, in the table's order."""
    from mutualrec.storage.models import Series

    return table_columns(Series)


def relation_sizes(conn: Any, tables: Sequence[str]) -> dict[str, dict[str, int]]:
    """Rows, heap and total bytes of each table, and the bytes of each of its indexes."""
    sizes: dict[str, dict[str, int]] = {}
    for table in tables:
        row = conn.execute(
            "SELECT pg_total_relation_size(%s::regclass), pg_relation_size(%s::regclass), "
            f"(SELECT count(*) FROM {table})",
            [table, table],
        ).fetchone()
        sizes[table] = {"rows": row[2], "heap_bytes": row[1], "total_bytes": row[0]}
        for name, size in conn.execute(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
            "WHERE indrelid = %s::regclass ORDER BY 1",
            [table],
        ).fetchall():
            sizes[f"{table} / {name}"] = {"total_bytes": size}
    row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    sizes["database"] = {"total_bytes": row[0]}
    return sizes


def generate_main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """The ``generate`` subcommand."""
    check_database_name(args.database)
    workdir: Path = (args.workdir / args.database).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    _, code = use_snapshot(args.workdir.resolve() / "code-generate", args.ref)
    from mutualrec.identity import parse_identity, patient_key

    bench_total = args.bench_patients * args.bench_studies
    background = args.studies - bench_total
    bg_patients = args.patients if args.patients else max(1, round(background / 3))
    if background < 0:
        raise SystemExit("--studies must be at least --bench-patients x --bench-studies")
    rng = np.random.default_rng(args.seed)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    t0 = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        timings[name] = round(now - t0, 1)
        log(f"{name}: {now - t0:.1f} s")
        t0 = now

    fresh_database(args, args.database)
    code_dir = Path(sys.path[0])
    env = mutualrec_env(code_dir, database_url=database_url(args, args.database))
    log(run_cli(env, code_dir, "db", "upgrade").strip() or "db upgrade done")
    phase("create database and migrate to head")

    items, items_p = imaging_items()
    insts = make_institutions(args.institutions, rng)
    numbers = make_resident_ids(args.bench_patients + bg_patients, rng)
    secret = args.secret.encode("utf-8")
    keys = [patient_key(parse_identity("RESIDENT_ID_CARD", n), secret) for n in numbers]
    counts = np.concatenate(
        [
            np.full(args.bench_patients, args.bench_studies, dtype=np.int64),
            studies_per_patient(bg_patients, background, args.background_cap, rng),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    today_local = (now + dt.timedelta(seconds=LOCAL_OFFSET_S)).date()
    days = 365 * args.years
    first_day = today_local - dt.timedelta(days=days)
    plan = plan_studies(counts, insts, items_p, days, rng)
    phase("plan (ids, keys, times, items)")

    conn = pg_connect(args, args.database)
    conn.execute("SET synchronous_commit = off")
    conn.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
    dropped = {t: table_indexes(conn, t) for t in ("study", "series", "recognition_result")}
    series_rows = result_rows = 0
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        for table, indexes in dropped.items():
            drop_indexes(conn, table, indexes)
        created_at = dt.datetime.combine(first_day, dt.time()).isoformat() + "+08"
        copy_text(
            conn,
            "institution",
            ("id", "code", "name", "district", "level", "city", "region", "created_at"),
            iter(
                [
                    "".join(
                        f"{i.id}\t{i.code}\t{i.name}\t{i.district}\t{i.level}\t{i.city}\t"
                        f"{i.region}\t{created_at}\n"
                        for i in insts
                    )
                ]
            ),
        )
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('institution', 'id'), "
            "(SELECT max(id) FROM institution))"
        )
        copy_text(
            conn,
            "patient",
            ("patient_key", "created_at"),
            iter(
                "".join(f"{k}\t{created_at}\n" for k in keys[i : i + 200_000])
                for i in range(0, len(keys), 200_000)
            ),
        )
        phase(f"institutions and patients COPY ({len(insts)} + {len(keys)} rows)")
        done = 0
        last = time.perf_counter()
        for blocks in study_blocks(plan, keys, items, first_day, args.recognized, rng):
            # One COPY per table and chunk, one after the other on this connection.
            copy_text(conn, "study", study_columns(), iter([blocks.studies]))
            copy_text(conn, "series", series_columns(), iter([blocks.series]))
            copy_text(conn, "recognition_result", result_columns(), iter([blocks.results]))
            series_rows += blocks.series_rows
            result_rows += blocks.result_rows
            done += blocks.study_rows
            if time.perf_counter() - last > 10 or done == len(plan.patient):
                last = time.perf_counter()
                log(f"  studies: {done:,}/{len(plan.patient):,}")
        for table, column in (("study", "id"), ("series", "id"), ("recognition_result", "id")):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"greatest((SELECT max({column}) FROM {table}), 1))"
            )
    phase(
        f"studies, series, recognition rows COPY ({len(plan.patient):,} + {series_rows:,} + "
        f"{result_rows:,} rows)"
    )
    for table, indexes in dropped.items():
        build_indexes(conn, table, indexes, timings)
    phase("indexes and unique constraints")
    orphans = conn.execute(
        "SELECT (SELECT count(*) FROM series s WHERE NOT EXISTS "
        "  (SELECT 1 FROM study t WHERE t.id = s.study_id)), "
        "(SELECT count(*) FROM study t WHERE NOT EXISTS "
        "  (SELECT 1 FROM patient p WHERE p.patient_key = t.patient_key)), "
        "(SELECT count(*) FROM study t WHERE NOT EXISTS "
        "  (SELECT 1 FROM institution i WHERE i.id = t.institution_id))"
    ).fetchone()
    if any(orphans):
        raise SystemExit(f"foreign keys broken: {orphans}")
    phase("foreign key check")
    conn.execute("VACUUM (ANALYZE)")
    phase("VACUUM ANALYZE")
    sizes = relation_sizes(
        conn, ("study", "series", "recognition_result", "patient", "institution")
    )
    conn.close()
    total_s = time.perf_counter() - t_all

    histogram = np.bincount(np.minimum(counts[args.bench_patients :], 11))
    bench = [
        {"number": numbers[i], "patient_key": keys[i], "studies": int(counts[i])}
        for i in range(args.bench_patients)
    ]
    typical_idx = [i for i in range(args.bench_patients, len(numbers)) if 1 <= counts[i] <= 5]
    typical_idx = typical_idx[: args.typical_sample]
    typical = [
        {"number": numbers[i], "patient_key": keys[i], "studies": int(counts[i])}
        for i in typical_idx
    ]
    bg_counts = counts[args.bench_patients :]
    summary = {
        "database": args.database,
        "database_url": database_url(args, args.database),
        "secret": args.secret,
        "seed": args.seed,
        "studies": len(plan.patient),
        "series": series_rows,
        "recognition_rows": result_rows,
        "patients": len(keys),
        "institutions": len(insts),
        "years": args.years,
        "period_local": [first_day.isoformat(), today_local.isoformat()],
        "bench_patients": args.bench_patients,
        "bench_studies_each": args.bench_studies,
        "background_patients": bg_patients,
        "background_studies_per_patient": {
            "mean": round(float(bg_counts.mean()), 2),
            "median": float(np.median(bg_counts)),
            "max": int(bg_counts.max()),
            "share_1_to_5": round(float(((bg_counts >= 1) & (bg_counts <= 5)).mean()), 3),
            "histogram_1_to_10_and_11_plus": [int(v) for v in histogram[1:]],
        },
        "instance_rows": 0,
        "phases_s": timings,
        "total_s": round(total_s, 1),
        "sizes": sizes,
        "generated_at": now.isoformat(timespec="seconds"),
    }
    manifest = {**summary, "bench": bench, "typical": typical}
    (workdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(generate_markdown(summary))
    print(f"manifest: {workdir / 'manifest.json'}")
    summary_out = {k: v for k, v in summary.items() if k != "secret"}
    postgres_version(args)
    merge_json(args.json, "generate", args.database, {**provenance(argv, code), **summary_out})
    return 0


def generate_markdown(summary: dict[str, Any]) -> str:
    """What was generated, how long it took and how big it is."""
    bg = summary["background_studies_per_patient"]
    lines = [
        f"**{summary['database']}**: {summary['studies']:,} studies, {summary['series']:,} "
        f"series, {summary['recognition_rows']:,} recognition rows, {summary['patients']:,} "
        f"patients, {summary['institutions']} institutions, no instance rows; "
        f"{summary['bench_patients']} benchmark patients x {summary['bench_studies_each']} "
        f"studies; background patients hold {bg['mean']} studies on average "
        f"({bg['share_1_to_5']:.0%} hold 1-5, max {bg['max']}); generated in "
        f"{summary['total_s']:.0f} s",
        "",
        "| relation | rows | MiB |",
        "|---|---:|---:|",
    ]
    for name, info in summary["sizes"].items():
        rows = f"{info['rows']:,}" if "rows" in info else ""
        lines.append(f"| {name} | {rows} | {info['total_bytes'] / 2**20:,.1f} |")
    lines += ["", "| phase | s |", "|---|---:|"]
    lines += [f"| {name} | {secs} |" for name, secs in summary["phases_s"].items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# list: client process
# ---------------------------------------------------------------------------------------------

SCENARIOS = {
    "first_page": "first page (20) of a 200-study patient",
    "middle_page": "page 6 of 10 (20, via page tokens)",
    "page_size_100": "first page of 100",
    "modality_ct": "modality=CT, first page (20)",
    "typical_patient": "first page of a patient with 1-5 studies",
}


def _list_calls(config: dict[str, Any], stub: Any) -> dict[str, list[tuple[Any, Any]]]:
    """(metadata, request) pairs of every scenario; middle-page tokens walked to here."""
    from mutualrec.v1 import imaging_pb2

    request = imaging_pb2.ListStudiesRequest
    bench = [(("authorization", f"Bearer {t}"),) for t in config["bench_tokens"]]
    typical = [(("authorization", f"Bearer {t}"),) for t in config["typical_tokens"]]
    middle: list[tuple[Any, Any]] = []
    for metadata in bench:
        token = ""
        for _ in range(config["middle_page"] - 1):
            reply = stub.ListStudies(
                request(page_size=20, page_token=token), metadata=metadata, timeout=CALL_TIMEOUT
            )
            token = reply.next_page_token
            if not token:
                raise RuntimeError("a benchmark patient's history ended before the middle page")
        middle.append((metadata, request(page_size=20, page_token=token)))
    return {
        "first_page": [(m, request(page_size=20)) for m in bench],
        "middle_page": middle,
        "page_size_100": [(m, request(page_size=100)) for m in bench],
        "modality_ct": [(m, request(page_size=20, modality="CT")) for m in bench],
        "typical_patient": [(m, request(page_size=20)) for m in typical],
    }


def _sequential(
    stub: Any, calls: Sequence[tuple[Any, Any]], warmup: int, count: int, offset: int = 0
) -> tuple[list[float], int, int, int, float]:
    """Closed loop, one call at a time: latencies, errors, studies and bytes answered, and
    the wall time of the counted calls."""
    import grpc

    for i in range(warmup):
        metadata, request = calls[(offset + i) % len(calls)]
        stub.ListStudies(request, metadata=metadata, timeout=CALL_TIMEOUT)
    latencies: list[float] = []
    errors = studies = size = 0
    clock = time.perf_counter
    t_start = clock()
    for i in range(count):
        metadata, request = calls[(offset + i) % len(calls)]
        t0 = clock()
        try:
            reply = stub.ListStudies(request, metadata=metadata, timeout=CALL_TIMEOUT)
        except grpc.RpcError:
            errors += 1
            continue
        latencies.append(clock() - t0)
        studies += len(reply.studies)
        size += reply.ByteSize()
    return latencies, errors, studies, size, clock() - t_start


def _summary(
    latencies: list[float], errors: int, studies: int, size: int, wall: float, cpu: float
) -> dict[str, Any]:
    ok = len(latencies)
    return {
        "calls": ok + errors,
        "errors": errors,
        "latency_ms": percentiles(latencies),
        "throughput_per_s": round(ok / wall, 1) if wall > 0 else 0.0,
        "studies_per_call": round(studies / ok, 1) if ok else 0.0,
        "response_bytes": round(size / ok) if ok else 0,
        "client_cpu_s": round(cpu, 2),
        "wall_s": round(wall, 3),
        "latencies_s": [round(v, 6) for v in latencies],
    }


def _concurrent(
    stubs: Sequence[Any], calls: Sequence[tuple[Any, Any]], warmup: int, per_client: int, label: str
) -> dict[str, Any]:
    """One closed-loop client thread per stub (each its own channel), started together."""
    barrier = threading.Barrier(len(stubs) + 1)
    results: list[tuple[list[float], int, int, int, float, float]] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        _sequential(stubs[k], calls, warmup, 0, k)
        barrier.wait()
        t0 = time.perf_counter()
        lat, errors, studies, size, _ = _sequential(stubs[k], calls, 0, per_client, k * 7)
        with lock:
            results.append((lat, errors, studies, size, t0, time.perf_counter()))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(stubs))]
    _ready(label)
    for thread in threads:
        thread.start()
    barrier.wait()
    print(f"BEGIN {label}", flush=True)
    cpu0 = self_cpu()
    for thread in threads:
        thread.join()
    print(f"END {label}", flush=True)
    if len(results) != len(stubs):
        raise RuntimeError(f"{label}: a client thread failed")
    wall = max(r[5] for r in results) - min(r[4] for r in results)
    return _summary(
        [v for r in results for v in r[0]],
        sum(r[1] for r in results),
        sum(r[2] for r in results),
        sum(r[3] for r in results),
        wall,
        self_cpu() - cpu0,
    )


def _ready(label: str) -> None:
    """Tell the parent a phase is about to start and wait until it says go (it waits for the
    machine to be quiet first)."""
    print(f"READY {label}", flush=True)
    if not sys.stdin.readline():
        raise SystemExit("the parent process went away")


def list_client_main(config_path: Path) -> int:
    """The client process of ``list``: every scenario sequentially, then concurrently."""
    import grpc

    from mutualrec.v1 import imaging_pb2_grpc

    config = json.loads(config_path.read_text(encoding="utf-8"))
    target = config["target"]
    channels = [grpc.insecure_channel(target) for _ in range(max(1, config["concurrency"]))]
    for channel in channels:
        grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT)
    stubs = [imaging_pb2_grpc.ImagingServiceStub(c) for c in channels]
    scenarios = _list_calls(config, stubs[0])
    out: dict[str, Any] = {"sequential": {}, "concurrent": {}}
    for name in config["scenarios"]:
        calls = scenarios[name]
        _ready(f"sequential {name}")
        _sequential(stubs[0], calls, config["warmup"], 0)
        print(f"BEGIN sequential {name}", flush=True)
        cpu0 = self_cpu()
        lat, errors, studies, size, wall = _sequential(stubs[0], calls, 0, config["calls"])
        print(f"END sequential {name}", flush=True)
        out["sequential"][name] = _summary(lat, errors, studies, size, wall, self_cpu() - cpu0)
    clients = config["concurrency"]
    for name in config["scenarios"] if clients > 1 else []:
        per_client = max(1, config["concurrent_calls"] // clients)
        summary = _concurrent(
            stubs, scenarios[name], config["warmup"] // clients, per_client, f"concurrent {name}"
        )
        out["concurrent"][name] = {**summary, "clients": clients}
    for channel in channels:
        channel.close()
    Path(config["out"]).write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


# ---------------------------------------------------------------------------------------------
# list: server side, plans, in-process timing
# ---------------------------------------------------------------------------------------------


def mint_tokens(secret: str, run_dir: Path, keys: Sequence[str]) -> list[str]:
    """Patient tokens for ``keys``, signed as the server (same settings) would sign them."""
    from mutualrec.config import load_settings
    from mutualrec.security.patient_tokens import mint_patient_token

    settings = load_settings(
        {"MUTUALREC_PATIENT_KEY_SECRET": secret, "MUTUALREC_DATA_DIR": str(run_dir / "data")}
    )
    ttl = dt.timedelta(hours=12)
    return [mint_patient_token(settings.token_secret, key, ttl).token for key in keys]


def verify_listing(
    args: argparse.Namespace, database: str, target: str, token: str, key: str
) -> dict[str, Any]:
    """A benchmark patient's history over gRPC against SQL: first page, every page, CT filter."""
    import grpc

    from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc

    metadata = (("authorization", f"Bearer {token}"),)
    with (
        grpc.insecure_channel(target) as channel,
        pg_connect(args, database) as conn,
    ):
        stub = imaging_pb2_grpc.ImagingServiceStub(channel)
        first = stub.ListStudies(
            imaging_pb2.ListStudiesRequest(page_size=20), metadata=metadata, timeout=CALL_TIMEOUT
        )
        expected = [
            r[0]
            for r in conn.execute(
                "SELECT study_instance_uid FROM study WHERE patient_key = %s "
                "ORDER BY started_at DESC, id DESC",
                [key],
            ).fetchall()
        ]
        seen: list[str] = []
        token_ = ""
        pages = 0
        while True:
            reply = stub.ListStudies(
                imaging_pb2.ListStudiesRequest(page_size=100, page_token=token_),
                metadata=metadata,
                timeout=CALL_TIMEOUT,
            )
            pages += 1
            seen += [s.study_instance_uid for s in reply.studies]
            token_ = reply.next_page_token
            if not token_:
                break
        ct = stub.ListStudies(
            imaging_pb2.ListStudiesRequest(page_size=20, modality="CT"),
            metadata=metadata,
            timeout=CALL_TIMEOUT,
        )
    problems = []
    if [s.study_instance_uid for s in first.studies] != expected[:20]:
        problems.append("the first page is not the 20 newest studies in order")
    if seen != expected:
        problems.append(f"paging by 100 gave {len(seen)} studies, SQL {len(expected)}")
    if not ct.studies or any("CT" not in s.modalities for s in ct.studies):
        problems.append("the CT filter answered a study without a CT series (or none)")
    if problems:
        raise RuntimeError("ListStudies does not list what the index holds: " + "; ".join(problems))
    sample = first.studies[0]
    return {
        "studies": len(seen),
        "pages_of_100": pages,
        "first_study": {
            "study_date": sample.study_date,
            "modalities": list(sample.modalities),
            "series_count": sample.series_count,
            "instance_count": sample.instance_count,
            "recognition": [r.item_code for r in sample.recognition],
        },
    }


def direct_queries(
    args: argparse.Namespace, database: str, bench_keys: Sequence[str], typical_keys: Sequence[str]
) -> dict[str, Any]:
    """``history_index.patient_studies`` in this process (no gRPC): latency per scenario, and
    EXPLAIN (ANALYZE, BUFFERS) of each statement it sends for the first benchmark patient."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.orm import Session

    from mutualrec.imaging.records import HistoryCursor, HistoryFilter
    from mutualrec.storage import history_index

    engine = create_engine(database_url(args, database), pool_size=2)
    plain, ct = HistoryFilter(), HistoryFilter(modality="CT")
    middle: dict[str, HistoryCursor] = {}
    with Session(engine) as session:
        for key in bench_keys:
            after = None
            for _ in range(args.middle_page - 1):
                page = history_index.patient_studies(session, key, plain, after, 21)[:20]
                after = HistoryCursor(page[-1].started_at, page[-1].study_id)
            assert after is not None
            middle[key] = after

    def scenario(name: str, key: str) -> tuple[HistoryFilter, HistoryCursor | None, int]:
        return {
            "first_page": (plain, None, 21),
            "middle_page": (plain, middle.get(key), 21),
            "page_size_100": (plain, None, 101),
            "modality_ct": (ct, None, 21),
            "typical_patient": (plain, None, 21),
        }[name]

    timings: dict[str, Any] = {}
    for name in args.scenarios:
        keys = typical_keys if name == "typical_patient" else bench_keys
        latencies: list[float] = []
        for i in range(args.direct_warmup + args.direct_calls):
            key = keys[i % len(keys)]
            history_filter, after, limit = scenario(name, key)
            t0 = time.perf_counter()
            with Session(engine) as session:
                history_index.patient_studies(session, key, history_filter, after, limit)
            if i >= args.direct_warmup:
                latencies.append(time.perf_counter() - t0)
        timings[name] = percentiles(latencies)

    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    plans: list[dict[str, Any]] = []
    try:
        for name in args.scenarios:
            key = (typical_keys if name == "typical_patient" else bench_keys)[0]
            history_filter, after, limit = scenario(name, key)
            captured.clear()
            with Session(engine) as session:
                history_index.patient_studies(session, key, history_filter, after, limit)
            statements = list(captured)
            raw = engine.raw_connection()
            try:
                cur = raw.cursor()
                for n, (statement, parameters) in enumerate(statements, 1):
                    cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                    plan = "\n".join(r[0] for r in cur.fetchall())
                    found = re.search(r"Execution Time: ([\d.]+) ms", plan)
                    plans.append(
                        {
                            "scenario": name,
                            "statement": n,
                            "sql": statement,
                            "plan": plan,
                            "execution_ms": float(found[1]) if found else None,
                        }
                    )
                raw.rollback()
            finally:
                raw.close()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
        engine.dispose()
    return {"latency_ms": timings, "plans": plans}


@dataclass
class ListTarget:
    """A generated database the ``list`` subcommand measures."""

    database: str
    manifest: dict[str, Any]
    held: dict[str, int]
    direct: dict[str, Any]
    rounds: list[dict[str, Any]]


def wait_for_quiet(limit_pct: float, timeout: float) -> dict[str, Any]:
    """Wait until the machine's busy CPU over 2 s is below ``limit_pct`` % of one core (other
    people's jobs share this machine); how long it took and the last reading."""
    t0 = time.monotonic()
    warned = False
    while True:
        b0 = cpu_busy_s()
        time.sleep(2.0)
        pct = 100 * (cpu_busy_s() - b0) / 2.0
        waited = time.monotonic() - t0
        if pct < limit_pct or limit_pct <= 0:
            return {"waited_s": round(waited, 1), "busy_pct": round(pct, 1)}
        if waited > timeout:
            log(f"  the machine is still busy ({pct:.0f} % of a core): going on anyway")
            return {"waited_s": round(waited, 1), "busy_pct": round(pct, 1), "timed_out": True}
        if not warned:
            log(f"  waiting for other jobs to calm down ({pct:.0f} % of a core busy)")
            warned = True


def cpu_busy_s() -> float:
    """CPU seconds every core of the machine spent busy (not idle, not waiting for I/O),
    including time the hypervisor gave to other guests (steal)."""
    import psutil

    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def cpu_steal_s() -> float:
    """CPU seconds the hypervisor took from this machine's cores (0 where not reported)."""
    import psutil

    return float(getattr(psutil.cpu_times(), "steal", 0.0))


def list_round(
    args: argparse.Namespace, target_db: ListTarget, code_dir: Path, run_dir: Path, label: str
) -> dict[str, Any]:
    """One server on ``target_db`` and one client process through every scenario."""
    manifest = target_db.manifest
    bench_keys = [p["patient_key"] for p in manifest["bench"]]
    typical_keys = [p["patient_key"] for p in manifest["typical"]]
    secret = manifest["secret"]
    env = extra_env(
        server_env(args, code_dir, run_dir, target_db.database, secret), args.mutualrec_env
    )
    server, target = start_server(env, code_dir, run_dir / f"server-{label}.log")
    client: subprocess.Popen[str] | None = None
    profiler: Profiler | None = None
    phases: dict[str, dict[str, Any]] = {}
    try:
        tokens = mint_tokens(secret, run_dir, bench_keys)
        typical_tokens = mint_tokens(secret, run_dir, typical_keys)
        verified = verify_listing(args, target_db.database, target, tokens[0], bench_keys[0])
        config = {
            "target": target,
            "bench_tokens": tokens,
            "typical_tokens": typical_tokens,
            "middle_page": args.middle_page,
            "scenarios": args.scenarios,
            "warmup": args.warmup,
            "calls": args.calls,
            "concurrency": args.concurrency,
            "concurrent_calls": args.concurrent_calls,
            "out": str(run_dir / f"client-{label}.json"),
        }
        config_path = run_dir / f"client-{label}.config.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            profiler = Profiler(
                server.pid, args.profile / f"list-{label}.txt", 200, gil=args.profile_gil
            )
        client = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "list-client", str(config_path)],
            env=client_env(code_dir),
            cwd=code_dir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        assert client.stdin is not None
        quiet: dict[str, dict[str, Any]] = {}
        marks: dict[str, tuple[Any, ...]] = {}
        for line in client.stdout:
            kind, _, phase = line.strip().partition(" ")
            if kind == "READY":
                quiet[phase] = wait_for_quiet(args.quiet_below, args.quiet_timeout)
                client.stdin.write("GO\n")
                client.stdin.flush()
                continue
            if kind not in ("BEGIN", "END"):
                continue
            pg, ours = postgres_cpu(target_db.database)
            client_stats = process_tree_stats(client.pid)
            mark = (
                time.perf_counter(),
                process_tree_stats(server.pid),
                client_stats,
                pg,
                ours,
                cpu_busy_s(),
                self_cpu(),
                cpu_steal_s(),
            )
            if kind == "BEGIN":
                marks[phase] = mark
                log(f"  {label} {phase} ...")
                continue
            t0, s0, c0, pg0, _, busy0, me0, steal0 = marks[phase]
            t1, s1, c1, pg1, ours1, busy1, me1, steal1 = mark
            wall = max(t1 - t0, 1e-9)

            def cpu(a: Any, b: Any) -> float:
                return float(b.user_seconds + b.sys_seconds - a.user_seconds - a.sys_seconds)

            server_cpu = cpu(s0, s1)
            client_cpu = cpu(c0, c1)
            pg_db = sum(pg1[pid] - pg0.get(pid, 0.0) for pid in ours1 if pid in pg1)
            pg_all = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())
            steal = steal1 - steal0
            other = (busy1 - busy0) - server_cpu - client_cpu - pg_all - (me1 - me0) - steal
            phases[phase] = {
                "server_cpu_pct": round(100 * server_cpu / wall, 1),
                "postgres_cpu_pct": round(100 * pg_db / wall, 1),
                "client_cpu_pct": round(100 * client_cpu / wall, 1),
                "other_cpu_pct": round(100 * max(other, 0.0) / wall, 1),
                "steal_pct": round(100 * steal / wall, 1),
                "server_rss_mib": round(s1.rss_kib / 1024, 1),
                "loadavg_1m": round(os.getloadavg()[0], 2),
                "quiet_wait_s": quiet.get(phase, {}).get("waited_s", 0.0),
                "busy_before_pct": quiet.get(phase, {}).get("busy_pct", 0.0),
            }
        code_rc = client.wait(timeout=600)
        if code_rc != 0:
            raise RuntimeError(f"the client process failed (exit {code_rc})")
        measured = json.loads(Path(config["out"]).read_text(encoding="utf-8"))
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait(10)
        if profiler is not None:
            profiler.stop()
        server.stop()
    for mode in ("sequential", "concurrent"):
        for name, result in measured[mode].items():
            result.update(phases.get(f"{mode} {name}", {}))
    if profiler is not None:
        measured["profile"] = summarize_profile(profiler.out)
        print(measured["profile"])
    measured["verified"] = verified
    out: dict[str, Any] = measured
    return out


def pool_rounds(rounds: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each scenario over every round: percentiles of all calls together, per-round p50/p99,
    and the median of the rounds' throughput and CPU figures."""
    out: dict[str, dict[str, Any]] = {"sequential": {}, "concurrent": {}}
    for mode in out:
        for name in rounds[0][mode]:
            runs = [r[mode][name] for r in rounds]
            pooled = [v for run in runs for v in run["latencies_s"]]

            def med(field: str, runs: Sequence[dict[str, Any]] = runs) -> float:
                return round(float(statistics.median(run.get(field, 0.0) for run in runs)), 1)

            out[mode][name] = {
                "calls": sum(run["calls"] for run in runs),
                "errors": sum(run["errors"] for run in runs),
                "latency_ms": percentiles(pooled),
                "p50_by_round": [run["latency_ms"]["p50"] for run in runs],
                "p99_by_round": [run["latency_ms"]["p99"] for run in runs],
                "throughput_per_s": med("throughput_per_s"),
                "studies_per_call": runs[0]["studies_per_call"],
                "response_bytes": runs[0]["response_bytes"],
                "server_cpu_pct": med("server_cpu_pct"),
                "postgres_cpu_pct": med("postgres_cpu_pct"),
                "client_cpu_pct": med("client_cpu_pct"),
                "other_cpu_pct": med("other_cpu_pct"),
                "steal_pct": med("steal_pct"),
                "other_cpu_pct_by_round": [run.get("other_cpu_pct", 0.0) for run in runs],
                "loadavg_1m": med("loadavg_1m"),
                "clients": runs[0].get("clients", 1),
            }
    return out


def list_main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """The ``list`` subcommand: every database, in interleaved rounds."""
    scratch: Path = args.workdir.resolve()
    targets: list[ListTarget] = []
    for database in args.database:
        check_database_name(database)
        manifest_path = scratch / database / "manifest.json"
        if not manifest_path.exists():
            raise SystemExit(f"no {manifest_path}: run the generate subcommand first")
        targets.append(
            ListTarget(database, json.loads(manifest_path.read_text("utf-8")), {}, {}, [])
        )
    code_dir, code = use_snapshot(scratch / "code-list", args.ref)
    (scratch / "runs").mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="list-", dir=scratch / "runs"))
    pg_version = postgres_version(args)
    try:
        for t in targets:
            with pg_connect(args, t.database) as conn:
                row = conn.execute(
                    "SELECT (SELECT count(*) FROM study), (SELECT count(*) FROM series), "
                    "(SELECT count(*) FROM recognition_result), (SELECT count(*) FROM patient), "
                    "(SELECT count(*) FROM instance), pg_database_size(current_database())"
                ).fetchone()
            names = ("studies", "series", "recognition_rows", "patients", "instances")
            t.held = dict(zip((*names, "database_bytes"), row, strict=True))
            log(f"{t.database}: {row[0]:,} studies, {row[1]:,} series, {row[3]:,} patients")
            if not args.skip_direct:
                log(f"{t.database}: in-process patient_studies timing and EXPLAIN ANALYZE")
                t.direct = direct_queries(
                    args,
                    t.database,
                    [p["patient_key"] for p in t.manifest["bench"]],
                    [p["patient_key"] for p in t.manifest["typical"]],
                )
                for name, lat in t.direct["latency_ms"].items():
                    log(f"  {name:16} in-process p50 {lat['p50']:.2f} ms p99 {lat['p99']:.2f} ms")
        for n, t in interleaved(args.rounds, targets):
            log(f"round {n}/{args.rounds}: {t.database}")
            t.rounds.append(list_round(args, t, code_dir, run_dir, f"{t.database}-r{n}"))
    finally:
        for log_file in run_dir.glob("server-*.log"):
            with contextlib.suppress(OSError):
                shutil.copyfile(log_file, scratch / f"last-list-{log_file.name}")
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    for t in targets:
        pooled = pool_rounds(t.rounds)
        result = {
            **provenance(argv, code),
            "database": t.database,
            "postgres_server": pg_version,
            "held": t.held,
            "bench_patients": len(t.manifest["bench"]),
            "bench_studies_each": t.manifest["bench_studies_each"],
            "typical_patients": len(t.manifest["typical"]),
            "rounds": args.rounds,
            "interleaved_with": [d for d in args.database if d != t.database],
            "warmup_calls": args.warmup,
            "calls": args.calls,
            "concurrency": args.concurrency,
            "concurrent_calls": args.concurrent_calls,
            "mutualrec_env": args.mutualrec_env,
            "label": args.label,
            "verified": t.rounds[0]["verified"],
            "scenarios": {name: SCENARIOS[name] for name in args.scenarios},
            "in_process_ms": t.direct.get("latency_ms", {}),
            "plans": t.direct.get("plans", []),
            "sequential": pooled["sequential"],
            "concurrent": pooled["concurrent"],
            "profiles": [r["profile"] for r in t.rounds if r.get("profile")],
        }
        print(list_markdown(result))
        merge_json(args.json, "list", t.database + args.label, result)
    return 0


def list_markdown(result: dict[str, Any]) -> str:
    """ListStudies latencies of one database, sequential and concurrent."""
    held = result["held"]
    lines = [
        f"**ListStudies on {result['database']}**{result.get('label', '')} "
        f"({held['studies']:,} studies, "
        f"{held['patients']:,} patients, database {held['database_bytes'] / 2**30:.2f} GiB; "
        f"{result['bench_patients']} patients of {result['bench_studies_each']} studies; "
        f"{result['rounds']} round(s) of {result['calls']} sequential calls per scenario after "
        f"{result['warmup_calls']} warm-up, and {result['concurrent_calls']} calls by "
        f"{result['concurrency']} concurrent clients; percentiles over all rounds' calls)",
        "",
        "| scenario | clients | calls/s | p50 ms | p90 ms | p99 ms | max ms | p99 by round "
        "| in-process p50 / p99 | studies/call | CPU % server / PG / client / other / steal |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for mode in ("sequential", "concurrent"):
        for name, r in result[mode].items():
            lat = r["latency_ms"]
            direct = result["in_process_ms"].get(name)
            clients = r.get("clients", 1)
            inproc = f"{direct['p50']:.2f} / {direct['p99']:.2f}" if direct and clients == 1 else ""
            errors = f" ({r['errors']} errors)" if r["errors"] else ""
            by_round = ", ".join(f"{v:.1f}" for v in r.get("p99_by_round", []))
            lines.append(
                f"| {SCENARIOS.get(name, name)}{errors} | {clients} | {r['throughput_per_s']:.0f} "
                f"| {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | {lat['max']:.1f} "
                f"| {by_round} | {inproc} | {r['studies_per_call']:g} "
                f"| {r.get('server_cpu_pct', 0):.0f} / {r.get('postgres_cpu_pct', 0):.0f} / "
                f"{r.get('client_cpu_pct', 0):.0f} / {r.get('other_cpu_pct', 0):.0f} / "
                f"{r.get('steal_pct', 0):.0f} |"
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# orthanc
# ---------------------------------------------------------------------------------------------

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ORTHANC_KINDS = (
    ("CT", "CHEST", "CT chest without contrast"),
    ("CT", "HEAD", "CT head without contrast"),
    ("DX", "CHEST", "Chest X-ray PA"),
    ("US", "ABDOMEN", "Ultrasound upper abdomen"),
    ("MR", "BRAIN", "MRI brain without contrast"),
    ("CT", "ABDOMEN", "CT upper abdomen with contrast"),
)


@dataclass(frozen=True)
class OrthancStudy:
    """One study (of one instance) to load into Orthanc."""

    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    index: int
    study_date: str
    study_time: str
    kind: int


def orthanc_plan(args: argparse.Namespace, rng: np.random.Generator) -> list[OrthancStudy]:
    """Studies in upload order: the small patient's, the benchmark patient's, background."""
    total = max(args.sizes)
    out: list[OrthancStudy] = []
    days = 365 * args.years
    first = dt.date.today() - dt.timedelta(days=days)

    def add(patient_id: str, name: str, birth: str, sex: str, count: int) -> None:
        for _ in range(count):
            when = first + dt.timedelta(days=int(rng.integers(0, days)))
            seconds = int(rng.integers(7 * 3600 + 1800, 20 * 3600))
            out.append(
                OrthancStudy(
                    patient_id,
                    name,
                    birth,
                    sex,
                    len(out) + 1,
                    when.strftime("%Y%m%d"),
                    f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}",
                    int(rng.integers(0, len(ORTHANC_KINDS))),
                )
            )

    add(args.small_patient_id, "SMALL^PATIENT", "19750312", "F", args.small_studies)
    add(args.bench_patient_id, "BENCH^PATIENT", "19620704", "M", args.bench_studies)
    n = 0
    while len(out) < total:
        n += 1
        count = min(int(rng.geometric(1 / 3)), 20, total - len(out))
        birth = f"{int(rng.integers(1935, 2020))}0{int(rng.integers(1, 10))}1{rng.integers(0, 10)}"
        add(f"BG{n:07d}", f"BACKGROUND^{n:07d}", birth, "MF"[n % 2], count)
    return out[:total]


def dicom_bytes(study: OrthancStudy) -> bytes:
    """A minimal valid DICOM file (Secondary Capture, 8x8 pixels) of ``study``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    root = "1.2.826.0.1.3680043.10.1151.8."
    study_uid = f"{root}{study.index}"
    modality, body_part, description = ORTHANC_KINDS[study.kind]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(SECONDARY_CAPTURE)
    meta.MediaStorageSOPInstanceUID = UID(f"{study_uid}.1.1")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(prefix=root, entropy_srcs=["imaging_bench"])
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = f"{study_uid}.1.1"
    ds.PatientID = study.patient_id
    ds.PatientName = study.patient_name
    ds.PatientBirthDate = study.birth_date
    ds.PatientSex = study.sex
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.StudyID = str(study.index)
    ds.AccessionNumber = f"RIS{study.index:010d}"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = description
    ds.InstitutionName = "CQ DEMO HOSPITAL"
    ds.SeriesInstanceUID = f"{study_uid}.1"
    ds.SeriesNumber = 1
    ds.Modality = modality
    ds.BodyPartExamined = body_part
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 8
    ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(128)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class Orthanc:
    """Orthanc with a fresh storage directory, its default SQLite index, loopback only."""

    def __init__(self, run_dir: Path) -> None:
        exe = shutil.which("Orthanc")
        if exe is None:
            raise SystemExit("Orthanc is not installed (apt-get install -y orthanc)")
        self.run_dir = run_dir
        self.port = free_port()
        self.config = {
            "Name": "mutualrec-imaging-bench",
            "StorageDirectory": str(run_dir / "storage"),
            "IndexDirectory": str(run_dir / "index"),
            "HttpServerEnabled": True,
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "HttpCompressionEnabled": False,
            "StorageCompression": False,
            "Plugins": [],
        }
        config_path = run_dir / "orthanc.json"
        config_path.write_text(json.dumps(self.config, indent=2), encoding="utf-8")
        self.process = ServerProcess(
            [exe, str(config_path)], run_dir / "orthanc.log", {**os.environ}
        )
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CALL_TIMEOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError, http.client.HTTPException):
                self.version = str(self.request("GET", "/system")[1].get("Version", ""))
                break
            self.conn.close()
            if self.process.proc.poll() is not None or time.monotonic() > deadline:
                self.process.stop()
                raise RuntimeError(f"Orthanc did not start; see {run_dir / 'orthanc.log'}")
            time.sleep(0.2)
        assert self.conn.sock is not None
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[bytes, Any]:
        """One call on the keep-alive connection: the body and its JSON. The connection is
        opened again if Orthanc closed it while idle (its keep-alive timeout is short)."""
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            self.conn.request(method, path, body=body, headers=headers)
            reply = self.conn.getresponse()
        except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest):
            self.conn.close()
            self.conn.connect()
            assert self.conn.sock is not None
            self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conn.request(method, path, body=body, headers=headers)
            reply = self.conn.getresponse()
        data = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"Orthanc {method} {path}: HTTP {reply.status} {data[:200]!r}")
        return data, json.loads(data) if data else None

    def stop(self) -> None:
        """Close the connection and stop Orthanc."""
        self.conn.close()
        self.process.stop()


def time_find(
    orthanc: Orthanc, query: dict[str, Any], warmup: int, calls: int
) -> tuple[list[float], int, int]:
    """``POST /tools/find`` timed over the keep-alive connection: latencies, the number of
    studies it answers and the bytes of an answer."""
    body = json.dumps(query).encode()
    _, first = orthanc.request("POST", "/tools/find", body, "application/json")
    for _ in range(warmup):
        orthanc.request("POST", "/tools/find", body, "application/json")
    conn = orthanc.conn
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    size = 0
    for _ in range(calls):
        t0 = time.perf_counter()
        conn.request("POST", "/tools/find", body=body, headers=headers)
        reply = conn.getresponse()
        data = reply.read()
        latencies.append(time.perf_counter() - t0)
        if reply.status != 200:
            raise RuntimeError(f"/tools/find: HTTP {reply.status}")
        size = len(data)
    return latencies, len(first), size


def orthanc_main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """The ``orthanc`` subcommand."""
    if not args.no_netns and os.environ.get(NETNS_ENV) != "1":
        enter_netns(argv, NETNS_ENV, __file__)
    netns = os.environ.get(NETNS_ENV) == "1"
    if netns:
        loopback_only()
    sizes = sorted(set(args.sizes))
    rng = np.random.default_rng(args.seed)
    plan = orthanc_plan(args, rng)
    t0 = time.perf_counter()
    files = [dicom_bytes(study) for study in plan]
    log(f"{len(files)} DICOM files made in {time.perf_counter() - t0:.1f} s")
    scratch: Path = args.workdir.resolve()
    (scratch / "runs").mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="orthanc-", dir=scratch / "runs"))
    orthanc = Orthanc(run_dir)
    log(f"Orthanc {orthanc.version} on 127.0.0.1:{orthanc.port} (network namespace: {netns})")
    stages: list[dict[str, Any]] = []
    loaded = 0
    try:
        for size in sizes:
            t0 = time.perf_counter()
            for body in files[loaded:size]:
                orthanc.request("POST", "/instances", body, "application/dicom")
            upload_s = time.perf_counter() - t0
            uploaded = size - loaded
            loaded = size
            stats = orthanc.request("GET", "/statistics")[1]
            if int(stats["CountStudies"]) != size:
                raise RuntimeError(f"Orthanc holds {stats['CountStudies']} studies, not {size}")
            bench_held = sum(1 for s in plan[:size] if s.patient_id == args.bench_patient_id)
            small_held = sum(1 for s in plan[:size] if s.patient_id == args.small_patient_id)
            log(
                f"{size} studies held ({uploaded} uploaded in {upload_s:.1f} s); the benchmark "
                f"patient holds {bench_held}, the small one {small_held}"
            )
            queries: dict[str, Any] = {}
            for label, patient, expand, limit in (
                ("bench_ids", args.bench_patient_id, False, 0),
                ("bench_expand", args.bench_patient_id, True, 0),
                ("bench_expand_limit20", args.bench_patient_id, True, 20),
                ("small_ids", args.small_patient_id, False, 0),
                ("small_expand", args.small_patient_id, True, 0),
            ):
                query: dict[str, Any] = {"Level": "Study", "Query": {"PatientID": patient}}
                if expand:
                    query["Expand"] = True
                if limit:
                    query["Limit"] = limit
                quiet = wait_for_quiet(args.quiet_below, args.quiet_timeout)
                pid = orthanc.process.pid
                t0, busy0, me0 = time.perf_counter(), cpu_busy_s(), self_cpu()
                o0 = process_tree_stats(pid)
                latencies, answered, size_bytes = time_find(orthanc, query, args.warmup, args.calls)
                o1 = process_tree_stats(pid)
                wall = time.perf_counter() - t0
                server_cpu = o1.user_seconds + o1.sys_seconds - o0.user_seconds - o0.sys_seconds
                other = cpu_busy_s() - busy0 - server_cpu - (self_cpu() - me0)
                queries[label] = {
                    "quiet_wait_s": quiet["waited_s"],
                    "busy_before_pct": quiet["busy_pct"],
                    "orthanc_cpu_pct": round(100 * server_cpu / wall, 1),
                    "other_cpu_pct": round(100 * max(other, 0.0) / wall, 1),
                    "query": query,
                    "studies_answered": answered,
                    "response_bytes": size_bytes,
                    "calls": len(latencies),
                    "latency_ms": percentiles(latencies),
                }
                lat = queries[label]["latency_ms"]
                log(
                    f"  {label:22} {answered:4} studies  p50 {lat['p50']:.2f} ms  "
                    f"p99 {lat['p99']:.2f} ms"
                )
            stages.append(
                {
                    "studies": size,
                    "patients": int(stats["CountPatients"]),
                    "instances": int(stats["CountInstances"]),
                    "bench_patient_studies": bench_held,
                    "small_patient_studies": small_held,
                    "uploaded": uploaded,
                    "upload_s": round(upload_s, 2),
                    "upload_per_s": round(uploaded / upload_s, 1) if upload_s else 0.0,
                    "queries": queries,
                }
            )
    finally:
        orthanc.stop()
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    result = {
        **provenance(argv, "(not used)"),
        "orthanc_version": orthanc.version,
        "config": {
            k: v
            for k, v in orthanc.config.items()
            if k not in ("StorageDirectory", "IndexDirectory")
        },
        "network_namespace": netns,
        "instance_bytes": len(files[0]),
        "warmup_calls": args.warmup,
        "calls": args.calls,
        "stages": stages,
    }
    print(orthanc_markdown(result))
    merge_json(args.json, "orthanc", None, result)
    return 0


ORTHANC_QUERIES = {
    "bench_ids": "benchmark patient, IDs",
    "bench_expand": "benchmark patient, Expand",
    "bench_expand_limit20": "benchmark patient, Expand, Limit 20",
    "small_ids": "small patient, IDs",
    "small_expand": "small patient, Expand",
}


def orthanc_markdown(result: dict[str, Any]) -> str:
    """/tools/find latencies at each index size."""
    lines = [
        f"**Orthanc {result['orthanc_version']} POST /tools/find** (Level Study, PatientID; "
        f"default SQLite index; {result['calls']} calls per query after {result['warmup_calls']} "
        "warm-up, one keep-alive connection)",
        "",
        "| studies held | query | studies answered | p50 ms | p90 ms | p99 ms | max ms "
        "| answer bytes | CPU % Orthanc / other |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for stage in result["stages"]:
        for label, q in stage["queries"].items():
            lat = q["latency_ms"]
            lines.append(
                f"| {stage['studies']:,} | {ORTHANC_QUERIES.get(label, label)} "
                f"| {q['studies_answered']} | {lat['p50']:.2f} | {lat['p90']:.2f} "
                f"| {lat['p99']:.2f} | {lat['max']:.1f} | {q['response_bytes']:,} "
                f"| {q.get('orthanc_cpu_pct', '?')} / {q.get('other_cpu_pct', '?')} |"
            )
    lines.append("")
    lines.append(
        "Loading: "
        + ", ".join(
            f"{s['uploaded']:,} instances in {s['upload_s']:.1f} s ({s['upload_per_s']:.0f}/s)"
            for s in result["stages"]
        )
    )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# thumbnail
# ---------------------------------------------------------------------------------------------


def prepare_ct_study(data_dir: Path, count: int, series: int, seed: int) -> tuple[list[Path], Any]:
    """A ``count``-instance CT study from make_samples.py (new UIDs per seed), reused if there."""
    folder = data_dir / f"ct{count}x{series}-seed{seed}"
    summary = folder / "bench.json"
    if summary.exists():
        held = json.loads(summary.read_text(encoding="utf-8"))
        files = sorted(folder.glob("bench_*.dcm"))
        same = held.get("instance_count") == count and held.get("series_count") == series
        if same and len(files) == count:
            return files, held
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
            "--seed",
            str(seed),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=1800,
    )
    return sorted(folder.glob("bench_*.dcm")), json.loads(summary.read_text(encoding="utf-8"))


def thumbnail_main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """The ``thumbnail`` subcommand."""
    import grpc

    check_database_name(args.database)
    scratch: Path = args.workdir.resolve()
    code_dir, code = use_snapshot(scratch / "code-thumbnail", args.ref)
    from mutualrec.client.upload import make_header, upload_study
    from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc

    data_dir = scratch / "data"
    studies = []
    for i in range(args.studies):
        seed = args.seed + i
        files, identity = prepare_ct_study(data_dir, args.instances, args.series, seed)
        studies.append((seed, files, identity))
        log(f"study {i + 1}: {len(files)} files, {identity['study_instance_uid']}")
    pg_version = postgres_version(args)
    (scratch / "runs").mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="thumbnail-", dir=scratch / "runs"))
    fresh_database(args, args.database)
    env = server_env(args, code_dir, run_dir, args.database, DEFAULT_SECRET)
    server: ServerProcess | None = None
    results: list[dict[str, Any]] = []
    try:
        run_cli(env, code_dir, "db", "upgrade")
        code_, name, district, level = THUMB_INSTITUTION
        run_cli(
            env,
            code_dir,
            "admin",
            "add-institution",
            "--code",
            code_,
            "--name",
            name,
            "--district",
            district,
            "--level",
            level,
        )
        api_key = last_line(run_cli(env, code_dir, "admin", "issue-key", "--institution", code_))
        number = studies[0][2]["patient"]["document_number"]
        token = run_cli(env, code_dir, "admin", "patient-token", "--patient-id", number)
        token = token.strip().splitlines()[0].strip()
        server, target = start_server(env, code_dir, run_dir / "server.log")
        metadata = (("authorization", f"Bearer {token}"),)
        with grpc.insecure_channel(target) as up, grpc.insecure_channel(target) as patient:
            stub = imaging_pb2_grpc.ImagingServiceStub(patient)
            for seed, files, identity in studies:
                for path in files:  # no cold reads of the input during the upload
                    path.read_bytes()
                header = make_header(
                    identity["patient"]["document_number"],
                    identity["patient"]["document_type"],
                    "",
                    identity.get("accession_number", ""),
                    identity.get("performed_item_code", ""),
                )
                uid = identity["study_instance_uid"]
                quiet = wait_for_quiet(args.quiet_below, args.quiet_timeout)
                t0 = time.perf_counter()
                response = upload_study(up, api_key, header, files, timeout=1800)
                t1 = time.perf_counter()
                if response.counts.stored != len(files):
                    raise RuntimeError(f"{response.counts.stored} of {len(files)} stored")
                cpu0 = process_tree_stats(server.pid)
                t2 = time.perf_counter()
                study = stub.GetStudy(
                    imaging_pb2.GetStudyRequest(study_instance_uid=uid),
                    metadata=metadata,
                    timeout=CALL_TIMEOUT,
                )
                t3 = time.perf_counter()
                request = imaging_pb2.GetThumbnailRequest(
                    study_instance_uid=uid,
                    series_instance_uid=study.series[0].series_instance_uid,
                )
                first = stub.GetThumbnail(request, metadata=metadata, timeout=CALL_TIMEOUT)
                t4 = time.perf_counter()
                cpu1 = process_tree_stats(server.pid)
                repeats: list[float] = []
                for _ in range(args.repeats):
                    r0 = time.perf_counter()
                    again = stub.GetThumbnail(request, metadata=metadata, timeout=CALL_TIMEOUT)
                    repeats.append(time.perf_counter() - r0)
                    if again.data != first.data:
                        raise RuntimeError("a repeated GetThumbnail answered another picture")
                if first.placeholder:
                    raise RuntimeError(f"the thumbnail is a placeholder: {first.reason}")
                size = sum(p.stat().st_size for p in files)
                one = {
                    "quiet_wait_s": quiet["waited_s"],
                    "busy_before_pct": quiet["busy_pct"],
                    "seed": seed,
                    "study_instance_uid": uid,
                    "instances": len(files),
                    "series": len(study.series),
                    "size_bytes": size,
                    "upload_s": round(t1 - t0, 3),
                    "upload_mb_s": round(size / 1e6 / (t1 - t0), 1),
                    "get_study_ms": round(1000 * (t3 - t2), 2),
                    "first_thumbnail_ms": round(1000 * (t4 - t3), 2),
                    "to_first_thumbnail_ms": round(1000 * (t4 - t2), 2),
                    "first_thumbnail_server_cpu_s": round(
                        cpu1.user_seconds + cpu1.sys_seconds - cpu0.user_seconds - cpu0.sys_seconds,
                        3,
                    ),
                    "repeat_ms": percentiles(repeats),
                    "thumbnail": {
                        "width": first.width,
                        "height": first.height,
                        "png_bytes": len(first.data),
                        "sop_instance_uid": first.sop_instance_uid,
                        "placeholder": first.placeholder,
                    },
                }
                results.append(one)
                log(
                    f"seed {seed}: upload {one['upload_s']:.1f} s, GetStudy "
                    f"{one['get_study_ms']:.1f} ms, first GetThumbnail "
                    f"{one['first_thumbnail_ms']:.1f} ms, repeat p50 "
                    f"{one['repeat_ms']['p50']:.2f} ms"
                )
                if args.save_png is not None:
                    args.save_png.mkdir(parents=True, exist_ok=True)
                    (args.save_png / f"thumbnail-seed{seed}.png").write_bytes(first.data)
    finally:
        if server is not None:
            server.stop()
            with contextlib.suppress(OSError):
                shutil.copyfile(run_dir / "server.log", scratch / "last-thumbnail.log")
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
            drop_database(args, args.database)

    def median(field: str) -> float:
        return round(float(statistics.median(r[field] for r in results)), 2)

    result = {
        **provenance(argv, code),
        "postgres_server": pg_version,
        "database": args.database,
        "object_store": "local directory (file://), fsync on",
        "instances": args.instances,
        "series": args.series,
        "repeats": args.repeats,
        "studies": results,
        "median": {
            "upload_s": median("upload_s"),
            "get_study_ms": median("get_study_ms"),
            "first_thumbnail_ms": median("first_thumbnail_ms"),
            "to_first_thumbnail_ms": median("to_first_thumbnail_ms"),
            "repeat_p50_ms": round(statistics.median(r["repeat_ms"]["p50"] for r in results), 2),
        },
    }
    print(thumbnail_markdown(result))
    merge_json(args.json, "thumbnail", None, result)
    return 0


def thumbnail_markdown(result: dict[str, Any]) -> str:
    """Per-study upload and thumbnail times, and their medians."""
    lines = [
        f"**First thumbnail of a fresh {result['instances']}-instance CT study** "
        f"({result['series']} series, 512x512 int16; {result['object_store']}; "
        f"{result['repeats']} repeats)",
        "",
        "| study | size MB | upload s | MB/s | GetStudy ms | first GetThumbnail ms "
        "| GetStudy + first GetThumbnail ms | render CPU s | repeat p50 / p99 ms | PNG |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in result["studies"]:
        thumb = r["thumbnail"]
        lines.append(
            f"| seed {r['seed']} | {r['size_bytes'] / 1e6:.0f} | {r['upload_s']:.1f} "
            f"| {r['upload_mb_s']:.0f} | {r['get_study_ms']:.1f} | {r['first_thumbnail_ms']:.1f} "
            f"| {r['to_first_thumbnail_ms']:.1f} | {r['first_thumbnail_server_cpu_s']:.2f} "
            f"| {r['repeat_ms']['p50']:.2f} / {r['repeat_ms']['p99']:.2f} "
            f"| {thumb['width']}x{thumb['height']}, {thumb['png_bytes']:,} B |"
        )
    m = result["median"]
    lines.append(
        f"| **median** | | {m['upload_s']:.1f} | | {m['get_study_ms']:.1f} "
        f"| {m['first_thumbnail_ms']:.1f} | {m['to_first_thumbnail_ms']:.1f} | "
        f"| {m['repeat_p50_ms']:.2f} | |"
    )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def flatness_markdown(doc: dict[str, Any]) -> str:
    """ListStudies by index size next to Orthanc's lookup by PatientID by index size:
    one client, p50 / p99 ms."""
    lines = [
        "**By index size** (one client; mutualrec over gRPC, Orthanc over HTTP/1.1 keep-alive)",
        "",
        "| server, call | patient's studies | studies answered | studies indexed | p50 ms "
        "| p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lists = sorted(doc.get("list", {}).items(), key=lambda kv: kv[1]["held"]["studies"])
    for scenario, text in SCENARIOS.items():
        for _, r in lists:
            s = r["sequential"].get(scenario)
            if s is None or r.get("label"):
                continue
            held = "1-5" if scenario == "typical_patient" else str(r["bench_studies_each"])
            lines.append(
                f"| mutualrec ListStudies, {text} | {held} | {s['studies_per_call']:g} "
                f"| {r['held']['studies']:,} | {s['latency_ms']['p50']:.2f} "
                f"| {s['latency_ms']['p99']:.2f} |"
            )
    orthanc = doc.get("orthanc")
    for label, text in ORTHANC_QUERIES.items():
        for stage in orthanc["stages"] if orthanc else []:
            q = stage["queries"].get(label)
            if q is None:
                continue
            held = stage[
                "small_patient_studies" if label.startswith("small") else "bench_patient_studies"
            ]
            lines.append(
                f"| Orthanc /tools/find, {text} | {held} | {q['studies_answered']} "
                f"| {stage['studies']:,} | {q['latency_ms']['p50']:.2f} "
                f"| {q['latency_ms']['p99']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def report_main(args: argparse.Namespace) -> int:
    """The ``report`` subcommand: every table of a results file."""
    doc = json.loads(args.file.read_text(encoding="utf-8"))
    m = doc.get("machine", {})
    print(
        f"Machine: {m.get('nproc')} x {m.get('cpu')}, {m.get('mem_gib')} GiB, "
        f"kernel {m.get('kernel')}, Python {m.get('python')}, PostgreSQL "
        f"{m.get('postgres_server', '?')}, {m.get('orthanc', '')}\n"
    )
    for summary in doc.get("generate", {}).values():
        print(generate_markdown(summary))
    for result in doc.get("list", {}).values():
        print(list_markdown(result))
    if "orthanc" in doc:
        print(orthanc_markdown(doc["orthanc"]))
    if "list" in doc:
        print(flatness_markdown(doc))
    if "thumbnail" in doc:
        print(thumbnail_markdown(doc["thumbnail"]))
    return 0


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def quiet_options(q: argparse.ArgumentParser) -> None:
    """Options of waiting for a quiet machine before each timed phase."""
    q.add_argument(
        "--quiet-below",
        type=float,
        default=30.0,
        metavar="PCT",
        help="before each timed phase, wait until the machine's busy CPU is below PCT %% of a "
        "core (0: do not wait)",
    )
    q.add_argument("--quiet-timeout", type=float, default=600.0, metavar="S")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command line options of every subcommand."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True)

    def common(q: argparse.ArgumentParser, *, postgres: bool = True) -> None:
        q.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
        q.add_argument("--json", type=Path, metavar="FILE", help="add the figures to this file")
        q.add_argument(
            "--ref",
            default=None,
            help="benchmark the mutualrec package of this git ref (default: the working tree)",
        )
        if postgres:
            q.add_argument("--pg-host", default="127.0.0.1")
            q.add_argument("--pg-port", type=int, default=5432)
            q.add_argument("--pg-user", default="postgres")
            q.add_argument("--pg-maintenance-db", default="test")

    g = sub.add_parser("generate", help="bulk-load a synthetic imaging index")
    common(g)
    g.add_argument("--database", required=True, help=f"created (dropped first); {DB_PREFIX}*")
    g.add_argument("--studies", type=int, default=1_000_000)
    g.add_argument(
        "--patients",
        type=int,
        default=0,
        help="background patients (default: a third of the background studies)",
    )
    g.add_argument("--institutions", type=int, default=1000)
    g.add_argument("--bench-patients", type=int, default=20)
    g.add_argument("--bench-studies", type=int, default=200)
    g.add_argument(
        "--background-cap", type=int, default=150, help="most studies of a background patient"
    )
    g.add_argument("--years", type=int, default=10)
    g.add_argument("--recognized", type=float, default=0.9, help="share of studies indexed")
    g.add_argument("--typical-sample", type=int, default=1000, help="typical patients recorded")
    g.add_argument("--secret", default=DEFAULT_SECRET, help="MUTUALREC_PATIENT_KEY_SECRET")
    g.add_argument("--seed", type=int, default=20261122)
    g.add_argument("--maintenance-work-mem", default="1GB")

    li = sub.add_parser("list", help="ListStudies latency on a generated database")
    common(li)
    li.add_argument("--database", nargs="+", required=True, help="measured in turn, each round")
    li.add_argument("--rounds", type=int, default=1, help="rounds over the databases")
    li.add_argument(
        "--label", default="", help="suffix of the results' key (default: the database name)"
    )
    li.add_argument("--calls", type=int, default=2000, help="counted sequential calls/scenario")
    li.add_argument("--warmup", type=int, default=200, help="uncounted calls first")
    li.add_argument("--concurrency", type=int, default=4, help="concurrent clients (1: none)")
    li.add_argument("--concurrent-calls", type=int, default=4000, help="calls of all clients")
    li.add_argument("--middle-page", type=int, default=6, help="the page of 20 timed as middle")
    li.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    li.add_argument("--direct-calls", type=int, default=300, help="in-process calls/scenario")
    li.add_argument("--direct-warmup", type=int, default=50)
    li.add_argument("--skip-direct", action="store_true", help="no in-process timing/EXPLAIN")
    li.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the server meanwhile")
    li.add_argument(
        "--profile-gil", action="store_true", help="sample only the thread holding the GIL"
    )
    li.add_argument("--keep", action="store_true", help="keep the run directory")
    quiet_options(li)
    env_option(li, "MUTUALREC_PROCESSES=2")

    o = sub.add_parser("orthanc", help="Orthanc's /tools/find by PatientID at several sizes")
    common(o, postgres=False)
    o.add_argument("--sizes", type=int, nargs="+", default=[20, 1000, 5000])
    o.add_argument("--bench-studies", type=int, default=200)
    o.add_argument("--small-studies", type=int, default=3)
    o.add_argument("--bench-patient-id", default="BENCH0001")
    o.add_argument("--small-patient-id", default="SMALL0001")
    o.add_argument("--years", type=int, default=10)
    o.add_argument("--calls", type=int, default=1000)
    o.add_argument("--warmup", type=int, default=100)
    o.add_argument("--seed", type=int, default=7)
    o.add_argument("--keep", action="store_true", help="keep Orthanc's storage directory")
    quiet_options(o)
    o.add_argument("--no-netns", action="store_true", help="no loopback-only network namespace")

    t = sub.add_parser("thumbnail", help="time to the first thumbnail of fresh CT studies")
    common(t)
    t.add_argument("--database", default=f"{DB_PREFIX}_thumb")
    t.add_argument("--studies", type=int, default=5)
    t.add_argument("--instances", type=int, default=300)
    t.add_argument("--series", type=int, default=1)
    t.add_argument("--repeats", type=int, default=20)
    t.add_argument("--seed", type=int, default=300, help="first make_samples.py --seed")
    t.add_argument("--save-png", type=Path, metavar="DIR", help="write the thumbnails here")
    t.add_argument("--keep", action="store_true", help="keep the database and data directory")
    quiet_options(t)

    r = sub.add_parser("report", help="print the tables of a results file")
    r.add_argument("file", type=Path)

    c = sub.add_parser("list-client", help=argparse.SUPPRESS)
    c.add_argument("config", type=Path)
    args = p.parse_args(argv)
    if args.command == "generate" and len(args.secret) < 32:
        p.error("--secret must be at least 32 characters (the server requires it)")
    if args.command in ("list", "thumbnail", "generate"):
        for name in args.database if isinstance(args.database, list) else [args.database]:
            check_database_name(name)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.command == "list-client":
        return list_client_main(args.config)
    if args.command == "report":
        return report_main(args)
    signal.signal(signal.SIGTERM, _terminate)
    runners: dict[str, Callable[[argparse.Namespace, Sequence[str]], int]] = {
        "generate": generate_main,
        "list": list_main,
        "orthanc": orthanc_main,
        "thumbnail": thumbnail_main,
    }
    return runners[args.command](args, argv)


if __name__ == "__main__":
    sys.exit(main())
