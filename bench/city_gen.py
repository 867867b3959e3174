#!/usr/bin/env python3
"""A synthetic city for the recognition benchmarks: institutions, qualifications, patients and
``recognition_result`` rows in a fresh PostgreSQL database, loaded with COPY.

The schema comes from ``mutualrec db upgrade`` (this script never creates tables). Then, in one
session each:

* the packaged catalog version row (``catalog_version``);
* ``--institutions`` institutions over Chongqing's districts (about 3.5 % tertiary, 22 %
  secondary, the rest primary), a few of them in Chengdu (same region) and Beijing;
* qualifications: most tertiary and secondary institutions hold the ``lab`` and ``imaging``
  categories (scope city or region) from about ``--years`` years ago, open-ended, some with a
  gap or an end in the past; about a third of primary institutions hold a few lab items;
* ``--patients`` synthetic resident ID numbers (valid check digits, deterministic from
  ``--seed``), keyed with ``mutualrec.identity`` under ``--secret`` (the server's
  MUTUALREC_PATIENT_KEY_SECRET); the numbers go to ``<workdir>/patients.txt``;
* ``--results`` index rows over all catalog items and the last ``--years`` years, in report-time
  order (as ingest would add them): 70 % lab / 30 % imaging by rows, common items more often,
  patients log-normally weighted (a few hold thousands of rows), tertiary institutions issuing
  most, 92 % final / 4 % amended / 2 % corrected / 1.5 % preliminary / 0.5 % entered-in-error.

The bulk load drops ``ix_recognition_result_patient_item`` and the unique constraint on
(result_ref, item_code) and builds both again afterwards with the same names and definitions
(a sort beats ten million random B-tree inserts); foreign keys are not checked row by row
(``session_replication_role = replica``) but verified once at the end. Every table is ANALYZEd.

    .venv/bin/python bench/city_gen.py --database mutualrec_city_small \\
        --results 100000 --patients 10000
    .venv/bin/python bench/city_gen.py --database mutualrec_city   # 10M results, 1M patients

``<workdir>/city.json`` records what was generated (including the secret), for
bench/check_bench.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

# Run as a script, this file's directory is on sys.path, so the shared harness imports.
from harness import (
    REPO,
    Phases,
    database_url,
    log,
    mutualrec_env,
    recreate_database,
    run_cli,
    table_columns,
)

DEFAULT_SECRET = "mutualrec-bench-city-secret-0123456789abcdef"
DEFAULT_PG_HOST = "/var/run/postgresql"
CHUNK_ROWS = 100_000

# (code, name) of Chongqing's districts and counties, central ones first (they get more).
CHONGQING = [
    ("500103", "渝中区"),
    ("500105", "江北区"),
    ("500106", "沙坪坝区"),
    ("500107", "九龙坡区"),
    ("500108", "南岸区"),
    ("500112", "渝北区"),
    ("500104", "大渡口区"),
    ("500109", "北碚区"),
    ("500113", "巴南区"),
    ("500101", "万州区"),
    ("500102", "涪陵区"),
    ("500110", "綦江区"),
    ("500111", "大足区"),
    ("500114", "黔江区"),
    ("500115", "长寿区"),
    ("500116", "江津区"),
    ("500117", "合川区"),
    ("500118", "永川区"),
    ("500119", "南川区"),
    ("500120", "璧山区"),
    ("500151", "铜梁区"),
    ("500152", "潼南区"),
    ("500153", "荣昌区"),
    ("500154", "开州区"),
    ("500155", "梁平区"),
    ("500156", "武隆区"),
    ("500229", "城口县"),
    ("500230", "丰都县"),
    ("500231", "垫江县"),
    ("500233", "忠县"),
    ("500235", "云阳县"),
    ("500236", "奉节县"),
    ("500237", "巫山县"),
    ("500238", "巫溪县"),
    ("500240", "石柱土家族自治县"),
    ("500241", "秀山土家族苗族自治县"),
    ("500242", "酉阳土家族苗族自治县"),
    ("500243", "彭水苗族土家族自治县"),
]
# Outside Chongqing: (district code, name, city, region).
OUTSIDE = [
    ("510107", "武侯区", "chengdu", "chengdu-chongqing"),
    ("510104", "锦江区", "chengdu", "chengdu-chongqing"),
    ("110108", "海淀区", "beijing", "beijing"),
    ("110105", "朝阳区", "beijing", "beijing"),
]
# Where patients' ID numbers were issued (first six digits), besides Chongqing's districts.
OTHER_ID_AREAS = ["510107", "510104", "510502", "511302", "520102", "420106", "110108", "440305"]

# Relative frequency of lab items by rows (others: 1.0); scaled so labs make 70 % of rows.
LAB_WEIGHTS = {
    "LAB-CBC": 12,
    "LAB-GLU": 8,
    "LAB-K": 7,
    "LAB-NA": 6,
    "LAB-CL": 5,
    "LAB-ALT": 7,
    "LAB-AST": 6,
    "LAB-CREA": 6,
    "LAB-UREA": 5,
    "LAB-URIC": 4,
    "LAB-TBIL": 4,
    "LAB-DBIL": 3,
    "LAB-ALB": 4,
    "LAB-TP": 3,
    "LAB-TC": 4,
    "LAB-TG": 4,
    "LAB-HDL": 3,
    "LAB-LDL": 3,
    "LAB-CRP": 5,
    "LAB-URINE": 6,
    "LAB-PT": 3,
    "LAB-APTT": 3,
    "LAB-FIB": 2,
    "LAB-DDI": 2,
    "LAB-HBA1C": 2.5,
    "LAB-CA": 2.5,
    "LAB-HBSAG": 2.5,
    "LAB-HCVAB": 2,
    "LAB-HIV": 2,
    "LAB-TPAB": 2,
    "LAB-ESR": 1.5,
    "LAB-TSH": 1.5,
}
# By modality (items of one modality share it), scaled so imaging makes 30 % of rows.
MODALITY_WEIGHTS = {"CT": 4.0, "DX": 3.0, "US": 3.0, "ECG": 8.0, "MR": 1.0, "MG": 1.0, "NM": 0.3}
ITEM_BOOST = {"IMG-CT-CHEST": 4.0, "IMG-DX-CHEST-PA": 3.0, "IMG-US-ABD": 2.0, "IMG-CT-HEAD": 2.0}
INSTANCES = {
    "CT": (150, 600),
    "MR": (200, 1200),
    "DX": (1, 3),
    "MG": (4, 5),
    "US": (10, 60),
    "ECG": (1, 2),
    "NM": (2, 20),
}
# (unit, low, high, decimals) of the value a lab item shows; others get a generic one.
LAB_VALUES = {
    "LAB-CBC": ("10*9/L", 3.5, 9.5, 2),
    "LAB-K": ("mmol/L", 3.5, 5.3, 1),
    "LAB-NA": ("mmol/L", 137, 147, 0),
    "LAB-CL": ("mmol/L", 99, 110, 0),
    "LAB-GLU": ("mmol/L", 3.9, 6.1, 1),
    "LAB-ALT": ("U/L", 9, 50, 0),
    "LAB-AST": ("U/L", 15, 40, 0),
    "LAB-CREA": ("umol/L", 57, 111, 0),
    "LAB-UREA": ("mmol/L", 3.1, 8.0, 1),
    "LAB-URIC": ("umol/L", 208, 428, 0),
    "LAB-TBIL": ("umol/L", 0, 26, 1),
    "LAB-ALB": ("g/L", 40, 55, 1),
    "LAB-TP": ("g/L", 65, 85, 1),
    "LAB-TC": ("mmol/L", 2.8, 5.2, 2),
    "LAB-TG": ("mmol/L", 0.45, 1.7, 2),
    "LAB-HDL": ("mmol/L", 1.0, 1.9, 2),
    "LAB-LDL": ("mmol/L", 1.5, 3.4, 2),
    "LAB-CRP": ("mg/L", 0, 10, 1),
    "LAB-HBA1C": ("%", 4.0, 6.0, 1),
    "LAB-PT": ("s", 9.4, 12.5, 1),
    "LAB-APTT": ("s", 25.1, 36.5, 1),
    "LAB-CA": ("mmol/L", 2.11, 2.52, 2),
    "LAB-TSH": ("mIU/L", 0.27, 4.2, 2),
}
STATUSES = [
    ("final", 0.92, (1, 1)),
    ("amended", 0.04, (2, 3)),
    ("corrected", 0.02, (2, 3)),
    ("preliminary", 0.015, (1, 1)),
    ("entered-in-error", 0.005, (1, 2)),
]
DETAIL_POOL = 64


# ---------------------------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------------------------


def fresh_database(name: str, host: str, user: str, keep_existing: bool) -> bool:
    """Create ``name`` (dropping it first unless kept); True when it was (re)created."""
    import psycopg

    with psycopg.connect(host=host, user=user, dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and keep_existing:
            return False
        recreate_database(conn, name)
    return True


def upgrade_schema(url: str) -> str:
    """``mutualrec db upgrade`` on ``url``; its output."""
    return run_cli(
        mutualrec_env(REPO, database_url=url), REPO, "db", "upgrade", timeout=300
    ).strip()


def copy_text(conn: Any, table: str, columns: Sequence[str], lines: Iterator[str]) -> int:
    """COPY pre-formatted text lines (tab-separated, newline-terminated blocks) into ``table``."""
    count = 0
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        for block in lines:
            cp.write(block)
            count += 1
    return count


def _text(value: Any) -> str:
    """One field in COPY text format (\\N for None; no tabs, newlines or backslashes here)."""
    if value is None:
        return "\\N"
    out = str(value)
    if any(ch in out for ch in "\t\n\r\\"):
        raise ValueError(f"field needs escaping: {out!r}")
    return out


def rows_block(rows: Sequence[Sequence[Any]]) -> str:
    """Rows as one block of COPY text."""
    return "".join("\t".join(_text(v) for v in row) + "\n" for row in rows)


# ---------------------------------------------------------------------------------------------
# Institutions and qualifications
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inst:
    """A generated institution; ``id`` is the row id it is loaded with."""

    id: int
    code: str
    name: str
    district: str
    level: str
    city: str
    region: str


def make_institutions(count: int, rng: np.random.Generator) -> list[Inst]:
    """``count`` institutions: ~3.5 % tertiary, ~22 % secondary, a few outside Chongqing."""
    tertiary = max(1, round(count * 40 / 1151))
    secondary = max(1, round(count * 250 / 1151))
    primary = max(0, count - tertiary - secondary)
    # Outside Chongqing: Chengdu (same region) and Beijing (another region).
    outside_levels = ["tertiary", "tertiary", "tertiary", "tertiary", "secondary", "secondary"]
    if count < 60:
        outside_levels = []
    levels = ["tertiary"] * tertiary + ["secondary"] * secondary + ["primary"] * primary
    # Central districts hold more hospitals; tertiary ones are mostly central.
    n = len(CHONGQING)
    weights = np.array([3.0 if i < 6 else 1.5 if i < 9 else 1.0 for i in range(n)])
    serial: dict[str, int] = {}
    out: list[Inst] = []
    outside_left = list(outside_levels)
    for level in levels:
        if level in outside_left and out and len(out) % 7 == 3:
            outside_left.remove(level)
            k = len(outside_levels) - len(outside_left) - 1
            code6, dname, city, region = OUTSIDE[k % len(OUTSIDE)]
        else:
            w = weights**2 if level == "tertiary" else weights
            code6, dname = CHONGQING[int(rng.choice(n, p=w / w.sum()))]
            city, region = "chongqing", "chengdu-chongqing"
        serial[code6] = serial.get(code6, 0) + 1
        s = serial[code6]
        prefix = {"chongqing": "重庆市", "chengdu": "成都市", "beijing": "北京市"}[city]
        if level == "primary":
            name = f"{prefix}{dname}第{s}社区卫生服务中心"
        elif level == "secondary":
            name = f"{prefix}{dname}第{s}人民医院"
        else:
            name = f"{prefix}{dname}第{s}中心医院"
        out.append(Inst(len(out) + 1, f"H{code6}{s:04d}", name, dname, level, city, region))
    return out


def make_qualifications(
    insts: Sequence[Inst], now: dt.datetime, years: int, rng: np.random.Generator
) -> list[tuple[Any, ...]]:
    """(institution_id, item_code, category, scope, valid_from, valid_until) rows."""
    start = now - dt.timedelta(days=365 * years)
    common_labs = ["LAB-CBC", "LAB-URINE", "LAB-GLU", "LAB-K", "LAB-NA", "LAB-ALT", "LAB-CREA"]
    rows: list[tuple[Any, ...]] = []

    def when(base: dt.datetime, spread_days: int) -> dt.datetime:
        return base - dt.timedelta(days=int(rng.integers(0, spread_days + 1)))

    for inst in insts:
        if inst.level in ("tertiary", "secondary"):
            holds = 0.92 if inst.level == "tertiary" else 0.8
            if inst.city == "beijing":
                # One Beijing hospital holds a national mark, the other none.
                if inst.code.startswith("H110108"):
                    for category in ("lab", "imaging"):
                        rows.append((inst.id, None, category, "national", when(start, 180), None))
                continue
            for category in ("lab", "imaging"):
                if rng.random() >= holds:
                    continue
                region_share = 0.6 if inst.level == "tertiary" else 0.2
                scope = "region" if rng.random() < region_share else "city"
                begin = when(start, 180)
                fate = rng.random()
                if fate < 0.08:
                    # Held, lapsed, held again.
                    lapse = begin + dt.timedelta(days=int(rng.integers(200, 500)))
                    back = lapse + dt.timedelta(days=int(rng.integers(30, 200)))
                    rows.append((inst.id, None, category, scope, begin, lapse))
                    rows.append((inst.id, None, category, scope, back, None))
                elif fate < 0.11:
                    # Lost and not regained.
                    ended = now - dt.timedelta(days=int(rng.integers(30, 400)))
                    rows.append((inst.id, None, category, scope, begin, ended))
                else:
                    rows.append((inst.id, None, category, scope, begin, None))
        elif rng.random() < 1 / 3:
            picks = rng.choice(len(common_labs), size=int(rng.integers(2, 6)), replace=False)
            begin = when(start + dt.timedelta(days=180), 365)
            for p in sorted(picks):
                until = None
                if rng.random() < 0.05:
                    until = now - dt.timedelta(days=int(rng.integers(10, 300)))
                rows.append((inst.id, common_labs[p], None, "city", begin, until))
    return rows


# ---------------------------------------------------------------------------------------------
# Patients
# ---------------------------------------------------------------------------------------------


def make_resident_ids(count: int, rng: np.random.Generator) -> list[str]:
    """``count`` distinct resident ID numbers with valid birth dates and check digits."""
    from mutualrec.identity import resident_id_check_digit

    areas = [code for code, _ in CHONGQING]
    area_p = np.array([3.0 if i < 9 else 1.0 for i in range(len(areas))])
    area_p = area_p / area_p.sum()
    first = np.datetime64("1935-01-01")
    days = int((np.datetime64("2024-12-31") - first).astype(int))
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < count:
        n = int((count - len(out)) * 1.05) + 16
        local = rng.random(n) < 0.9
        area_idx = rng.choice(len(areas), size=n, p=area_p)
        other_idx = rng.integers(0, len(OTHER_ID_AREAS), size=n)
        births = np.datetime_as_string(first + rng.integers(0, days + 1, size=n), unit="D")
        seqs = rng.integers(0, 1000, size=n)
        for is_local, a, o, birth, seq in zip(
            local.tolist(),
            area_idx.tolist(),
            other_idx.tolist(),
            births.tolist(),
            seqs.tolist(),
            strict=True,
        ):
            area = areas[a] if is_local else OTHER_ID_AREAS[o]
            first17 = f"{area}{birth[0:4]}{birth[5:7]}{birth[8:10]}{seq:03d}"
            if first17 in seen:
                continue
            seen.add(first17)
            out.append(first17 + resident_id_check_digit(first17))
            if len(out) == count:
                break
    return out


def patient_keys(numbers: Sequence[str], secret: bytes) -> list[str]:
    """patient_key of each resident ID number, exactly as the server computes it."""
    from mutualrec.identity import parse_identity, patient_key

    return [patient_key(parse_identity("RESIDENT_ID_CARD", n), secret) for n in numbers]


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class ItemPlan:
    """What the result generator needs per catalog item, index-aligned."""

    codes: list[str]
    kinds: list[str]
    weights: np.ndarray
    # Lab: a pool of ready detail strings; imaging: (prefix, middle, suffix, lo, hi) template.
    lab_details: list[list[str] | None]
    imaging: list[tuple[str, str, int, int] | None]


def make_item_plan(rng: np.random.Generator) -> ItemPlan:
    """Item weights (70 % lab rows) and detail templates for every catalog item."""
    from mutualrec.matching.catalog import ItemCategory, packaged_catalog

    items = packaged_catalog().items
    codes = [i.code for i in items]
    is_lab = np.array([i.category is ItemCategory.LAB for i in items])
    raw = np.array(
        [
            LAB_WEIGHTS.get(i.code, 1.0)
            if i.category is ItemCategory.LAB
            else MODALITY_WEIGHTS.get(i.modality, 1.0) * ITEM_BOOST.get(i.code, 1.0)
            for i in items
        ],
        dtype=float,
    )
    weights = np.where(is_lab, raw / raw[is_lab].sum() * 0.7, raw / raw[~is_lab].sum() * 0.3)
    lab_details: list[list[str] | None] = []
    imaging: list[tuple[str, str, int, int] | None] = []
    for item in items:
        if item.category is ItemCategory.LAB:
            unit, low, high, decimals = LAB_VALUES.get(item.code, ("", 0.0, 1.0, 2))
            pool = []
            for _ in range(DETAIL_POOL):
                span = high - low
                value = rng.normal((low + high) / 2, span / 3 if span else 1.0)
                value = max(value, 0.0)
                flag = "H" if value > high else "L" if value < low else "N"
                shown = f"{value:.{decimals}f}"
                pool.append(
                    json.dumps(
                        {
                            "loinc": item.loinc[0] if item.loinc else "",
                            "display": item.name_zh,
                            "value": shown,
                            "unit": unit,
                            "range": f"{low:g}-{high:g}",
                            "interpretation": flag,
                        },
                        ensure_ascii=False,
                        separators=(",", ":"),
                    )
                )
            lab_details.append(pool)
            imaging.append(None)
        else:
            lo, hi = INSTANCES.get(item.modality, (1, 10))
            prefix = '{"study_instance_uid":"'
            middle = (
                f'","modalities":"{item.modality}","body_parts":"{item.body_part}",'
                f'"contrast":{"true" if item.contrast else "false"},'
                f'"description":{json.dumps(item.name_en)},"instance_count":'
            )
            lab_details.append(None)
            imaging.append((prefix, middle, lo, hi))
    return ItemPlan(codes, [i.category.value for i in items], weights, lab_details, imaging)


UID_ROOT = "1.2.826.0.1.3680043.10.1151."


def result_blocks(
    total: int,
    keys: Sequence[str],
    insts: Sequence[Inst],
    plan: ItemPlan,
    start: dt.datetime,
    end: dt.datetime,
    rng: np.random.Generator,
    progress: Any,
) -> Iterator[str]:
    """COPY text blocks of ``total`` recognition_result rows, in report-time order."""
    # Patients: log-normal activity (median ~0.43 x mean; the busiest ~250 x mean).
    activity = rng.lognormal(0.0, 1.3, size=len(keys))
    patient_cdf = np.cumsum(activity)
    # Issuers per kind: tertiary most, primary little (and almost no imaging).
    size = rng.lognormal(0.0, 0.5, size=len(insts))
    lab_level = {"tertiary": 100.0, "secondary": 8.0, "primary": 1.0}
    img_level = {"tertiary": 100.0, "secondary": 10.0, "primary": 0.15}
    away = np.array([0.3 if i.city != "chongqing" else 1.0 for i in insts])
    lab_cdf = np.cumsum(size * away * np.array([lab_level[i.level] for i in insts]))
    img_cdf = np.cumsum(size * away * np.array([img_level[i.level] for i in insts]))
    inst_ids = np.array([i.id for i in insts])
    item_cdf = np.cumsum(plan.weights)
    status_names = [s for s, _, _ in STATUSES]
    status_cdf = np.cumsum([p for _, p, _ in STATUSES])
    version_lo = np.array([v[0] for _, _, v in STATUSES])
    version_hi = np.array([v[1] for _, _, v in STATUSES])
    t0 = np.datetime64(start.replace(tzinfo=None), "s")
    span_s = (end - start).total_seconds()
    lab_pools = plan.lab_details
    imaging = plan.imaging
    codes = plan.codes
    kinds = plan.kinds
    made = 0
    while made < total:
        n = min(CHUNK_ROWS, total - made)
        pat = np.searchsorted(patient_cdf, rng.random(n) * patient_cdf[-1], side="right")
        pat = np.minimum(pat, len(keys) - 1)
        item = np.minimum(np.searchsorted(item_cdf, rng.random(n) * item_cdf[-1]), len(codes) - 1)
        is_img = np.array([kinds[i] == "imaging" for i in range(len(codes))])[item]
        lab_i = np.searchsorted(lab_cdf, rng.random(n) * lab_cdf[-1], side="right")
        img_i = np.searchsorted(img_cdf, rng.random(n) * img_cdf[-1], side="right")
        inst = inst_ids[np.minimum(np.where(is_img, img_i, lab_i), len(insts) - 1)]
        st = np.minimum(np.searchsorted(status_cdf, rng.random(n) * status_cdf[-1]), 4)
        version = rng.integers(version_lo[st], version_hi[st] + 1)
        # Report times in order: this chunk's slice of the period, sorted.
        frac = (made + np.sort(rng.random(n)) * n) / total
        times = np.datetime_as_string(t0 + (frac * span_s).astype("timedelta64[s]"), unit="s")
        pool_pick = rng.integers(0, DETAIL_POOL, size=n)
        extra = rng.random(n)
        lines = []
        append = lines.append
        for j, (p, it, ins, s, v, t, pk, x) in enumerate(
            zip(
                pat.tolist(),
                item.tolist(),
                inst.tolist(),
                st.tolist(),
                version.tolist(),
                times.tolist(),
                pool_pick.tolist(),
                extra.tolist(),
                strict=True,
            )
        ):
            rid = made + j + 1
            pool = lab_pools[it]
            if pool is not None:
                ref = f"lab:{rid}"
                detail = pool[pk]
                kind = "lab"
            else:
                prefix, middle, lo, hi = imaging[it]  # type: ignore[misc]
                uid = f"{UID_ROOT}{rid}"
                ref = f"study:{uid}"
                count = lo + int(x * (hi - lo + 1))
                detail = f'{prefix}{uid}","accession_number":"A{rid:09d}{middle}{count}}}'
                kind = "imaging"
            append(
                f"{rid}\t{keys[p]}\t{codes[it]}\t{kind}\t{ref}\t{v}\t{status_names[s]}\t"
                f"{t}+00\t{ins}\t{detail}\n"
            )
        made += n
        progress(made)
        yield "".join(lines)


def result_columns() -> tuple[str, ...]:
    """The ``recognition_result`` columns of :func:`result_blocks`' rows, in the table's order:
    all but ``collected_at``, left NULL."""
    from mutualrec.storage.models import RecognitionResult

    return table_columns(RecognitionResult, omit=("collected_at",))


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--database", required=True, help="database to create (dropped first)")
    p.add_argument("--keep-existing", action="store_true", help="reuse the database if it exists")
    p.add_argument("--results", type=int, default=10_000_000)
    p.add_argument("--patients", type=int, default=1_000_000)
    p.add_argument("--institutions", type=int, default=1151)
    p.add_argument("--years", type=int, default=3, help="period the results span, to now")
    p.add_argument("--secret", default=DEFAULT_SECRET, help="MUTUALREC_PATIENT_KEY_SECRET")
    p.add_argument("--seed", type=int, default=20261122)
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where patients.txt and city.json go (default /tmp/mutualrec-city/DATABASE)",
    )
    p.add_argument("--pg-host", default=DEFAULT_PG_HOST, help="socket directory or host")
    p.add_argument("--pg-user", default="postgres")
    p.add_argument(
        "--maintenance-work-mem", default="1GB", help="for the index builds after the load"
    )
    p.add_argument(
        "--keep-indexes",
        action="store_true",
        help="load with the patient/item index and the unique constraint in place (slower)",
    )
    args = p.parse_args(argv)
    if len(args.secret) < 32:
        p.error("--secret must be at least 32 characters (the server requires it)")
    if args.patients < 1 or args.institutions < 1 or args.results < 0:
        p.error("--patients and --institutions must be positive, --results not negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    import psycopg

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    workdir: Path = (args.workdir or Path("/tmp/mutualrec-city") / args.database).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = now - dt.timedelta(days=365 * args.years)
    url = database_url(args.database, args.pg_host, args.pg_user)
    phases = Phases()
    total_t0 = time.perf_counter()

    created = fresh_database(args.database, args.pg_host, args.pg_user, args.keep_existing)
    log(f"database {args.database} {'created' if created else 'kept'}")
    log(upgrade_schema(url))
    phases.done("schema")

    conn = psycopg.connect(
        host=args.pg_host, user=args.pg_user, dbname=args.database, autocommit=True
    )
    conn.execute("SET synchronous_commit = off")
    conn.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
    for table in ("recognition_result", "qualification", "patient", "catalog_version"):
        held = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        if held and held[0]:
            raise SystemExit(f"{table} already holds rows: use a fresh database")
    with conn.transaction():
        held = conn.execute("SELECT count(*) FROM institution").fetchone()
        if held and held[0]:
            raise SystemExit("institution already holds rows: use a fresh database")

    # Catalog version row: the packaged CSV, as the server would load it.
    from mutualrec.matching.catalog import packaged_catalog

    catalog = packaged_catalog()
    csv_text = (
        resources.files("mutualrec.matching")
        .joinpath("data/recognition_items.csv")
        .read_text("utf-8")
    )
    with conn.transaction():
        conn.execute(
            "INSERT INTO catalog_version (version, sha256, source_text, loaded_at) "
            "VALUES (%s, %s, %s, %s)",
            [catalog.version, catalog.sha256, csv_text, now],
        )

    insts = make_institutions(args.institutions, rng)
    quals = make_qualifications(insts, now, args.years, rng)
    with conn.transaction():
        copy_text(
            conn,
            "institution",
            ("id", "code", "name", "district", "level", "city", "region", "created_at"),
            iter(
                [
                    rows_block(
                        [
                            (i.id, i.code, i.name, i.district, i.level, i.city, i.region, start)
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
    levels = {lv: sum(1 for i in insts if i.level == lv) for lv in ("tertiary", "secondary")}
    phases.done(
        "catalog, institutions, qualifications",
        f"{len(insts)} institutions ({levels['tertiary']} tertiary, {levels['secondary']} "
        f"secondary), {len(quals)} qualifications",
    )

    numbers = make_resident_ids(args.patients, rng)
    (workdir / "patients.txt").write_text("\n".join(numbers) + "\n", encoding="ascii")
    keys = patient_keys(numbers, args.secret.encode("utf-8"))
    phases.done("patient ids and keys", f"{len(keys)} patients, {workdir / 'patients.txt'}")
    with conn.transaction():
        created_at = start.isoformat()

        def patient_blocks() -> Iterator[str]:
            for i in range(0, len(keys), CHUNK_ROWS * 2):
                yield "".join(f"{k}\t{created_at}\n" for k in keys[i : i + CHUNK_ROWS * 2])

        copy_text(conn, "patient", ("patient_key", "created_at"), patient_blocks())
    phases.done("patient COPY")

    plan = make_item_plan(rng)
    phases.done("item plan")
    dropped = not args.keep_indexes
    with conn.transaction():
        if dropped:
            conn.execute("DROP INDEX ix_recognition_result_patient_item")
            conn.execute(
                "ALTER TABLE recognition_result "
                "DROP CONSTRAINT uq_recognition_result_result_ref_item_code"
            )
        conn.execute("SET LOCAL session_replication_role = replica")
        last_report = [time.perf_counter(), 0]

        def progress(made: int) -> None:
            t = time.perf_counter()
            if t - last_report[0] >= 10 or made == args.results:
                rate = (made - last_report[1]) / max(t - last_report[0], 1e-9)
                log(f"  results: {made:,}/{args.results:,} ({rate:,.0f} rows/s)")
                last_report[0], last_report[1] = t, made

        copy_text(
            conn,
            "recognition_result",
            result_columns(),
            result_blocks(args.results, keys, insts, plan, start, now, rng, progress),
        )
        conn.execute("SET LOCAL session_replication_role = DEFAULT")
    load_s = phases.done("results COPY")
    log(f"  {args.results / max(load_s, 1e-9):,.0f} rows/s")

    if dropped:
        conn.execute(
            "CREATE INDEX ix_recognition_result_patient_item "
            "ON recognition_result (patient_key, item_code)"
        )
        phases.done("index ix_recognition_result_patient_item")
        conn.execute(
            "ALTER TABLE recognition_result ADD CONSTRAINT "
            "uq_recognition_result_result_ref_item_code UNIQUE (result_ref, item_code)"
        )
        phases.done("constraint uq_recognition_result_result_ref_item_code")
    conn.execute(
        "SELECT setval(pg_get_serial_sequence('recognition_result', 'id'), "
        "greatest((SELECT max(id) FROM recognition_result), 1))"
    )
    orphans = conn.execute(
        "SELECT count(*) FROM recognition_result r "
        "WHERE NOT EXISTS (SELECT 1 FROM institution i WHERE i.id = r.institution_id)"
    ).fetchone()
    if orphans and orphans[0]:
        raise SystemExit(f"{orphans[0]} results name no institution")
    phases.done("sequence and foreign key check")
    conn.execute("VACUUM (ANALYZE)")
    phases.done("VACUUM ANALYZE")

    sizes = {}
    for table in (
        "recognition_result",
        "patient",
        "institution",
        "qualification",
        "catalog_version",
    ):
        row = conn.execute(
            "SELECT pg_total_relation_size(%s::regclass), pg_relation_size(%s::regclass), "
            "(SELECT count(*) FROM " + table + ")",
            [table, table],
        ).fetchone()
        assert row is not None
        sizes[table] = {"total_bytes": row[0], "heap_bytes": row[1], "rows": row[2]}
    for index in (
        "ix_recognition_result_patient_item",
        "uq_recognition_result_result_ref_item_code",
    ):
        row = conn.execute("SELECT pg_relation_size(%s::regclass)", [index]).fetchone()
        assert row is not None
        sizes[index] = {"total_bytes": row[0]}
    tertiary = conn.execute(
        "SELECT code FROM institution WHERE level = 'tertiary' AND city = 'chongqing' "
        "ORDER BY code LIMIT 1"
    ).fetchone()
    conn.close()
    total_s = time.perf_counter() - total_t0

    print(
        f"\n{args.database}: {args.results:,} results, {len(keys):,} patients, "
        f"{len(insts)} institutions, {len(quals)} qualifications in {total_s:.1f} s"
    )
    print("| phase | seconds |\n|---|---:|")
    for name, secs in phases.seconds.items():
        print(f"| {name} | {secs:.1f} |")
    print("\n| relation | rows | total MiB |\n|---|---:|---:|")
    for name, info in sizes.items():
        print(f"| {name} | {info.get('rows', '')} | {info['total_bytes'] / 2**20:.1f} |")
    manifest = {
        "database": args.database,
        "database_url": url,
        "secret": args.secret,
        "seed": args.seed,
        "results": args.results,
        "patients": len(keys),
        "institutions": len(insts),
        "qualifications": len(quals),
        "years": args.years,
        "generated_at": now.isoformat(),
        "period": [start.isoformat(), now.isoformat()],
        "catalog_version": catalog.version,
        "tertiary_institution": tertiary[0] if tertiary else "",
        "patients_file": str(workdir / "patients.txt"),
        "phases_s": phases.seconds,
        "total_s": round(total_s, 1),
        "results_rows_per_s": round(args.results / max(load_s, 1e-9)),
        "sizes": sizes,
        "indexes_dropped_during_load": dropped,
    }
    (workdir / "city.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"\nmanifest: {workdir / 'city.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
