"""`mutualrec admin reindex`: held results re-mapped under a new catalog, resumably.

Results arrive over gRPC; the new catalog is the packaged one with LAB-NA dropped and sodium's
LOINC code given to LAB-K (a change no region would make, but one whose effect is plain).
Expected index rows are written by hand.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from mutualrec.cli import main
from mutualrec.matching.catalog import load_catalog
from mutualrec.services.reindex import ReindexProgress, reindex_lab_results
from mutualrec.storage import catalog_store
from mutualrec.storage.models import LabResultVersion, RecognitionResult
from tests.conftest import RunningServer
from tests.fhir_docs import submit
from tests.lis_docs import as_entry, lis_bundle, lis_patient, lis_report, lis_result

PACKAGED = Path(__file__).resolve().parents[2] / "mutualrec" / "matching" / "data"
NA_ROW_START = "LAB-NA,"
K_ROW = "LAB-K,钾,Potassium,lab,2823-3,"


def _new_catalog_text() -> str:
    text = (PACKAGED / "recognition_items.csv").read_text("utf-8")
    assert K_ROW in text
    text = text.replace(K_ROW, "LAB-K,钾,Potassium,lab,2823-3;2951-2,")
    return "".join(line for line in text.splitlines(True) if not line.startswith(NA_ROW_START))


def _submit(server: RunningServer) -> None:
    key = server.add_hospital("H500103001")
    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).replace(microsecond=0)
    analytes = [
        ("K", "2823-3", 4.1, "mmol/L"),
        ("NA", "2951-2", 140, "mmol/L"),
        ("CA", "2000-8", 2.3, "mmol/L"),
        ("WBC", "6690-2", 6.2, "10*9/L"),
        ("RBC", "789-8", 4.6, "10*12/L"),
        ("HGB", "718-7", 138, "g/L"),
        ("HCT", "4544-3", 41.5, "%"),
        ("PLT", "777-3", 215, "10*9/L"),
    ]
    urls = [f"urn:uuid:{name}" for name, _, _, _ in analytes]
    entries = [
        lis_patient(),
        as_entry(
            lis_report(
                "RPT-R",
                "58410-2",
                urls,
                effective=now - dt.timedelta(hours=2),
                issued=now - dt.timedelta(hours=1),
            ),
            "urn:uuid:rpt",
        ),
    ]
    entries += [
        as_entry(lis_result(f"R-{name}", code, value=value, unit=unit), url)
        for (name, code, value, unit), url in zip(analytes, urls, strict=True)
    ]
    assert submit(server.channel, key, lis_bundle(entries)).counts.created == 8


def _index(server: RunningServer) -> set[tuple[str, str]]:
    """(LOINC of the result, item code) of every index row."""
    with server.runtime.sessions() as session:
        loinc_of = {
            f"lab:{i}": loinc
            for i, loinc in session.execute(
                select(LabResultVersion.lab_result_id, LabResultVersion.loinc)
            )
        }
        rows = session.execute(select(RecognitionResult.result_ref, RecognitionResult.item_code))
        return {(loinc_of[ref], item) for ref, item in rows}


def _load_new_catalog(server: RunningServer) -> None:
    text = _new_catalog_text()
    with server.runtime.sessions.begin() as session:
        catalog_store.ensure_catalog(session, load_catalog(text, "2026.3"), text)


BEFORE = {
    ("2823-3", "LAB-K"),
    ("2951-2", "LAB-NA"),
    ("2000-8", "LAB-CA"),
    ("6690-2", "LAB-CBC"),
}
AFTER = {
    ("2823-3", "LAB-K"),
    ("2951-2", "LAB-K"),
    ("2000-8", "LAB-CA"),
    ("6690-2", "LAB-CBC"),
}


def test_reindex_remaps_held_results_under_the_new_catalog(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _submit(server)
    _load_new_catalog(server)
    assert _index(server) == BEFORE  # loading a catalog re-maps nothing by itself
    settings = server.runtime.settings
    monkeypatch.setenv("MUTUALREC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MUTUALREC_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MUTUALREC_PATIENT_KEY_SECRET", settings.patient_key_secret.decode())

    code = main(["admin", "reindex", "--batch", "3"])

    out = capsys.readouterr().out
    assert code == 0
    assert _index(server) == AFTER
    assert out.splitlines()[-1] == "reindexed under catalog 2026.3: 8 results"
    # Three batches of 3, 3 and 2 results; the sodium row moved from LAB-NA to LAB-K.
    assert out.splitlines()[-2] == "8 results, +1 -1 index rows, up to lab result 8"
    assert main(["admin", "reindex", "--catalog-version", "2026.9"]) == 2


class _Crash(Exception):
    """Stands for the process dying after a batch committed."""


def test_an_interrupted_reindex_resumes_after_the_last_batch(server: RunningServer) -> None:
    _submit(server)
    _load_new_catalog(server)
    with server.runtime.sessions() as session:
        catalog = catalog_store.current_catalog(session)

    def crash(_: ReindexProgress) -> None:
        raise _Crash

    with pytest.raises(_Crash):
        reindex_lab_results(server.runtime.sessions, catalog, lambda _: {}, batch=3, on_batch=crash)
    seen: list[ReindexProgress] = []
    final = reindex_lab_results(
        server.runtime.sessions, catalog, lambda _: {}, batch=3, on_batch=seen.append
    )

    # The second run starts after the 3 results the first committed.
    assert [p.results for p in seen] == [6, 8]
    assert final.done
    assert _index(server) == AFTER
