#!/usr/bin/env python3
"""From a click on a study in the patient's history to the first image drawn in the OHIF viewer,
measured in a real headless Chromium (Debian's chromium and chromedriver) against
``mutualrec serve``.

The server holds one ``--instances``-instance 512x512 CT study (made by
dicom_samples/make_samples.py --bench-ct, as the DICOMweb benchmark's). A patient's browser signs
in, opens the history, and clicks the study's "open in viewer" link. A small script that the
browser runs at the start of every document (DevTools' ``Page.addScriptToEvaluateOnNewDocument``,
so the viewer's own Content-Security-Policy does not stand in its way) watches the viewport's
canvas on every animation frame and notes the moment it first shows an image: at least 32 grey
levels on a sampled grid, which an empty or loading viewport never has. The figure is that
moment minus the click's, both read from the browser's own clock.

The study's first view ever is reported apart (the server builds the study's DICOM JSON
metadata then, and keeps it). Then three kinds of round, interleaved: ``cold`` in a browser
with a fresh profile clicking as soon as the history shows (its requests for the viewer's files
blocked until the click, so nothing is fetched ahead: the viewer's 20-odd MB of scripts and the
study's first frames fetched after the click), ``history-first`` in a browser with a fresh
profile too, whose patient stays ``--dwell`` seconds on the history page before the click (what
a patient does: the page may fetch the viewer's files ahead meanwhile), and ``warm`` in a
browser that opened the viewer once before (its files cached, as a patient's second visit). The
resource timing and the main thread's long tasks of each kind's last round are kept (where the
time went), and when the viewer page was prerendered by the history's speculation rules, the
moment the click activated it (a page shown before the click is counted from the click).

    .venv/bin/python bench/viewer_bench.py --instances 300 --rounds 5 --dwell 10

``--mbps 50 --rtt-ms 10`` has the browsers fetch over DevTools' emulation of such a link (the
bytes on the wire count: compressed where the server compressed them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dicomweb_bench import prepare_study, serve_study
from harness import (
    REPO,
    RESULTS_DIR,
    code_options,
    import_snapshot,
    latency_summary,
    log,
    machine,
    process_tree_stats,
    snapshot_code,
    write_json,
)

# Runs first in every document: records when the viewport first holds an image.
FIRST_DRAW_WATCH = """
(() => {
  const MIN_LEVELS = 32;
  function drawn() {
    const canvas = document.querySelector('canvas.cornerstone-canvas');
    if (!canvas || !canvas.width || !canvas.height) return false;
    const context = canvas.getContext('2d');
    if (!context) return false;
    const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    const seen = new Set();
    const stepX = Math.max(1, Math.floor(canvas.width / 96));
    const stepY = Math.max(1, Math.floor(canvas.height / 96));
    for (let y = 0; y < canvas.height; y += stepY) {
      for (let x = 0; x < canvas.width; x += stepX) {
        seen.add(data[4 * (y * canvas.width + x)]);
        if (seen.size >= MIN_LEVELS) return true;
      }
    }
    return false;
  }
  function watch() {
    if (window.__firstDrawEpochMs === undefined && drawn()) {
      window.__firstDrawEpochMs = performance.timeOrigin + performance.now();
      return;
    }
    requestAnimationFrame(watch);
  }
  requestAnimationFrame(watch);
  // The main thread's long tasks (script compiling and running, mostly): where a cold start's
  // time goes when not on the network.
  window.__longTasks = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      window.__longTasks.push([Math.round(e.startTime), Math.round(e.duration)]);
    }
  }).observe({ type: 'longtask' });
})();
"""


def open_browser(profile: Path, mbps: float = 0, rtt_ms: float = 0) -> Any:
    """The tests' headless Chromium (the same flags), watching for the first image; with
    ``mbps`` its network is DevTools' emulation of a link that fast each way, ``rtt_ms`` long
    (a hospital's link to the regional server, not loopback)."""
    sys.path.insert(0, str(REPO))
    from tests.browser import open_chromium

    driver = open_chromium(profile)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FIRST_DRAW_WATCH})
    if mbps:
        driver.execute_cdp_cmd("Network.enable", {})
        rate = mbps * 1e6 / 8
        driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {
                "offline": False,
                "latency": rtt_ms,
                "downloadThroughput": rate,
                "uploadThroughput": rate,
            },
        )
    return driver


def wait(driver: Any, condition: Any, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition(driver)
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"gave up after {seconds} s at {driver.current_url}")


def sign_in(driver: Any, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/signin")
    driver.find_element(By.ID, "credential").send_keys(token)
    driver.find_element(By.ID, "sign-in").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "li.study"), 60)


def block_viewer_files(driver: Any, blocked: bool) -> None:
    """Refuse (or allow again) every request for the viewer's files: a cold round's history
    page then fetches nothing ahead, as before the pages prefetched anything."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/viewer/*"] if blocked else []})


def click_to_first_image(driver: Any, url: str, study_uid: str, dwell: float = 0) -> float:
    """Seconds from the click on the study's viewer link to its first image drawn, the click
    ``dwell`` seconds after the history page showed the link (a patient reading it). Any
    blocking of the viewer's files is lifted just before the click."""
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/")
    link = wait(
        driver,
        lambda d: d.find_elements(
            By.CSS_SELECTOR, f'li.study[data-study-uid="{study_uid}"] .open-viewer'
        ),
        60,
    )[0]
    time.sleep(dwell)
    block_viewer_files(driver, blocked=False)
    clicked = driver.execute_script(
        "const at = performance.timeOrigin + performance.now(); arguments[0].click(); return at;",
        link,
    )
    drawn = wait(driver, _drawn_at, 120)
    return max(0.0, float(drawn) - float(clicked)) / 1000


def _drawn_at(driver: Any) -> float | None:
    """When the viewer's first image was drawn, once it was. A page the history prerendered
    (speculation rules) ran before DevTools' per-document script could reach it: it gets the
    watch now, which sees an image already drawn at its first animation frame."""
    drawn = driver.execute_script(
        "if (!location.pathname.startsWith('/viewer')) return null;"
        "if (window.__longTasks === undefined) {" + FIRST_DRAW_WATCH + "}"
        "return window.__firstDrawEpochMs;"
    )
    return None if drawn is None else float(drawn)


def timeline(driver: Any) -> list[dict[str, Any]]:
    """The viewer page's requests up to now: path, start and end in ms from the page's start,
    and bytes (where the time to the first image went)."""
    entries = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => ({"
        "path: new URL(e.name).pathname + new URL(e.name).search, "
        "start: Math.round(e.startTime), end: Math.round(e.responseEnd), "
        "bytes: e.transferSize}));"
    )
    drawn = driver.execute_script("return window.__firstDrawEpochMs - performance.timeOrigin")
    activation = driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "return n && n.activationStart ? Math.round(n.activationStart) : 0;"
    )
    long_tasks = driver.execute_script("return window.__longTasks")
    busy = sum(duration for start, duration in long_tasks if start < drawn)
    return [
        *entries,
        *(
            {"path": "(main thread long task)", "start": start, "end": start + duration}
            for start, duration in long_tasks
            if start < drawn
        ),
        {"path": f"(long tasks before the first image: {busy} ms)", "start": 0, "end": busy},
        {"path": "(first image drawn)", "start": round(drawn), "end": round(drawn)},
        {"path": "(prerendered, activated)", "start": activation, "end": activation},
    ]


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    scratch: Path = args.workdir.resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    code_dir, code = snapshot_code(scratch, None if args.worktree else args.ref)
    import_snapshot(code_dir)
    files, identity = prepare_study(scratch / "data", args.instances, args.seed)
    size = sum(p.stat().st_size for p in files)
    uid = identity["study_instance_uid"]
    log(f"{len(files)} files, {size / 1e6:.1f} MB, study {uid}")
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=scratch))
    held = serve_study(code_dir, run_dir, files, identity)
    server, token = held.server, held.patient_token
    url = f"http://127.0.0.1:{held.http_port}"
    browsers: list[Any] = []
    try:
        warm = open_browser(run_dir / "profile-warm", args.mbps, args.rtt_ms)
        browsers.append(warm)
        sign_in(warm, url, token)
        # The study's first view ever: the server builds its metadata (kept after) and the
        # browser fills its cache; later rounds are warm on the server, cold or warm in the
        # browser.
        first_view = click_to_first_image(warm, url, uid)
        times: dict[str, list[float]] = {"cold": [], "history-first": [], "warm": []}
        timelines: dict[str, list[dict[str, Any]]] = {}
        cpu_before = process_tree_stats(server.pid)
        for number_ in range(args.rounds):
            # Alternate which fresh-profile kind goes first (the machine's load drifts).
            fresh = [("cold", 0.0), ("history-first", args.dwell)]
            for kind, dwell in fresh if number_ % 2 == 0 else fresh[::-1]:
                profile = run_dir / f"profile-{kind}-{number_}"
                cold = open_browser(profile, args.mbps, args.rtt_ms)
                try:
                    block_viewer_files(cold, blocked=kind == "cold")
                    sign_in(cold, url, token)
                    times[kind].append(click_to_first_image(cold, url, uid, dwell))
                    timelines[kind] = timeline(cold)
                finally:
                    cold.quit()
                    shutil.rmtree(profile, ignore_errors=True)
            times["warm"].append(click_to_first_image(warm, url, uid))
            log(
                f"round {number_ + 1} of {args.rounds}: "
                + ", ".join(f"{kind} {values[-1]:.3f} s" for kind, values in times.items())
                + f" (load {os.getloadavg()[0]:.1f})"
            )
        cpu_after = process_tree_stats(server.pid)
        timelines["warm"] = timeline(warm)
        results = {kind: latency_summary(values) for kind, values in times.items()}
        document = {
            "benchmark": "viewer_bench",
            "command": " ".join([sys.executable, "bench/viewer_bench.py", *argv]),
            "code": code,
            "study": {"instances": len(files), "bytes": size, "rows_columns": "512x512"},
            "rounds": args.rounds,
            "dwell_seconds": args.dwell,
            "network": {"mbps": args.mbps, "rtt_ms": args.rtt_ms} if args.mbps else "loopback",
            "mutualrec_server_cpu_s": round(
                cpu_after.user_seconds
                + cpu_after.sys_seconds
                - cpu_before.user_seconds
                - cpu_before.sys_seconds,
                2,
            ),
            "first_view_seconds": round(first_view, 3),
            "results_seconds": results,
            "raw_seconds": times,
            "last_round_timelines_ms": timelines,
            "machine": machine(scratch),
        }
        write_json(args.output, document)
        log(f"results written to {args.output}")
        print(json.dumps(results, indent=2))
    finally:
        for driver in browsers:
            driver.quit()
        server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument(
        "--dwell",
        type=float,
        default=10,
        help="seconds the history-first browser stays on the history page before the click",
    )
    parser.add_argument(
        "--mbps",
        type=float,
        default=0,
        help="emulate a link of this many Mbit/s each way in the browsers (default: loopback)",
    )
    parser.add_argument("--rtt-ms", type=float, default=0, help="the emulated link's round trip")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mutualrec-viewer-bench"))
    parser.add_argument(
        "--output", type=Path, default=RESULTS_DIR / "issue20" / "viewer-first-image.json"
    )
    code_options(parser)
    return run(parser.parse_args(argv), argv)


if __name__ == "__main__":
    raise SystemExit(main())
