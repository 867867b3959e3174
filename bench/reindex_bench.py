#!/usr/bin/env python3
"""Re-index benchmark: ``mutualrec admin reindex`` throughput over a filled PostgreSQL index.

Fill a database first with real ingest, keeping it, e.g.::

    .venv/bin/python bench/fhir_bench.py --bundle-sizes 1000 --observations 1000 \\
        --preload 300000 --keep --pg-host 127.0.0.1 --pg-database mutualrec_reindex

then time two passes of the re-index over every held lab result, each under a new catalog
version recorded here:

1. ``unchanged``: the packaged catalog's content under a new version (every result is read and
   mapped, no index row changes: the floor of a re-index);
2. ``changed``: the packaged catalog without LAB-NA and with sodium's LOINC code given to LAB-K
   (every sodium result loses one index row and gains another).

    .venv/bin/python bench/reindex_bench.py --database mutualrec_reindex --pg-host 127.0.0.1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

# Run as a script, this file's directory is on sys.path, so the shared harness imports.
from harness import REPO, database_url

# This checkout's mutualrec, not an installed copy.
sys.path.insert(0, str(REPO))

from mutualrec.matching.catalog import load_catalog
from mutualrec.services.reindex import ReindexProgress, reindex_lab_results
from mutualrec.storage import catalog_store
from mutualrec.storage.db import make_engine


def _catalogs(tag: str) -> list[tuple[str, str, str]]:
    text = resources.files("mutualrec.matching").joinpath("data/recognition_items.csv")
    packaged = text.read_text("utf-8")
    changed = packaged.replace(
        "LAB-K,钾,Potassium,lab,2823-3,", "LAB-K,钾,Potassium,lab,2823-3;2951-2,"
    )
    changed = "".join(line for line in changed.splitlines(True) if not line.startswith("LAB-NA,"))
    # A trailing blank line makes the unchanged content a distinct file, hence a new version.
    return [
        ("unchanged", f"bench-{tag}-a", packaged + "\n"),
        ("changed", f"bench-{tag}-b", changed),
    ]


def mappings_of(
    mappings: dict[int, dict[str, tuple[str, ...]]],
) -> Callable[[int], dict[str, tuple[str, ...]]]:
    """An institution's mapping from ``mappings`` (none: empty)."""
    return lambda institution_id: mappings.get(institution_id, {})


def main(argv: list[str]) -> int:
    """Run both passes and print their figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--database", required=True)
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-user", default="postgres")
    p.add_argument("--batch", type=int, default=20_000)
    p.add_argument("--json", type=Path, metavar="OUT")
    args = p.parse_args(argv)
    from sqlalchemy import text as sql
    from sqlalchemy.orm import sessionmaker

    url = database_url(args.database, args.pg_host, args.pg_user)
    sessions = sessionmaker(make_engine(url))
    # A production index is analyzed by autovacuum; this machine's PostgreSQL runs with it off,
    # and a freshly filled index without statistics gets hash joins over whole tables.
    with sessions.begin() as session:
        session.execute(sql("ANALYZE lab_result, lab_result_version, recognition_result"))
    results: list[dict[str, Any]] = []
    tag = str(int(time.time()))
    for name, version, text in _catalogs(tag):
        catalog = load_catalog(text, version)
        with sessions.begin() as session:
            catalog_store.ensure_catalog(session, catalog, text)
            mappings = catalog_store.all_institution_mappings(session)
        batches: list[float] = []

        def seen(_: ReindexProgress, batches: list[float] = batches) -> None:
            batches.append(time.perf_counter())

        start = time.perf_counter()
        cpu = time.process_time()
        final = reindex_lab_results(
            sessions, catalog, mappings_of(mappings), batch=args.batch, on_batch=seen
        )
        seconds = time.perf_counter() - start
        row = {
            "pass": name,
            "catalog_version": version,
            "results": final.results,
            "rows_added": final.rows_added,
            "rows_removed": final.rows_removed,
            "batch": args.batch,
            "seconds": round(seconds, 2),
            "results_per_s": round(final.results / seconds, 1),
            "client_cpu_s": round(time.process_time() - cpu, 2),
            "batches": len(batches),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    print("| pass | results | +rows | -rows | batch | seconds | results/s | reindex CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['pass']} | {r['results']} | {r['rows_added']} | {r['rows_removed']} | "
            f"{r['batch']} | {r['seconds']} | {r['results_per_s']} | {r['client_cpu_s']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
