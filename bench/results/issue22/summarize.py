"""Medians of the interleaved rounds in this folder (upload-{base,head}-N.json): per side,
backend and stream count, instances/s, the ratio to Orthanc in the same run, server CPU."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    rows: dict[tuple[str, str, int], list[dict[str, float]]] = defaultdict(list)
    for path in sorted(HERE.glob("upload-*-*.json")):
        side = path.stem.split("-")[1]
        runs = [r for r in json.loads(path.read_text())["runs"] if r["study"] == "CT 1800"]
        orthanc = {r["streams"]: r["instances_per_s"] for r in runs if r["backend"] == "orthanc"}
        for r in runs:
            rows[(side, r["backend"], r["streams"])].append(
                {
                    "ips": r["instances_per_s"],
                    "ratio": r["instances_per_s"] / orthanc[r["streams"]],
                    "cpu_ms": 1000 * r["server_cpu_s"] / r["instances"],
                    "load": r["loadavg_before"],
                    "rss": r["peak_rss_kib"] / 1024,
                }
            )
    print(
        "| code | server | streams | inst/s, median (rounds) | vs Orthanc, median (rounds) "
        "| server CPU ms/instance | peak RSS MiB | load avg before (rounds) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for (side, backend, streams), values in sorted(
        rows.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])
    ):
        med = {k: statistics.median(v[k] for v in values) for k in values[0]}
        ips = ", ".join(f"{v['ips']:.0f}" for v in values)
        ratios = ", ".join(f"{v['ratio']:.2f}" for v in values)
        loads = ", ".join(f"{v['load']:.1f}" for v in values)
        ratio = "" if backend == "orthanc" else f"**{med['ratio']:.2f}x** ({ratios})"
        print(
            f"| {side} | {backend} | {streams} | {med['ips']:.0f} ({ips}) | {ratio} "
            f"| {med['cpu_ms']:.2f} | {med['rss']:.0f} | {loads} |"
        )


if __name__ == "__main__":
    main()
