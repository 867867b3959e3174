#!/usr/bin/env python3
"""Regulators' statistics benchmark: a year of decisions on PostgreSQL, reports and decisions.

Three subcommands (``all`` runs ``report`` then ``decisions`` on one server):

``generate --database NAME --decisions 10000000``
    A fresh database migrated to head (``mutualrec db upgrade``), the packaged catalog, about a
    thousand institutions over ~40 districts (bench/city_gen.py's generator), their
    qualifications, and ``--days`` (default 396, 13 months) of ordering-time checks up to now:
    ``recognition_check``, ``check_line`` and ``decision`` rows as the service writes them,
    loaded with COPY. Checks per day follow the week (fewer at weekends), grow over the period
    (adoption) and follow the clinic hours of Asia/Shanghai; 1-3 lines per check; verdicts
    RECOGNIZABLE ~40 % (rising over the period), NO_RESULT, EXPIRED, ISSUER_NOT_QUALIFIED,
    PRELIMINARY_ONLY, NOT_COVERED, UNKNOWN_CODE; ~95 % of recognizable lines are decided,
    ~75 % of those accepted (per-institution propensity, rising), declines with a DeclineReason
    (imaging-only reasons on imaging items, ``OTHER`` with words); savings are the catalog's
    reference price as decimal text, booked on acceptance. Decisions exist only on RECOGNIZABLE
    lines (RecordDecision refuses others), so 10 M decisions need ~26 M lines (~14 M checks).

    The three tables are emptied and loaded in one transaction each (``TRUNCATE`` +
    ``COPY ... FREEZE``, three connections in parallel, in received-at order as the service
    would write them). Their primary keys, indexes and foreign keys are dropped first and built
    again afterwards from the definitions PostgreSQL reported before the drop (a sort beats
    tens of millions of random B-tree inserts; the foreign keys are validated once when added);
    the generator then checks that the constraints and indexes equal the migrated ones.
    The statistics tallies (``stat_tally``) are then built from the record in SQL, one
    grouping at a time, as the service's compactor would have left them (the service keeps
    them on write; the tests check that against a rebuild from the record).
    ``VACUUM (ANALYZE)`` at the end.

``report --database NAME``
    Starts ``mutualrec serve`` on the database (a private copy of the working tree's package),
    issues a regulator key, then over gRPC (the generated stub):
    (a) the year's totals against an independent SQL count over the record;
    (b) repeated reports (p50/p90/p99/max) per case: one year by district and by item (month
    rows), 92 days by day, and diagnostics (a one-year period of closed days only);
    (c) EXPLAIN (ANALYZE, BUFFERS) of the statement a one-year report sends, and the storage
    function's own time in-process.

``decisions --database NAME``
    RecordDecision latency: fresh checks through CheckOrder by a hospital key (results for a
    few thousand bench patients are written into ``recognition_result`` first, from a
    qualified issuer, so their lines are RECOGNIZABLE), then decisions one after another from
    one client, alone and while ``--report-callers`` processes request one-year reports in a
    loop.

Every subcommand prints a table and, with ``--json FILE``, merges its results into FILE (one
section per subcommand), with the machine, PostgreSQL version, git commit and data sizes.

    .venv/bin/python bench/statistics_bench.py generate --database mutualrec_bench_stats \\
        --decisions 10000000
    .venv/bin/python bench/statistics_bench.py all --database mutualrec_bench_stats \\
        --json bench/results/statistics.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

# Run as a script, this file's directory is on sys.path, so the sibling benchmarks import.
from city_gen import (
    ITEM_BOOST,
    LAB_WEIGHTS,
    MODALITY_WEIGHTS,
    Inst,
    copy_text,
    make_institutions,
    make_qualifications,
    make_resident_ids,
    patient_keys,
    rows_block,
    upgrade_schema,
)
from harness import (
    Phases,
    ServerProcess,
    check_snapshot,
    client_env,
    code_options,
    database_url,
    env_option,
    extra_env,
    free_port,
    git_head,
    import_snapshot,
    last_line,
    latency_summary,
    log,
    machine,
    mutualrec_env,
    postgres_cpu,
    process_tree_stats,
    read_json,
    recreate_database,
    run_cli,
    serve,
    snapshot_code,
    table_columns,
    tree_dirty,
    write_json,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_SECRET = "mutualrec-bench-stats-secret-0123456789abcdef"
DEFAULT_DATABASE = "mutualrec_bench_stats"
# Loading a year of statistics at start can take a while on a cold cache.
START_TIMEOUT = 120.0
REPORT_TIMEOUT = 600.0
STATS_TABLES = ("recognition_check", "check_line", "decision")
TALLY_TABLES = ("stat_tally", "stat_delta")

# Lines per check: 1, 2 or 3 ordered items.
LINES_P = (0.40, 0.38, 0.22)
# Verdicts other than RECOGNIZABLE, and their shares of the rest.
OTHER_VERDICTS = (
    ("NO_RESULT", 0.55),
    ("EXPIRED", 0.20),
    ("ISSUER_NOT_QUALIFIED", 0.08),
    ("PRELIMINARY_ONLY", 0.03),
    ("NOT_COVERED", 0.08),
    ("UNKNOWN_CODE", 0.06),
)
# Verdicts whose line cites a result (and so an issuing institution).
CITING = {"RECOGNIZABLE", "EXPIRED", "ISSUER_NOT_QUALIFIED", "PRELIMINARY_ONLY"}
# Decline reasons by item category (imaging-only reasons on imaging items).
LAB_DECLINES = (
    ("CONDITION_CHANGED", 0.34),
    ("FAST_CHANGING_VALUE", 0.20),
    ("BEFORE_SURGERY_OR_TRANSFUSION", 0.14),
    ("EMERGENCY", 0.10),
    ("FORENSIC_ASSESSMENT", 0.01),
    ("PATIENT_REQUEST", 0.10),
    ("ISSUER_FAILED_QUALITY_ASSESSMENT", 0.03),
    ("OTHER", 0.08),
)
IMAGING_DECLINES = (
    ("CONDITION_CHANGED", 0.30),
    ("BEFORE_SURGERY_OR_TRANSFUSION", 0.06),
    ("EMERGENCY", 0.08),
    ("FORENSIC_ASSESSMENT", 0.02),
    ("PATIENT_REQUEST", 0.12),
    ("ISSUER_FAILED_QUALITY_ASSESSMENT", 0.03),
    ("IMAGE_QUALITY", 0.17),
    ("BODY_PART_MISMATCH", 0.12),
    ("OTHER", 0.10),
)
OTHER_TEXTS = (
    "患者要求在本院复查",
    "外院报告不完整,无法判读",
    "病情需要动态观察",
    "医保结算需本院报告",
    "与临床表现不符,需复核",
)
DEPARTMENTS = ("内科", "外科", "急诊科", "儿科", "妇产科", "心内科", "呼吸科", "骨科", "神经内科")
# Clinic hours (Asia/Shanghai), relative weights per hour of the day.
# fmt: off
HOUR_WEIGHTS = (
    0.3, 0.2, 0.2, 0.2, 0.2, 0.3, 0.6, 1.5, 4.0, 5.0, 5.0, 4.5,  # 00-11 h
    2.5, 2.5, 4.0, 4.5, 4.0, 3.0, 2.0, 1.5, 1.2, 1.0, 0.7, 0.5,  # 12-23 h
)
# fmt: on
# Monday first.
WEEKDAY_WEIGHTS = (1.15, 1.10, 1.05, 1.05, 1.00, 0.60, 0.45)
LAB_NOT_COVERED = ("2093-3", "2085-9", "1988-5", "LOCAL-TCM-001", "30341-2", "33914-3")
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def disk_read_mib() -> float:
    """MiB read from the machine's disks so far (/proc/diskstats, whole disks only)."""
    sectors = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/diskstats").read_text().splitlines():
            fields = line.split()
            name = fields[2]
            if Path(f"/sys/block/{name}").exists() and not name.startswith(("loop", "ram")):
                sectors += int(fields[5])
    return sectors * 512 / 2**20


def connect(args: argparse.Namespace, autocommit: bool = True, dbname: str | None = None) -> Any:
    """A psycopg connection to the benchmark database (or ``dbname``)."""
    import psycopg

    return psycopg.connect(
        host=args.pg_host,
        port=args.pg_port,
        user=args.pg_user,
        dbname=dbname or args.database,
        autocommit=autocommit,
    )


def git_commit() -> str:
    """The repository's HEAD, with a mark when mutualrec/ has uncommitted changes."""
    head = git_head(short=True) or "unknown"
    return head + (" (mutualrec/ with uncommitted changes)" if tree_dirty("mutualrec") else "")


def merge_json(path: Path, section: str, body: dict[str, Any]) -> None:
    """Write ``body`` as ``section`` of the JSON object in ``path``, keeping other sections."""
    write_json(path, {**read_json(path), section: body})


def table_sizes(conn: Any, exact: bool = True) -> dict[str, dict[str, int]]:
    """Rows (exact, or the planner's estimate), heap and total bytes of the statistics tables,
    and each index's bytes."""
    sizes: dict[str, dict[str, int]] = {}
    for table in (*STATS_TABLES, *TALLY_TABLES, "institution", "qualification"):
        rows = (
            f"(SELECT count(*) FROM {table})"
            if exact
            else f"(SELECT reltuples::bigint FROM pg_class WHERE oid = '{table}'::regclass)"
        )
        row = conn.execute(
            "SELECT pg_total_relation_size(%s::regclass), pg_relation_size(%s::regclass), " + rows,
            [table, table],
        ).fetchone()
        sizes[table] = {"rows": row[2], "heap_bytes": row[1], "total_bytes": row[0]}
    for name, size in conn.execute(
        "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
        "WHERE relname = ANY(%s) ORDER BY indexrelname",
        [[*STATS_TABLES, *TALLY_TABLES]],
    ).fetchall():
        sizes[name] = {"index_bytes": size}
    return sizes


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


def hex_strings(raw: np.ndarray) -> list[str]:
    """Rows of bytes (n x k, uint8) as n lowercase hex strings of 2k characters."""
    n, k = raw.shape
    out = np.empty((n, 2 * k), dtype=np.uint8)
    out[:, 0::2] = _HEX[raw >> 4]
    out[:, 1::2] = _HEX[raw & 15]
    text = out.tobytes().decode("ascii")
    width = 2 * k
    return [text[i : i + width] for i in range(0, n * width, width)]


def uuid4_strings(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` random version-4 UUIDs as the service writes check ids (``str(uuid.uuid4())``)."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 15]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for dst, src in ((0, 0), (9, 8), (14, 12), (19, 16), (24, 20)):
        width = {0: 8, 9: 4, 14: 4, 19: 4, 24: 12}[dst]
        out[:, dst : dst + width] = digits[:, src : src + width]
    text = out.tobytes().decode("ascii")
    return [text[i : i + 36] for i in range(0, n * 36, 36)]


def _copy_safe(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", " ").replace("\n", " ").replace("\r", " ")


@dataclass
class ItemTable:
    """What the generator needs per catalog item, index-aligned."""

    codes: list[str]
    is_imaging: np.ndarray
    weights: np.ndarray
    ordered: list[list[str]]
    prices: list[str]
    reasons: dict[str, list[list[str]]]


def make_items(insts: Sequence[Inst], version: str) -> ItemTable:
    """Catalog items with order weights (70 % lab lines), ordered-code spellings, reason texts."""
    from mutualrec.matching import reasons
    from mutualrec.matching.catalog import ItemCategory, packaged_catalog
    from mutualrec.matching.facts import (
        InstitutionFacts,
        InstitutionLevel,
        ResultFacts,
        ResultStatus,
    )
    from mutualrec.money import yuan

    items = packaged_catalog().items
    is_img = np.array([i.category is ItemCategory.IMAGING for i in items])
    raw = np.array(
        [
            MODALITY_WEIGHTS.get(i.modality, 1.0) * ITEM_BOOST.get(i.code, 1.0)
            if i.category is ItemCategory.IMAGING
            else LAB_WEIGHTS.get(i.code, 1.0)
            for i in items
        ],
        dtype=float,
    )
    weights = np.where(~is_img, raw / raw[~is_img].sum() * 0.7, raw / raw[is_img].sum() * 0.3)
    tertiary = [i for i in insts if i.level == "tertiary"][:4] or list(insts[:1])
    when = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
    texts: dict[str, list[list[str]]] = {v: [] for v in CITING | {"NO_RESULT"}}
    for item in items:
        pools: dict[str, list[str]] = {v: [] for v in texts}
        for n, issuer in enumerate(tertiary):
            facts = InstitutionFacts(
                issuer.code, issuer.name, InstitutionLevel.TERTIARY, issuer.city, issuer.region
            )
            age = dt.timedelta(hours=5 + 31 * n)
            result = ResultFacts(f"lab:{n}", 1, item.code, ResultStatus.FINAL, when - age, facts)
            until = when - age + item.validity
            # Recorded as a check answers by default: in Chinese.
            pools["RECOGNIZABLE"].append(
                reasons.recognizable(item, item, result, age, until, when).zh
            )
            pools["EXPIRED"].append(
                reasons.expired(
                    item, item, result, age + item.validity, until, item.validity, when
                ).zh
            )
            pools["ISSUER_NOT_QUALIFIED"].append(
                reasons.issuer_without_mark(item, item, result, age).zh
            )
            pools["PRELIMINARY_ONLY"].append(reasons.preliminary_only(item, item, result, age).zh)
        pools["NO_RESULT"] = [reasons.no_result(item).zh]
        for verdict, pool in pools.items():
            texts[verdict].append([_copy_safe(t[:500]) for t in pool])
    texts["NOT_COVERED"] = [
        [_copy_safe(reasons.not_covered(code, version).zh) for code in LAB_NOT_COVERED]
    ]
    return ItemTable(
        codes=[i.code for i in items],
        is_imaging=is_img,
        weights=weights,
        ordered=[[i.code, *i.loinc] for i in items],
        prices=[yuan(i.reference_price_fen) for i in items],
        reasons=texts,
    )


@dataclass
class DayCounts:
    """What one generated day holds (to compare with the database afterwards)."""

    checks: int = 0
    lines: int = 0
    recognizable: int = 0
    decisions: int = 0
    accepted: int = 0
    saving_fen: int = 0

    def add(self, other: DayCounts) -> None:
        """Add ``other`` into these counts."""
        self.checks += other.checks
        self.lines += other.lines
        self.recognizable += other.recognizable
        self.decisions += other.decisions
        self.accepted += other.accepted
        self.saving_fen += other.saving_fen


class DayGenerator:
    """One calendar day of checks, lines and decisions at a time, as COPY text blocks."""

    def __init__(
        self,
        insts: Sequence[Inst],
        items: ItemTable,
        catalog_version: str,
        rng: np.random.Generator,
        patients: int,
    ) -> None:
        self.rng = rng
        self.items = items
        self.catalog_version = catalog_version
        self.inst_ids = np.array([i.id for i in insts])
        size = rng.lognormal(0.0, 0.5, size=len(insts))
        away = np.array([0.1 if i.city != "chongqing" else 1.0 for i in insts])
        ask_level = {"tertiary": 40.0, "secondary": 6.0, "primary": 1.0}
        lab_level = {"tertiary": 100.0, "secondary": 8.0, "primary": 1.0}
        img_level = {"tertiary": 100.0, "secondary": 10.0, "primary": 0.15}
        self.asker_cdf = np.cumsum(size * away * np.array([ask_level[i.level] for i in insts]))
        self.lab_cdf = np.cumsum(size * away * np.array([lab_level[i.level] for i in insts]))
        self.img_cdf = np.cumsum(size * away * np.array([img_level[i.level] for i in insts]))
        # Each asking institution's propensity to accept (mean 0.75).
        self.accept_base = rng.beta(15.0, 5.0, size=len(insts))
        self.item_cdf = np.cumsum(items.weights)
        shares = np.array([share for _, share in OTHER_VERDICTS])
        self.other_cdf = np.cumsum(shares) / shares.sum()
        self.verdicts = ["RECOGNIZABLE", *(name for name, _ in OTHER_VERDICTS)]
        self.hour_p = np.array(HOUR_WEIGHTS) / sum(HOUR_WEIGHTS)
        self.lab_decline = [r for r, _ in LAB_DECLINES]
        self.lab_decline_p = np.array([p for _, p in LAB_DECLINES]) / sum(
            p for _, p in LAB_DECLINES
        )
        self.img_decline = [r for r, _ in IMAGING_DECLINES]
        self.img_decline_p = np.array([p for _, p in IMAGING_DECLINES]) / sum(
            p for _, p in IMAGING_DECLINES
        )
        self.patient_keys = hex_strings(rng.integers(0, 256, size=(patients, 32), dtype=np.uint8))

    def _pick(self, cdf: np.ndarray, n: int) -> np.ndarray:
        found = np.searchsorted(cdf, self.rng.random(n) * cdf[-1], side="right")
        picked: np.ndarray = np.minimum(found, len(cdf) - 1)
        return picked

    def day(
        self, day: dt.date, n: int, frac: float, now: dt.datetime
    ) -> tuple[str, str, str, DayCounts]:
        """COPY blocks (checks, lines, decisions) of ``n`` checks received on ``day``.

        ``frac`` is the day's place in the period (0 first, 1 last): recognizable lines and
        acceptances rise with it. Checks and decisions after ``now`` are left out.
        """
        rng = self.rng
        now_ms = int(now.timestamp() * 1000)
        start_ms = int(dt.datetime.combine(day, dt.time(), SHANGHAI).timestamp() * 1000)
        hours = rng.choice(24, size=n, p=self.hour_p)
        received = np.sort(start_ms + hours * 3_600_000 + rng.integers(0, 3_600_000, size=n))
        received = received[received < now_ms]
        n = len(received)
        if n == 0:
            return "", "", "", DayCounts()
        asker = self._pick(self.asker_cdf, n)
        ids = uuid4_strings(rng, n)
        received_text = [
            t + "+00" for t in np.datetime_as_string(received.astype("datetime64[ms]"), unit="ms")
        ]
        patients = rng.integers(0, len(self.patient_keys), size=n).tolist()
        departments = rng.integers(0, len(DEPARTMENTS), size=n).tolist()
        emergency = (rng.random(n) < 0.04).tolist()
        stamp = day.strftime("%Y%m%d")
        asker_ids = self.inst_ids[asker].tolist()
        keys = self.patient_keys
        version = self.catalog_version
        checks_block = "".join(
            f"{ids[c]}\t{asker_ids[c]}\t{keys[patients[c]]}\t{received_text[c]}\t{version}\t"
            f"MZ{stamp}{c:06d}\t{DEPARTMENTS[departments[c]]}\t{'t' if emergency[c] else 'f'}\n"
            for c in range(n)
        )

        # Lines.
        per_check = rng.choice(3, size=n, p=LINES_P) + 1
        total = int(per_check.sum())
        owner = np.repeat(np.arange(n), per_check)
        number = np.arange(total) - np.repeat(np.cumsum(per_check) - per_check, per_check)
        item = self._pick(self.item_cdf, total)
        recognizable_p = 0.34 + 0.12 * frac
        u = rng.random(total)
        other = np.minimum(
            np.searchsorted(self.other_cdf, (u - recognizable_p) / (1 - recognizable_p)),
            len(self.other_cdf) - 1,
        )
        verdict = np.where(u < recognizable_p, 0, 1 + other)
        imaging = self.items.is_imaging[item]
        issuer = np.where(imaging, self._pick(self.img_cdf, total), self._pick(self.lab_cdf, total))
        unqualified = rng.integers(0, len(self.inst_ids), size=total)
        issuer_ids = self.inst_ids[
            np.where(verdict == self.verdicts.index("ISSUER_NOT_QUALIFIED"), unqualified, issuer)
        ].tolist()
        refs = rng.integers(1, 30_000_000, size=total).tolist()
        spelling = rng.random(total).tolist()
        picks = rng.integers(0, 1 << 30, size=total).tolist()
        result_versions = np.where(rng.random(total) < 0.9, 1, 2).tolist()
        verdict_l = verdict.tolist()
        item_l = item.tolist()
        imaging_l = imaging.tolist()
        owner_l = owner.tolist()
        number_l = number.tolist()
        codes = self.items.codes
        ordered = self.items.ordered
        prices = self.items.prices
        pools = self.items.reasons
        names = self.verdicts
        out: list[str] = []
        append = out.append
        counts = DayCounts(checks=n, lines=total)
        for j in range(total):
            v = names[verdict_l[j]]
            it = item_l[j]
            pick = picks[j]
            if v == "NOT_COVERED":
                k = pick % len(LAB_NOT_COVERED)
                ordered_code, item_code = LAB_NOT_COVERED[k], ""
                reason = pools["NOT_COVERED"][0][k]
            elif v == "UNKNOWN_CODE":
                ordered_code, item_code = f"HIS{pick % 100000:05d}", ""
                reason = (
                    f"{ordered_code} is not a known item code, LOINC code or local order code "
                    "of this institution"
                )
            else:
                spellings = ordered[it]
                s = spelling[j]
                ordered_code = (
                    spellings[0]
                    if s < 0.75 or len(spellings) == 1
                    else spellings[1 + int((s - 0.75) * 4 * (len(spellings) - 1))]
                )
                item_code = codes[it]
                pool = pools[v][it]
                reason = pool[pick % len(pool)]
            if v in CITING:
                ref = (
                    f"study:1.2.826.0.1.3680043.10.1151.{refs[j]}"
                    if imaging_l[j]
                    else f"lab:{refs[j]}"
                )
                cited = f"{ref}\t{result_versions[j]}\t{issuer_ids[j]}"
            else:
                cited = "\t0\t\\N"
            saving = prices[it] if v == "RECOGNIZABLE" else "0.00"
            append(
                f"{ids[owner_l[j]]}\t{number_l[j]}\t{ordered_code}\t{item_code}\t{v}\t{reason}\t"
                f"{cited}\t{saving}\n"
            )
        lines_block = "".join(out)

        # Decisions, on recognizable lines only, in the order they were made.
        recognizable = np.nonzero(verdict == 0)[0]
        counts.recognizable = len(recognizable)
        decided = recognizable[rng.random(len(recognizable)) < 0.95]
        m = len(decided)
        accept_p = np.clip(self.accept_base[asker[owner[decided]]] + 0.10 * (frac - 0.5), 0.2, 0.98)
        accepted = rng.random(m) < accept_p
        delay = np.clip(rng.lognormal(np.log(90_000), 1.3, size=m), 5_000, 23 * 3_600_000)
        decided_at = received[owner[decided]] + delay.astype(np.int64)
        made = decided_at < now_ms
        decided, accepted, decided_at = decided[made], accepted[made], decided_at[made]
        m = len(decided)
        order = np.argsort(decided_at, kind="stable")
        decided, accepted, decided_at = decided[order], accepted[order], decided_at[order]
        decided_imaging = imaging[decided]
        lab_reason = rng.choice(len(self.lab_decline), size=m, p=self.lab_decline_p).tolist()
        img_reason = rng.choice(len(self.img_decline), size=m, p=self.img_decline_p).tolist()
        other_text = rng.integers(0, len(OTHER_TEXTS), size=m).tolist()
        decided_text = np.datetime_as_string(decided_at.astype("datetime64[ms]"), unit="ms")
        out = []
        append = out.append
        fen = 0
        for j, (line, ok, is_img, when) in enumerate(
            zip(
                decided.tolist(),
                accepted.tolist(),
                decided_imaging.tolist(),
                decided_text.tolist(),
                strict=True,
            )
        ):
            check_id = ids[owner_l[line]]
            if ok:
                booked = prices[item_l[line]]
                fen += int(booked.replace(".", ""))
                append(f"{check_id}\t{number_l[line]}\tt\t\t\t{booked}\t{when}+00\n")
            else:
                reason = (
                    self.img_decline[img_reason[j]] if is_img else self.lab_decline[lab_reason[j]]
                )
                text = OTHER_TEXTS[other_text[j]] if reason == "OTHER" else ""
                append(f"{check_id}\t{number_l[line]}\tf\t{reason}\t{text}\t0.00\t{when}+00\n")
        counts.decisions = m
        counts.accepted = int(accepted.sum())
        counts.saving_fen = fen
        return checks_block, lines_block, "".join(out), counts


class CopyWorker(threading.Thread):
    """Loads one table in one transaction: TRUNCATE, then COPY ... FREEZE of queued blocks."""

    def __init__(self, args: argparse.Namespace, table: str, columns: Sequence[str]) -> None:
        super().__init__(daemon=True, name=f"copy-{table}")
        self.args = args
        self.table = table
        self.columns = columns
        self.blocks: queue.Queue[str | None] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.bytes = 0
        self.seconds = 0.0

    def run(self) -> None:
        """Consume blocks until None; commit."""
        t0 = time.perf_counter()
        try:
            with connect(self.args, autocommit=False) as conn:
                conn.execute("SET synchronous_commit = off")
                conn.execute(f"TRUNCATE {self.table}")
                statement = f"COPY {self.table} ({', '.join(self.columns)}) FROM STDIN (FREEZE)"
                with conn.cursor() as cur, cur.copy(statement) as cp:
                    while (block := self.blocks.get()) is not None:
                        cp.write(block)
                        self.bytes += len(block)
                conn.commit()
        except BaseException as exc:  # reported by put() and finish()
            self.error = exc
            while self.blocks.get() is not None:
                pass
        self.seconds = time.perf_counter() - t0

    def put(self, block: str | None) -> None:
        """Queue a block (None ends the load); raises if the load failed."""
        if self.error is not None:
            raise RuntimeError(f"loading {self.table} failed: {self.error}") from self.error
        if block != "":
            self.blocks.put(block)

    def finish(self) -> None:
        """End the load and wait for the commit."""
        self.put(None)
        self.join()
        if self.error is not None:
            raise RuntimeError(f"loading {self.table} failed: {self.error}") from self.error


def schema_objects(conn: Any) -> dict[str, list[tuple[str, ...]]]:
    """Constraints and indexes of the statistics tables, as PostgreSQL spells them."""
    constraints = conn.execute(
        "SELECT conrelid::regclass::text, conname, contype::text, pg_get_constraintdef(oid) "
        "FROM pg_constraint WHERE conrelid::regclass::text = ANY(%s) ORDER BY 1, 2",
        [list(STATS_TABLES)],
    ).fetchall()
    indexes = conn.execute(
        "SELECT tablename, indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = current_schema() AND tablename = ANY(%s) ORDER BY 1, 2",
        [list(STATS_TABLES)],
    ).fetchall()
    return {"constraints": [tuple(r) for r in constraints], "indexes": [tuple(r) for r in indexes]}


def drop_for_load(conn: Any, schema: dict[str, list[tuple[str, ...]]]) -> None:
    """Drop foreign keys, primary keys and indexes of the statistics tables."""
    constraints = schema["constraints"]
    for table, name, kind, _ in constraints:
        if kind == "f":
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for table, name, kind, _ in constraints:
        if kind in ("p", "u"):
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    backing = {name for _, name, kind, _ in constraints if kind in ("p", "u")}
    for _, name, _ in schema["indexes"]:
        if name not in backing:
            conn.execute(f'DROP INDEX "{name}"')


def rebuild_after_load(conn: Any, schema: dict[str, list[tuple[str, ...]]], phases: Phases) -> None:
    """Primary keys, indexes, then foreign keys (validated once each), as they were."""
    constraints = schema["constraints"]
    for table, name, kind, definition in constraints:
        if kind in ("p", "u"):
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            phases.done(f"constraint {name}")
    backing = {name for _, name, kind, _ in constraints if kind in ("p", "u")}
    for _, name, definition in schema["indexes"]:
        if name not in backing:
            conn.execute(definition)
            phases.done(f"index {name}")
    for table, name, kind, definition in constraints:
        if kind == "f":
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            phases.done(f"foreign key {name}")


def plan_days(
    args: argparse.Namespace, today: dt.date, rng: np.random.Generator
) -> list[tuple[dt.date, int, float]]:
    """(day, checks, place in the period) for each day, scaled to about ``--decisions``."""
    days = [today - dt.timedelta(days=n) for n in range(args.days - 1, -1, -1)]
    fracs = np.linspace(0.0, 1.0, len(days))
    weights = np.array(
        [
            WEEKDAY_WEIGHTS[d.weekday()] * (0.8 + 0.4 * f) * rng.normal(1.0, 0.04)
            for d, f in zip(days, fracs, strict=True)
        ]
    )
    mean_lines = sum((k + 1) * p for k, p in enumerate(LINES_P))
    recognizable = float(np.average(0.34 + 0.12 * fracs, weights=weights))
    checks = args.decisions / (mean_lines * recognizable * 0.95)
    per_day = np.rint(weights / weights.sum() * checks).astype(int)
    return [(d, int(c), float(f)) for d, c, f in zip(days, per_day, fracs, strict=True)]


# Each grouping's key from a line (l), its check (c), the asker (a), the issuer (i, may be
# missing) and the item's category (k), as mutualrec.statistics.report.Directory.key makes it.
_GROUP_KEYS = {
    "district": "a.district",
    "asking_institution": "a.code",
    "issuing_institution": "coalesce(i.code, '')",
    "issuer_asker_pair": "coalesce(i.code, '') || '>' || a.code",
    "item": "l.item_code",
    "category": (
        "coalesce(k.category, CASE WHEN l.item_code = '' THEN '' "
        "WHEN l.item_code LIKE 'LAB-%%' THEN 'lab' ELSE 'imaging' END)"
    ),
}


def build_tallies(conn: Any, categories: dict[str, str], phases: Phases) -> None:
    """``stat_tally`` from the record, one grouping per statement, then ``stat_tally_month``
    from it (the service keeps both on write; reports read nothing else)."""
    from mutualrec.statistics.tally import REASON_COLUMNS, TALLY_REASONS
    from mutualrec.storage.statistics_index import month_fold_sql

    conn.execute("CREATE TEMP TABLE bench_item_category (code text PRIMARY KEY, category text)")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO bench_item_category VALUES (%s, %s)", sorted(categories.items())
        )
    conn.execute("TRUNCATE stat_tally, stat_tally_month, stat_delta")
    lines = (
        "FROM check_line l JOIN recognition_check c ON c.id = l.check_id "
        "JOIN institution a ON a.id = c.institution_id "
        "LEFT JOIN institution i ON i.id = l.issuer_institution_id "
        "LEFT JOIN bench_item_category k ON k.code = l.item_code "
        "LEFT JOIN decision d ON d.check_id = l.check_id AND d.line = l.line"
    )
    day = "(c.received_at AT TIME ZONE 'Asia/Shanghai')::date"
    known = [r for r in TALLY_REASONS if r != "UNSPECIFIED"]
    reasons = [f"count(*) FILTER (WHERE NOT d.accepted AND d.reason = '{r}')" for r in known] + [
        "count(*) FILTER (WHERE NOT d.accepted AND d.reason NOT IN ("
        + ", ".join(f"'{r}'" for r in known)
        + "))"
    ]
    for group_by, key in _GROUP_KEYS.items():
        conn.execute(
            "INSERT INTO stat_tally (group_by, day, group_key, checks, items_checked, "
            "items_recognizable, accepted, saving_fen, declined, "
            + ", ".join(REASON_COLUMNS)
            + f") SELECT %s, {day}, {key}, count(DISTINCT l.check_id), count(*), "
            "count(*) FILTER (WHERE l.verdict = 'RECOGNIZABLE'), "
            "count(*) FILTER (WHERE d.accepted), "
            "coalesce(sum(round(d.booked_saving::numeric * 100)) FILTER (WHERE d.accepted), 0), "
            "count(*) FILTER (WHERE NOT d.accepted), "
            + ", ".join(reasons)
            + f" {lines} GROUP BY 2, 3",
            [group_by],
        )
        phases.done(f"tallies by {group_by}")
    conn.execute(month_fold_sql("postgresql"))
    phases.done("month tallies")
    conn.execute("DROP TABLE bench_item_category")


def fresh_db(args: argparse.Namespace) -> None:
    """Drop and create the benchmark database (connecting to the maintenance database)."""
    with connect(args, dbname=args.maintenance_db) as conn:
        recreate_database(conn, args.database)


def cmd_generate(args: argparse.Namespace) -> int:
    """The ``generate`` subcommand."""
    from sqlalchemy.orm import Session

    from mutualrec.matching.catalog import packaged_catalog
    from mutualrec.storage import catalog_store
    from mutualrec.storage.db import make_engine
    from mutualrec.storage.models import CheckLine, Decision, RecognitionCheck

    if not args.database.startswith("mutualrec_bench_stats"):
        raise SystemExit("--database must start with mutualrec_bench_stats (it is dropped first)")
    rng = np.random.default_rng(args.seed)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    today = now.astimezone(SHANGHAI).date()
    url = database_url(args.database, args.pg_host, args.pg_user, args.pg_port)
    phases = Phases()
    t_start = time.perf_counter()
    fresh_db(args)
    log(f"database {args.database} created; {upgrade_schema(url)}")
    engine = make_engine(url)
    with Session(engine) as session, session.begin():
        catalog_store.ensure_packaged_catalog(session)
    engine.dispose()
    catalog = packaged_catalog()
    phases.done("schema and catalog")

    conn = connect(args)
    conn.execute("SET synchronous_commit = off")
    conn.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
    conn.execute("SET max_parallel_maintenance_workers = 2")
    insts = make_institutions(args.institutions, rng)
    quals = make_qualifications(insts, now, 3, rng)
    with conn.transaction():
        copy_text(
            conn,
            "institution",
            ("id", "code", "name", "district", "level", "city", "region", "created_at"),
            iter(
                [
                    rows_block(
                        [
                            (i.id, i.code, i.name, i.district, i.level, i.city, i.region, now)
                            for i in insts
                        ]
                    )
                ]
            ),
        )
        copy_text(
            conn,
            "qualification",
            (
                "institution_id",
                "item_code",
                "category",
                "scope",
                "valid_from",
                "valid_until",
                "created_at",
            ),
            iter([rows_block([(*q, now) for q in quals])]),
        )
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('institution', 'id'), "
            "(SELECT max(id) FROM institution))"
        )
    districts = len({i.district for i in insts})
    phases.done(
        "institutions", f"{len(insts)} in {districts} districts, {len(quals)} qualifications"
    )

    items = make_items(insts, catalog.version)
    generator = DayGenerator(insts, items, catalog.version, rng, args.patients)
    plan = plan_days(args, today, rng)
    schema = schema_objects(conn)
    drop_for_load(conn, schema)
    phases.done("item plan, drop keys and indexes")

    # The generator's rows hold every column of their tables, in the tables' order.
    workers = [
        CopyWorker(args, "recognition_check", table_columns(RecognitionCheck)),
        CopyWorker(args, "check_line", table_columns(CheckLine)),
        CopyWorker(args, "decision", table_columns(Decision)),
    ]
    for worker in workers:
        worker.start()
    counts = DayCounts()
    generating = 0.0
    last_log = time.perf_counter()
    try:
        for n, (day, checks, frac) in enumerate(plan):
            t0 = time.perf_counter()
            blocks = generator.day(day, checks, frac, now)
            generating += time.perf_counter() - t0
            for worker, block in zip(workers, blocks[:3], strict=True):
                worker.put(block)
            counts.add(blocks[3])
            if time.perf_counter() - last_log > 15 or n == len(plan) - 1:
                last_log = time.perf_counter()
                log(
                    f"  {day}: {n + 1}/{len(plan)} days, {counts.checks:,} checks, "
                    f"{counts.lines:,} lines, {counts.decisions:,} decisions"
                )
    finally:
        for worker in workers:
            worker.finish()
    load_s = phases.done(
        "COPY",
        f"{counts.checks:,} checks, {counts.lines:,} lines, {counts.decisions:,} decisions; "
        f"{generating:.0f} s of it generating rows in Python",
    )
    rebuild_after_load(conn, schema, phases)
    rebuilt = schema_objects(conn)
    if rebuilt != schema:
        raise SystemExit(
            "the rebuilt keys and indexes differ from the migrated ones:\n"
            f"{json.dumps(schema, indent=1)}\n{json.dumps(rebuilt, indent=1)}"
        )
    build_tallies(conn, {item.code: item.category.value for item in catalog.items}, phases)
    conn.execute("VACUUM (ANALYZE)")
    phases.done("VACUUM ANALYZE")

    held = conn.execute(
        "SELECT (SELECT count(*) FROM recognition_check), (SELECT count(*) FROM check_line), "
        "(SELECT count(*) FILTER (WHERE verdict = 'RECOGNIZABLE') FROM check_line), "
        "(SELECT count(*) FROM decision), (SELECT count(*) FILTER (WHERE accepted) FROM decision),"
        " (SELECT coalesce(sum(booked_saving::numeric), 0) FROM decision)"
    ).fetchone()
    expected = (
        counts.checks,
        counts.lines,
        counts.recognizable,
        counts.decisions,
        counts.accepted,
        Decimal(counts.saving_fen) / 100,
    )
    if tuple(held) != expected:
        raise SystemExit(f"the database holds {held}, generated {expected}")
    verdicts = dict(
        conn.execute("SELECT verdict, count(*) FROM check_line GROUP BY verdict").fetchall()
    )
    reasons = dict(
        conn.execute(
            "SELECT reason, count(*) FROM decision WHERE NOT accepted GROUP BY reason"
        ).fetchall()
    )
    sizes = table_sizes(conn)
    database_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    conn.close()
    phases.done("checks and sizes")
    total_s = time.perf_counter() - t_start
    first_day, last_day = plan[0][0], plan[-1][0]
    summary = {
        "database": args.database,
        "database_url": url,
        "generated_at": now.isoformat(),
        "days": [first_day.isoformat(), last_day.isoformat()],
        "seed": args.seed,
        "institutions": len(insts),
        "districts": districts,
        "qualifications": len(quals),
        "checks": counts.checks,
        "lines": counts.lines,
        "recognizable_lines": counts.recognizable,
        "decisions": counts.decisions,
        "accepted": counts.accepted,
        "saving_cny": str(Decimal(counts.saving_fen) / 100),
        "verdicts": verdicts,
        "declines_by_reason": reasons,
        "database_bytes": database_bytes,
        "sizes": sizes,
        "phases_s": phases.seconds,
        "copy_s": round(load_s, 1),
        "python_generating_s": round(generating, 1),
        "total_s": round(total_s, 1),
        "keys_and_indexes_dropped_during_load": True,
        "machine": machine(Path(tempfile.gettempdir())),
        "git": git_commit(),
    }
    print(
        f"\n{args.database}: {counts.checks:,} checks, {counts.lines:,} lines "
        f"({counts.recognizable:,} recognizable), {counts.decisions:,} decisions "
        f"({counts.accepted:,} accepted, {summary['saving_cny']} yuan) over "
        f"{first_day}..{last_day}, {len(insts)} institutions in {districts} districts; "
        f"{database_bytes / 2**30:.1f} GiB in {total_s / 60:.1f} min"
    )
    print("| phase | seconds |\n|---|---:|")
    for name, secs in phases.seconds.items():
        print(f"| {name} | {secs:.1f} |")
    print("\n| relation | rows | total MiB |\n|---|---:|---:|")
    for name, info in sizes.items():
        mib = info.get("total_bytes", info.get("index_bytes", 0)) / 2**20
        print(f"| {name} | {info.get('rows', '')} | {mib:.0f} |")
    workdir = Path(tempfile.gettempdir()) / "mutualrec-stats" / args.database
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "generated.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if args.json:
        merge_json(args.json, "generate", json.loads(json.dumps(summary, default=str)))
    return 0


# ---------------------------------------------------------------------------------------------
# Server and reports
# ---------------------------------------------------------------------------------------------

GROUPS = {
    "district": "GROUP_BY_DISTRICT",
    "asking-institution": "GROUP_BY_ASKING_INSTITUTION",
    "issuing-institution": "GROUP_BY_ISSUING_INSTITUTION",
    "pair": "GROUP_BY_ISSUER_ASKER_PAIR",
    "item": "GROUP_BY_ITEM",
    "category": "GROUP_BY_CATEGORY",
}
DEFAULT_CASES = ("district:month:365", "item:month:365", "district:day:92", "item:day:92")
DIAGNOSTIC_CASES = ("district:month:365:closed", "item:month:365:closed")
DECISION_ITEMS = ("LAB-K", "LAB-NA", "LAB-GLU", "LAB-CBC", "LAB-ALT")


@dataclass(frozen=True)
class Case:
    """A report asked repeatedly: grouping, granularity, days, and whether it ends today."""

    spec: str
    group_by: str
    granularity: str
    days: int
    closed_only: bool

    @classmethod
    def parse(cls, spec: str) -> Case:
        """``GROUP:GRANULARITY:DAYS[:closed]`` (closed: ends the day before yesterday)."""
        parts = spec.split(":")
        if (
            len(parts) not in (3, 4)
            or parts[0] not in GROUPS
            or (parts[3:] not in ([], ["closed"]))
        ):
            raise argparse.ArgumentTypeError(f"GROUP:GRANULARITY:DAYS[:closed], got {spec!r}")
        return cls(spec, parts[0], parts[1], int(parts[2]), parts[3:] == ["closed"])

    def request(self, today: dt.date) -> Any:
        """The ReportRequest of this case, for the period ending today (or closed)."""
        from mutualrec.v1 import statistics_pb2

        end = today - dt.timedelta(days=2 if self.closed_only else 0)
        return statistics_pb2.ReportRequest(
            from_date=(end - dt.timedelta(days=self.days - 1)).isoformat(),
            to_date=end.isoformat(),
            granularity=f"GRANULARITY_{self.granularity.upper()}",
            group_by=GROUPS[self.group_by],
        )


@dataclass
class Server:
    """A running ``mutualrec serve`` on the benchmark database."""

    process: ServerProcess
    target: str
    env: dict[str, str]
    code_dir: Path
    code: str
    run_dir: Path

    def cli(self, *argv: str) -> str:
        """A ``mutualrec`` command with the server's settings; its last output line."""
        return last_line(run_cli(self.env, self.code_dir, *argv, timeout=START_TIMEOUT))

    def cpu(self) -> float:
        """User + system CPU seconds of the server's processes so far."""
        stats = process_tree_stats(self.process.pid)
        return stats.user_seconds + stats.sys_seconds


def start_server(args: argparse.Namespace) -> Server:
    """``mutualrec serve`` from a private copy of the package at ``--ref`` (or the work tree)."""
    scratch = Path(tempfile.gettempdir()) / "mutualrec-stats"
    (scratch / "runs").mkdir(parents=True, exist_ok=True)
    code_dir, code = snapshot_code(scratch, None if args.worktree else args.ref)
    check_snapshot(code_dir)
    # This process's own calls into mutualrec (plans, profile) run the same code as the server.
    if any(name == "mutualrec" or name.startswith("mutualrec.") for name in sys.modules):
        raise RuntimeError("mutualrec was imported before the code snapshot")
    import_snapshot(code_dir)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=scratch / "runs"))
    env = mutualrec_env(
        code_dir,
        database_url=database_url(args.database, args.pg_host, args.pg_user, args.pg_port),
        listen=f"127.0.0.1:{free_port()}",
        patient_key_secret=args.secret,
        data_dir=str(run_dir / "data"),
        auto_migrate="false",
    )
    extra_env(env, args.mutualrec_env)
    process, target = serve(env, code_dir, run_dir / "server.log", START_TIMEOUT)
    log(f"server pid {process.pid} on {target} ({code}); log {run_dir / 'server.log'}")
    return Server(process, target, env, code_dir, code, run_dir)


def _pg_cpu(database: str) -> float:
    cpu, ours = postgres_cpu(database)
    return sum(cpu[pid] for pid in ours if pid in cpu)


@dataclass
class Timed:
    """One timed report call."""

    seconds: float
    rows: int
    bytes: int
    items_checked: int


def report_call(stub: Any, request: Any, key: str, timeout: float) -> Timed:
    """GetSavingsReport, timed on the client, end to end."""
    t0 = time.perf_counter()
    reply = stub.GetSavingsReport(
        request, metadata=(("authorization", f"Bearer {key}"),), timeout=timeout
    )
    took = time.perf_counter() - t0
    return Timed(took, len(reply.rows), reply.ByteSize(), reply.totals.items_checked)


def independent_totals(args: argparse.Namespace, first: dt.date, last: dt.date) -> dict[str, Any]:
    """Checks, lines, recognizable, accepted, declined and saving over the days, by SQL."""
    start = dt.datetime.combine(first, dt.time(), SHANGHAI)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), SHANGHAI)
    with connect(args) as conn:
        conn.execute("SET max_parallel_workers_per_gather = 2")
        row = conn.execute(
            "SELECT count(DISTINCT c.id), count(*), "
            "count(*) FILTER (WHERE l.verdict = 'RECOGNIZABLE'), "
            "count(d.line) FILTER (WHERE d.accepted), count(d.line) FILTER (WHERE NOT d.accepted), "
            "coalesce(sum(d.booked_saving::numeric) FILTER (WHERE d.accepted), 0) "
            "FROM recognition_check c JOIN check_line l ON l.check_id = c.id "
            "LEFT JOIN decision d ON d.check_id = l.check_id AND d.line = l.line "
            "WHERE c.received_at >= %s AND c.received_at < %s",
            [start, end],
        ).fetchone()
    keys = ("checks", "items_checked", "items_recognizable", "accepted", "declined", "saving")
    return dict(zip(keys, [*row[:5], str(row[5])], strict=True))


def explain_report(args: argparse.Namespace, today: dt.date) -> list[dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of the statement a one-year report (month rows) by district
    and by item sends, captured from ``statistics_index.report``, and that function's own
    latency in-process (median of 20 calls: the SQL and building the rows)."""
    from sqlalchemy import event
    from sqlalchemy.orm import sessionmaker

    from mutualrec.statistics.periods import Granularity, Period
    from mutualrec.statistics.report import GroupBy
    from mutualrec.storage import statistics_index
    from mutualrec.storage.db import make_engine

    engine = make_engine(database_url(args.database, args.pg_host, args.pg_user, args.pg_port))
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    sessions = sessionmaker(engine)
    period = Period(today - dt.timedelta(days=364), today)
    out = []
    try:
        for grouping in (GroupBy.DISTRICT, GroupBy.ITEM):
            seconds = []
            rows: list[Any] = []
            for _ in range(20):
                captured.clear()
                with sessions() as session:
                    t0 = time.perf_counter()
                    rows = statistics_index.report(session, grouping, Granularity.MONTH, period)
                    seconds.append(time.perf_counter() - t0)
            statement, parameters = captured[-1]
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                plan = "\n".join(r[0] for r in cursor.fetchall())
                raw.rollback()
            finally:
                raw.close()
            out.append(
                {
                    "group_by": grouping.value,
                    "rows": len(rows),
                    "call_p50_ms": round(1000 * statistics.median(seconds), 1),
                    "sql": statement,
                    "plan": plan,
                }
            )
    finally:
        engine.dispose()
    return out


def run_reports(
    args: argparse.Namespace, server: Server, checkpoint: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """The year's totals against SQL, repeated reports, and the report statement's plan.

    ``checkpoint`` is given the results so far after every step (a long run that is stopped
    keeps what it measured).
    """
    import grpc

    from mutualrec.v1 import statistics_pb2_grpc

    today = dt.datetime.now(SHANGHAI).date()
    key = server.cli("admin", "issue-key", "--role", "regulator")
    channel = grpc.insecure_channel(
        server.target, options=[("grpc.max_receive_message_length", -1)]
    )
    stub = statistics_pb2_grpc.StatisticsServiceStub(channel)
    out: dict[str, Any] = {"today": today.isoformat()}
    request = Case.parse("district:month:365").request(today)
    if not args.skip_totals_check:
        # Correctness: the year's totals against an independent count.
        reply = stub.GetSavingsReport(
            request, metadata=(("authorization", f"Bearer {key}"),), timeout=REPORT_TIMEOUT
        )
        t = reply.totals
        reported = {
            "checks": t.checks,
            "items_checked": t.items_checked,
            "items_recognizable": t.items_recognizable,
            "accepted": t.accepted,
            "declined": t.declined,
            "saving": t.saving,
        }
        t0 = time.perf_counter()
        counted = independent_totals(
            args, dt.date.fromisoformat(request.from_date), dt.date.fromisoformat(request.to_date)
        )
        out["totals_check"] = {
            "report": reported,
            "sql": counted,
            "equal": reported == counted,
            "sql_s": round(time.perf_counter() - t0, 1),
        }
        log(f"  totals equal an independent SQL count: {reported == counted}")
        checkpoint(out)

    # Repeated reports.
    cases = [Case.parse(c) for c in args.cases]
    diagnostics = [Case.parse(c) for c in args.diagnostic_cases]
    repeated: list[dict[str, Any]] = []
    out["repeated"] = repeated
    for case, calls in [(c, args.calls) for c in cases] + [
        (c, args.diagnostic_calls) for c in diagnostics
    ]:
        if calls <= 0:
            continue
        request = case.request(today)
        for _ in range(args.warmup):
            report_call(stub, request, key, REPORT_TIMEOUT)
        cpu0, pg0, read0 = server.cpu(), _pg_cpu(args.database), disk_read_mib()
        timings = [report_call(stub, request, key, REPORT_TIMEOUT) for _ in range(calls)]
        cpu1, pg1, read1 = server.cpu(), _pg_cpu(args.database), disk_read_mib()
        summary = latency_summary([t.seconds for t in timings])
        repeated.append(
            {
                "case": case.spec,
                "period": [request.from_date, request.to_date],
                "diagnostic": case in diagnostics,
                "latency": summary,
                "rows": timings[-1].rows,
                "reply_bytes": timings[-1].bytes,
                "server_cpu_ms_per_call": round(1000 * (cpu1 - cpu0) / calls, 1),
                "postgres_cpu_ms_per_call": round(1000 * (pg1 - pg0) / calls, 1),
                "disk_read_mib_per_call": round((read1 - read0) / calls, 1),
                "meets_200ms_p99": summary["p99_ms"] <= 200,
            }
        )
        log(
            f"  {case.spec}: p50 {summary['p50_ms']:.0f} ms, p99 {summary['p99_ms']:.0f} ms "
            f"({calls} calls, {timings[-1].rows} rows)"
        )
        checkpoint(out)
    channel.close()

    if not args.skip_profile:
        log("EXPLAIN ANALYZE of a one-year report's statement (by district and by item)")
        out["report_plans"] = explain_report(args, today)
        checkpoint(out)
    return out


# ---------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------


def report_loop(argv: Sequence[str]) -> int:
    """A report caller (a separate process): one-year reports back to back until told to stop.

    Prints READY after its first report, writes its latencies to OUT when STOP exists.
    """
    import grpc

    from mutualrec.v1 import statistics_pb2_grpc

    target, key, stop, out, *specs = argv
    cases = [Case.parse(s) for s in specs]
    today = dt.datetime.now(SHANGHAI).date()
    stub = statistics_pb2_grpc.StatisticsServiceStub(
        grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", -1)])
    )
    seconds: list[float] = []
    n = 0
    while not Path(stop).exists():
        timed = report_call(stub, cases[n % len(cases)].request(today), key, REPORT_TIMEOUT)
        seconds.append(timed.seconds)
        if n == 0:
            print("READY", flush=True)
        n += 1
    Path(out).write_text(json.dumps(seconds), encoding="utf-8")
    return 0


def prepare_patients(
    args: argparse.Namespace, server: Server, count: int
) -> tuple[list[str], str, str]:
    """Resident ID numbers whose index holds fresh results of DECISION_ITEMS from a qualified
    tertiary issuer, and the (issuer, asker) institution codes."""
    with connect(args) as conn:
        issuer = conn.execute(
            "SELECT i.id, i.code FROM institution i JOIN qualification q "
            "ON q.institution_id = i.id WHERE i.level = 'tertiary' AND i.city = 'chongqing' "
            "AND q.category = 'lab' AND q.item_code IS NULL AND q.valid_until IS NULL "
            "AND q.valid_from < now() - interval '1 day' ORDER BY i.code LIMIT 1"
        ).fetchone()
        asker = conn.execute(
            "SELECT code FROM institution WHERE level = 'tertiary' AND city = 'chongqing' "
            "AND id <> %s ORDER BY code LIMIT 1",
            [issuer[0]],
        ).fetchone()
        numbers = make_resident_ids(count, np.random.default_rng(args.seed + 1))
        keys = patient_keys(numbers, args.secret.encode("utf-8"))
        reported = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        rows = [
            (
                key,
                item,
                "lab",
                f"lab:statsbench-{n}",
                1,
                "final",
                reported,
                issuer[0],
                '{"value":"4.1","unit":"mmol/L"}',
            )
            for n, key in enumerate(keys)
            for item in DECISION_ITEMS
        ]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO recognition_result (patient_key, item_code, kind, result_ref, "
                "version, status, report_time, institution_id, detail) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (result_ref, item_code) DO UPDATE SET "
                "patient_key = excluded.patient_key, report_time = excluded.report_time, "
                "institution_id = excluded.institution_id",
                rows,
            )
    return numbers, issuer[1], asker[0]


def make_checks(server: Server, key: str, numbers: Sequence[str]) -> list[tuple[str, str]]:
    """One CheckOrder per patient; the (check id, item) of every RECOGNIZABLE line."""
    import grpc

    from mutualrec.v1 import common_pb2, recognition_pb2, recognition_pb2_grpc

    lines: list[tuple[str, str]] = []
    verdicts: dict[str, int] = {}
    with grpc.insecure_channel(server.target) as channel:
        stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
        for n, number in enumerate(numbers):
            reply = stub.CheckOrder(
                recognition_pb2.CheckOrderRequest(
                    patient=common_pb2.PatientIdentity(
                        document_type=common_pb2.RESIDENT_ID_CARD, document_number=number
                    ),
                    ordered_codes=list(DECISION_ITEMS),
                    context=recognition_pb2.ClinicalContext(
                        order_id=f"STATSBENCH{n:06d}", department="内科"
                    ),
                ),
                metadata=(("authorization", f"Bearer {key}"),),
                timeout=30,
            )
            for line in reply.lines:
                name = recognition_pb2.Verdict.Name(line.verdict)
                verdicts[name] = verdicts.get(name, 0) + 1
                if name == "RECOGNIZABLE":
                    lines.append((reply.check_id, line.item_code))
    if not lines:
        raise SystemExit(f"no RECOGNIZABLE line among the bench checks: {verdicts}")
    return lines


def decide_all(
    server: Server, key: str, lines: Sequence[tuple[str, str]], rng: np.random.Generator
) -> list[float]:
    """RecordDecision on every line, one after another; the latencies (s)."""
    import grpc

    from mutualrec.v1 import recognition_pb2, recognition_pb2_grpc

    reasons = [r for r, _ in LAB_DECLINES]
    weights = np.array([p for _, p in LAB_DECLINES]) / sum(p for _, p in LAB_DECLINES)
    requests = []
    for check_id, item in lines:
        if rng.random() < 0.75:
            requests.append(
                recognition_pb2.RecordDecisionRequest(
                    check_id=check_id, item_code=item, decision=recognition_pb2.ACCEPTED
                )
            )
            continue
        reason = reasons[int(rng.choice(len(reasons), p=weights))]
        requests.append(
            recognition_pb2.RecordDecisionRequest(
                check_id=check_id,
                item_code=item,
                decision=recognition_pb2.DECLINED,
                reason=reason,
                reason_text=OTHER_TEXTS[0] if reason == "OTHER" else "",
            )
        )
    metadata = (("authorization", f"Bearer {key}"),)
    seconds = []
    with grpc.insecure_channel(server.target) as channel:
        stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
        for request in requests:
            t0 = time.perf_counter()
            reply = stub.RecordDecision(request, metadata=metadata, timeout=30)
            seconds.append(time.perf_counter() - t0)
            if reply.already_recorded:
                raise SystemExit(f"{request.check_id} {request.item_code} was already decided")
    return seconds


def run_decisions(
    args: argparse.Namespace, server: Server, checkpoint: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """RecordDecision p50/p99 alone, then beside each set of report callers."""
    rng = np.random.default_rng(args.seed + 2)
    per_phase = args.decisions_per_phase + args.decision_warmup
    checks_per_phase = -(-per_phase // len(DECISION_ITEMS))
    sets = [[c for c in spec.split(",") if c] for spec in args.caller_sets]
    phases: list[tuple[str, int, list[str]]] = [("alone", 0, [])]
    for cases in sets:
        name = f"with {args.report_callers} report callers ({', '.join(cases)})"
        phases.append((name, args.report_callers, cases))
    numbers, issuer, asker = prepare_patients(args, server, len(phases) * checks_per_phase)
    key = server.cli("admin", "issue-key", "--institution", asker)
    regulator = server.cli("admin", "issue-key", "--role", "regulator")
    log(f"decisions by {asker} on results of {issuer}, {per_phase} per phase")
    out: dict[str, Any] = {"asker": asker, "issuer": issuer, "phases": []}
    env = client_env(server.code_dir)
    for n_phase, (phase, callers, specs) in enumerate(phases):
        start = checks_per_phase * n_phase
        t0 = time.perf_counter()
        lines = make_checks(server, key, numbers[start : start + checks_per_phase])[:per_phase]
        checks_s = time.perf_counter() - t0
        procs: list[subprocess.Popen[str]] = []
        stop = server.run_dir / f"stop-{n_phase}"
        outs = [server.run_dir / f"caller-{n_phase}-{n}.json" for n in range(callers)]
        try:
            for n in range(callers):
                rotated = specs[n % len(specs) :] + specs[: n % len(specs)]
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            str(Path(__file__).resolve()),
                            "_report-loop",
                            server.target,
                            regulator,
                            str(stop),
                            str(outs[n]),
                            *rotated,
                        ],
                        stdout=subprocess.PIPE,
                        text=True,
                        env=env,
                    )
                )
            ready0 = time.perf_counter()
            for proc in procs:
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "READY":
                    raise RuntimeError("a report caller did not start")
            ready_s = time.perf_counter() - ready0
            cpu0, pg0, read0 = server.cpu(), _pg_cpu(args.database), disk_read_mib()
            t0 = time.perf_counter()
            seconds = decide_all(server, key, lines, rng)
            wall = time.perf_counter() - t0
            cpu1, pg1, read1 = server.cpu(), _pg_cpu(args.database), disk_read_mib()
        finally:
            stop.touch()
            for proc in procs:
                try:
                    proc.wait(REPORT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        report_seconds: list[float] = []
        for path in outs:
            with contextlib.suppress(OSError, ValueError):
                report_seconds += json.loads(path.read_text(encoding="utf-8"))[1:]
        counted = seconds[args.decision_warmup :]
        summary = latency_summary(counted)
        out["phases"].append(
            {
                "phase": phase,
                "report_callers": callers,
                "caller_cases": specs,
                "checks_made_s": round(checks_s, 1),
                "callers_first_report_s": round(ready_s, 1) if callers else None,
                "latency": summary,
                "warmup_decisions": args.decision_warmup,
                "decisions_per_s": round(len(seconds) / wall, 1),
                "wall_s": round(wall, 1),
                "meets_5ms_p99": summary["p99_ms"] <= 5,
                "server_cpu_pct": round(100 * (cpu1 - cpu0) / wall, 1),
                "postgres_cpu_pct": round(100 * (pg1 - pg0) / wall, 1),
                "disk_read_mib": round(read1 - read0),
                "concurrent_reports": latency_summary(report_seconds) if callers else {},
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
        )
        log(
            f"  {phase}: p50 {summary['p50_ms']:.2f} ms, p99 {summary['p99_ms']:.2f} ms "
            f"({summary['n']} decisions)"
        )
        checkpoint(out)
    return out


def _context(args: argparse.Namespace, server: Server | None) -> dict[str, Any]:
    info = machine(Path(tempfile.gettempdir()))
    with connect(args) as conn:
        info["postgres_server"] = conn.execute("SHOW server_version").fetchone()[0]
        info["postgres_settings"] = dict(
            conn.execute(
                "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY(%s)",
                [["shared_buffers", "work_mem", "effective_cache_size", "max_wal_size", "jit"]],
            ).fetchall()
        )
        sizes = table_sizes(conn, exact=False)
        database_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {
        "command": [Path(sys.executable).name, "bench/statistics_bench.py", *sys.argv[1:]],
        "database": args.database,
        "database_bytes": database_bytes,
        "sizes": sizes,
        "machine": info,
        "git": git_commit(),
        "mutualrec_code": server.code if server else "",
        "mutualrec_env": args.mutualrec_env,
        "loadavg_at_end": os.getloadavg(),
    }


def print_reports(result: dict[str, Any]) -> None:
    """The report results as markdown tables."""
    if "totals_check" in result:
        print(f"totals equal an independent SQL count: {result['totals_check']['equal']}")
    print(
        "\n| report | calls | p50 ms | p90 ms | p99 ms | max ms | rows | server CPU ms/call "
        "| PG CPU ms/call | disk MiB/call |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for r in result.get("repeated", []):
        lat = r["latency"]
        print(
            f"| {r['case']} | {lat['n']} | {lat['p50_ms']:.0f} | {lat['p90_ms']:.0f} "
            f"| {lat['p99_ms']:.0f} | {lat['max_ms']:.0f} | {r['rows']} "
            f"| {r['server_cpu_ms_per_call']:.0f} | {r['postgres_cpu_ms_per_call']:.0f} "
            f"| {r['disk_read_mib_per_call']:.0f} |"
        )
    for p in result.get("report_plans", []):
        print(
            f"\none year by {p['group_by']} (month rows), in-process: {p['call_p50_ms']} ms "
            f"median, {p['rows']} rows"
        )


def print_decisions(result: dict[str, Any]) -> None:
    """The decision results as a markdown table."""
    print(
        "\n| RecordDecision | n | p50 ms | p90 ms | p99 ms | max ms | server CPU % | PG CPU % "
        "| disk MiB | reports done (p50/p99 ms) |"
        "\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    for p in result["phases"]:
        lat = p["latency"]
        reports = p["concurrent_reports"]
        done = (
            f"{reports['n']} ({reports['p50_ms']:.0f}/{reports['p99_ms']:.0f})" if reports else "-"
        )
        print(
            f"| {p['phase']} | {lat['n']} | {lat['p50_ms']:.2f} | {lat['p90_ms']:.2f} "
            f"| {lat['p99_ms']:.2f} | {lat['max_ms']:.2f} | {p['server_cpu_pct']:.0f} "
            f"| {p['postgres_cpu_pct']:.0f} | {p['disk_read_mib']} | {done} |"
        )


def cmd_run(args: argparse.Namespace) -> int:
    """The ``report``, ``decisions`` and ``all`` subcommands."""
    server = start_server(args)
    results: dict[str, dict[str, Any]] = {}
    started = {
        "command": [Path(sys.executable).name, "bench/statistics_bench.py", *sys.argv[1:]],
        "database": args.database,
        "mutualrec_code": server.code,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "partial": True,
    }

    def checkpoint_of(section: str) -> Callable[[dict[str, Any]], None]:
        def checkpoint(body: dict[str, Any]) -> None:
            if args.json:
                merge_json(args.json, section, {**started, **body})

        return checkpoint

    try:
        if args.command in ("report", "all"):
            results["report"] = run_reports(args, server, checkpoint_of("report"))
        if args.command in ("decisions", "all"):
            results["decisions"] = run_decisions(args, server, checkpoint_of("decisions"))
    finally:
        server.process.stop()
    context = _context(args, server)
    if "report" in results:
        print_reports(results["report"])
    if "decisions" in results:
        print_decisions(results["decisions"])
    info = context["machine"]
    print(
        f"\n{args.database}: {context['sizes']['decision']['rows']:,} decisions, "
        f"{context['sizes']['check_line']['rows']:,} lines, "
        f"{context['sizes']['recognition_check']['rows']:,} checks, "
        f"{context['database_bytes'] / 2**30:.1f} GiB; mutualrec {server.code}; "
        f"PostgreSQL {info['postgres_server']}; {info['nproc']} x {info['cpu']}, "
        f"{info['mem_gib']} GiB"
    )
    if args.json:
        for section, body in results.items():
            merge_json(args.json, section, {**started, **context, **body, "partial": False})
    return 0


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--database", default=DEFAULT_DATABASE)
        sp.add_argument("--pg-host", default="127.0.0.1", help="host, or socket directory")
        sp.add_argument("--pg-port", type=int, default=5432)
        sp.add_argument("--pg-user", default="postgres")
        sp.add_argument("--maintenance-db", default="test", help="to drop/create databases")
        sp.add_argument("--json", type=Path, metavar="FILE", help="merge the results into FILE")
        sp.add_argument("--seed", type=int, default=20261122)

    gen = sub.add_parser("generate", help="a fresh database with a year of checks and decisions")
    common(gen)
    gen.add_argument("--decisions", type=int, default=10_000_000, help="about this many")
    gen.add_argument("--days", type=int, default=396, help="days up to today (13 months)")
    gen.add_argument("--institutions", type=int, default=1000)
    gen.add_argument("--patients", type=int, default=1_000_000, help="distinct patient keys")
    gen.add_argument("--maintenance-work-mem", default="1GB", help="for the index builds")

    def server_options(sp: argparse.ArgumentParser) -> None:
        common(sp)
        sp.add_argument("--secret", default=DEFAULT_SECRET, help="MUTUALREC_PATIENT_KEY_SECRET")
        env_option(sp, "MUTUALREC_PROCESSES=2")
        code_options(sp)

    def report_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--cases",
            nargs="+",
            default=list(DEFAULT_CASES),
            metavar="GROUP:GRANULARITY:DAYS[:closed]",
            help="reports asked --calls times each (periods end today; closed: two days earlier)",
        )
        sp.add_argument("--calls", type=int, default=150, help="timed calls per case")
        sp.add_argument("--diagnostic-cases", nargs="*", default=list(DIAGNOSTIC_CASES))
        sp.add_argument("--diagnostic-calls", type=int, default=50)
        sp.add_argument("--warmup", type=int, default=3, help="untimed calls before each case")
        sp.add_argument("--skip-profile", action="store_true", help="no EXPLAIN")
        sp.add_argument("--skip-totals-check", action="store_true", help="no independent SQL count")

    def decision_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--decisions-per-phase", type=int, default=2000)
        sp.add_argument("--decision-warmup", type=int, default=100)
        sp.add_argument("--report-callers", type=int, default=4, help="processes asking reports")
        sp.add_argument(
            "--caller-sets",
            nargs="+",
            default=["district:month:365,item:month:365"],
            metavar="CASE,CASE",
            help="one phase per set: the callers ask these reports in turn "
            "(cases as GROUP:GRANULARITY:DAYS[:closed])",
        )

    rep = sub.add_parser("report", help="totals check, repeated reports, plans")
    server_options(rep)
    report_options(rep)
    dec = sub.add_parser("decisions", help="RecordDecision alone and beside report callers")
    server_options(dec)
    decision_options(dec)
    both = sub.add_parser("all", help="report, then decisions, on one server")
    server_options(both)
    report_options(both)
    decision_options(both)
    args = p.parse_args(argv)
    callers = [c for spec in getattr(args, "caller_sets", []) for c in spec.split(",") if c]
    for spec in [*getattr(args, "cases", []), *getattr(args, "diagnostic_cases", []), *callers]:
        try:
            Case.parse(spec)
        except argparse.ArgumentTypeError as exc:
            p.error(str(exc))
    if len(getattr(args, "secret", "x" * 32)) < 32:
        p.error("--secret must be at least 32 characters (the server requires it)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_report-loop"]:
        return report_loop(argv[1:])
    args = parse_args(argv)
    if args.command == "generate":
        return cmd_generate(args)
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
