"""End to end: `mutualrec submit-fhir` on a report-centred bundle with other FHIR resources."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_serve import ServeProcess, _register, _spawn
from tests.fhir_docs import encode
from tests.lis_docs import as_entry, lis_bundle, lis_patient, lis_report, lis_result

pytestmark = pytest.mark.e2e


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[ServeProcess]:
    """The service on its embedded defaults, in an empty folder."""
    yield from _spawn(tmp_path, {})


def test_other_resources_do_not_make_submit_fhir_fail(
    embedded: ServeProcess, tmp_path: Path
) -> None:
    key = _register(embedded, "H500103001")
    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).replace(microsecond=0)
    document = lis_bundle(
        [
            as_entry({"resourceType": "Composition", "status": "final"}, "urn:uuid:c"),
            lis_patient(),
            as_entry(
                lis_report(
                    "RPT-1",
                    "24323-8",
                    ["urn:uuid:k"],
                    effective=now - dt.timedelta(hours=2),
                    issued=now - dt.timedelta(hours=1),
                ),
                "urn:uuid:rpt",
            ),
            as_entry(lis_result("K-1", "2823-3", value=4.1, unit="mmol/L"), "urn:uuid:k"),
            as_entry({"resourceType": "Practitioner", "id": "dr-1"}, "urn:uuid:dr"),
        ]
    )
    path = tmp_path / "report.json"
    path.write_bytes(encode(document))

    result = embedded.cli("submit-fhir", "--key", key, str(path))

    assert result.returncode == 0, result.stdout + result.stderr
    kinds = [line.split()[0] for line in result.stdout.splitlines()[:5]]
    assert kinds == ["IGNORED", "CONTEXT", "CONTEXT", "CREATED", "IGNORED"]
    assert "ignored 2" in result.stdout
