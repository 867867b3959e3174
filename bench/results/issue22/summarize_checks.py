"""Medians over rounds of bench/results/issue22/check-{before,after}-N.json, per rate.

OK/s is answered-OK calls per counted second; CPU per check is the server's (PostgreSQL's)
CPU seconds over the calls answered OK. Run: python bench/results/issue22/summarize_checks.py
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    table: dict[tuple[str, float], list[dict[str, float]]] = {}
    for path in sorted(HERE.glob("check-*-*.json")):
        side = path.stem.split("-")[1]
        for run in json.loads(path.read_text())["runs"]:
            ok = run["ok"] or 1
            table.setdefault((side, run["target_rate"]), []).append(
                {
                    "ok_per_s": run["ok"] / run["window_s"],
                    "median": run["latency_ms"]["median"],
                    "p99": run["latency_ms"]["p99"],
                    "server_ms": 1000 * run["server_cpu_s"] / ok,
                    "pg_ms": 1000 * run["pg_db_cpu_s"] / ok,
                    "load": run["loadavg_1m"],
                }
            )
    print(
        "| side | offered/s | rounds | OK/s | median ms | p99 ms | server CPU/check ms |"
        " PG CPU/check ms | load 1m | p99 per round |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for (side, rate), runs in sorted(
        table.items(), key=lambda kv: (kv[0][1], kv[0][0] != "before")
    ):
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        rounds = ", ".join(f"{r['p99']:.1f}" for r in runs)
        print(
            f"| {side} | {rate:.0f} | {len(runs)} | {med['ok_per_s']:.0f} | {med['median']:.1f} |"
            f" {med['p99']:.1f} | {med['server_ms']:.2f} | {med['pg_ms']:.2f} | {med['load']:.1f} |"
            f" {rounds} |"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
