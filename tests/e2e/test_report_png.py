"""End to end: the regulator's chart, `mutualrec report --format png`, over a real decision."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from tests.e2e.test_serve import ServeProcess, _register, _spawn
from tests.fhir_docs import PATIENT_ID, bundle, encode, observation

pytestmark = pytest.mark.e2e


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[ServeProcess]:
    """The service on its embedded defaults, in an empty folder."""
    yield from _spawn(tmp_path, {})


def _accepted_decision(proc: ServeProcess, tmp_path: Path) -> None:
    """A result of one hospital, checked and accepted by another (as test_serve does)."""
    issuer = _register(proc, "H500103001")
    asker = _register(proc, "H500106002")
    qualified = proc.cli(
        "admin",
        "add-qualification",
        "--institution",
        "H500103001",
        "--category",
        "lab",
        "--scope",
        "city",
        "--from",
        "2020-01-01",
    )
    assert qualified.returncode == 0, qualified.stderr
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    results = tmp_path / "k.json"
    results.write_bytes(encode(bundle([observation("PNG-K", issued=issued.isoformat())])))
    assert proc.cli("submit-fhir", "--key", issuer, str(results)).returncode == 0
    checked = proc.cli("check", "--key", asker, "--patient-id", PATIENT_ID, "--json", "LAB-K")
    assert checked.returncode == 0, checked.stderr
    check_id = json.loads(checked.stdout)["check_id"]
    accepted = proc.cli("decide", "--key", asker, check_id, "LAB-K", "accept")
    assert accepted.returncode == 0, accepted.stderr


def test_report_png_writes_a_chart_of_the_period(embedded: ServeProcess, tmp_path: Path) -> None:
    _accepted_decision(embedded, tmp_path)
    issued = embedded.cli("admin", "issue-key", "--role", "regulator")
    assert issued.returncode == 0, issued.stderr
    regulator = issued.stdout.strip()
    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    period = ["--from", (today - dt.timedelta(days=6)).isoformat(), "--to", today.isoformat()]
    chart = tmp_path / "chart.png"

    made = embedded.cli(
        "report",
        "--key",
        regulator,
        *period,
        "--by",
        "district",
        "--granularity",
        "day",
        "--format",
        "png",
        "--out",
        str(chart),
    )

    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[0] == str(chart)
    with Image.open(chart) as image:
        assert image.format == "PNG"
        assert image.size == (1200, 750)
    # The same figures as the table the regulator can read in the terminal.
    table = embedded.cli("report", "--key", regulator, *period, "--by", "district")
    assert table.returncode == 0, table.stderr
    assert "Yuzhong" in table.stdout
    assert "4.00" in table.stdout

    empty = tmp_path / "empty.png"
    quiet = embedded.cli(
        "report",
        "--key",
        regulator,
        "--from",
        "2020-01-01",
        "--to",
        "2020-03-31",
        "--by",
        "item",
        "--format",
        "png",
        "--out",
        str(empty),
    )
    assert quiet.returncode == 0, quiet.stderr
    with Image.open(empty) as image:
        assert image.size == (1200, 750)

    no_out = embedded.cli("report", "--key", regulator, *period, "--by", "item", "--format", "png")
    assert no_out.returncode == 2
    assert "--out" in no_out.stderr


def test_rebuild_statistics_gives_the_same_report(embedded: ServeProcess, tmp_path: Path) -> None:
    _accepted_decision(embedded, tmp_path)
    regulator = embedded.cli("admin", "issue-key", "--role", "regulator").stdout.strip()
    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    ask = ("report", "--key", regulator, "--from", today, "--to", today, "--by", "item")
    before = embedded.cli(*ask, "--format", "csv")
    assert before.returncode == 0, before.stderr
    assert "LAB-K" in before.stdout

    rebuilt = embedded.cli("admin", "rebuild-statistics")

    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.strip() == "tallied 1 days again from the record of checks and decisions"
    after = embedded.cli(*ask, "--format", "csv")
    assert after.stdout == before.stdout
