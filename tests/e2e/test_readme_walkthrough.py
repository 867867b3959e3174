"""End to end: the README's walkthrough, read from the README and run as a new user would.

Every ```sh block the README marks with ``<!-- walkthrough -->`` on the line before it is run,
in order, as one bash script (``set -euo pipefail``: any failing command fails the test) in an
empty folder laid out like a fresh clone (``.venv``, ``dicom_samples``), against a real
`mutualrec serve` started in that folder. Editing a command in the README edits this test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import REPO, SAMPLES
from tests.e2e.test_serve import ServeProcess, _spawn

pytestmark = pytest.mark.e2e
MARKER = "<!-- walkthrough -->"
BLOCK = re.compile(r"^" + re.escape(MARKER) + r"\n```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def walkthrough(readme: str) -> list[str]:
    """The marked sh blocks of ``readme``, in order."""
    return [match.group(1) for match in BLOCK.finditer(readme)]


def test_walkthrough_extraction_finds_only_marked_blocks() -> None:
    readme = (
        "intro\n```sh\nmake serve\n```\n"
        f"{MARKER}\n```sh\nmutualrec demo\n```\n"
        "```sh\nnot this\n```\n"
        f"{MARKER}\n```sh\n. var/demo.env\nmutualrec check X\n```\n"
    )
    assert walkthrough(readme) == ["mutualrec demo\n", ". var/demo.env\nmutualrec check X\n"]


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """An empty folder that looks like a fresh clone after `make install`."""
    folder = tmp_path / "clone"
    folder.mkdir()
    (folder / ".venv").symlink_to(Path(sys.prefix))
    (folder / "dicom_samples").symlink_to(SAMPLES)
    return folder


@pytest.fixture
def served(clone: Path) -> Iterator[ServeProcess]:
    """`mutualrec serve` on its embedded defaults, started in the clone (the README's first
    terminal); only the port differs, so tests run side by side."""
    yield from _spawn(clone, {})


def test_the_readme_walkthrough_runs(served: ServeProcess, clone: Path) -> None:
    blocks = walkthrough((REPO / "README.md").read_text(encoding="utf-8"))
    script = "\n".join(blocks)
    # The walkthrough is the product's point: the demo, a check, the report, the patient's view.
    for needed in ("mutualrec demo", "mutualrec check", "mutualrec report", "mutualrec share"):
        assert needed in script, f"the README's walkthrough lost `{needed}`"
    ran = subprocess.run(
        ["bash", "-c", "set -euxo pipefail\n" + script],
        cwd=clone,
        env=served.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, f"stdout:\n{ran.stdout}\nstderr:\n{ran.stderr}"
    out = ran.stdout
    # What a new user must see: a recognized CT of another hospital, a recognized lab item,
    # the CT opened by the hospital that asked, savings in the report, a shared film.
    assert re.search(r"IMG-CT-CHEST\s+RECOGNIZABLE\s+H500103001", out), out
    assert re.search(r"LAB-K\s+RECOGNIZABLE\s+H500103001", out), out
    assert "12 files, 1594176 bytes, checked, under film/" in out
    total = next(line for line in out.splitlines() if re.search(r"\btotal\b.*\d+\.\d\d$", line))
    # The demo's decisions: 200 (CT chest) + 4 (potassium) + 200 (CT head).
    assert total.endswith(" 404.00"), total
    assert "12 files, 1594176 bytes, checked, under shared/" in out
    charts = list(clone.glob("*.png"))
    assert charts, "the walkthrough draws a chart"
    assert all(Image.open(chart).format == "PNG" for chart in charts)
