"""The corpus of report-centred LIS bundles (tests/fixtures/lis) over gRPC, entry by entry.

Every entry's expected outcome, and the catalog items it makes, are written by hand in
tests/fixtures/lis/expected.json; the bundles are submitted as they are, byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from mutualrec.recognition.result_items import lab_ref
from mutualrec.storage.keys import document_key
from mutualrec.storage.models import LabResultVersion, RecognitionResult
from mutualrec.v1 import ingest_pb2
from tests.conftest import RunningServer
from tests.fhir_docs import submit

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "lis"
EXPECTED: dict[str, list[str]] = {
    name: lines
    for name, lines in json.loads((CORPUS / "expected.json").read_text("utf-8")).items()
    if not name.startswith("_")
}


def _items_by_entry(server: RunningServer, sha256: str) -> dict[int, list[str]]:
    with server.runtime.sessions() as session:
        rows = session.execute(
            select(LabResultVersion.entry_index, LabResultVersion.lab_result_id).where(
                LabResultVersion.document_key == document_key(sha256)
            )
        ).all()
        items = session.execute(select(RecognitionResult.result_ref, RecognitionResult.item_code))
        by_ref: dict[str, list[str]] = {}
        for ref, item in items:
            by_ref.setdefault(ref, []).append(item)
    return {index: sorted(by_ref.get(lab_ref(result_id), [])) for index, result_id in rows}


def test_the_corpus_covers_every_file() -> None:
    assert sorted(EXPECTED) == sorted(p.name for p in CORPUS.glob("*.json") if p.stem != "expected")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_entry_of_the_corpus_has_its_expected_outcome(
    server: RunningServer, name: str
) -> None:
    key = server.add_hospital("H500103001")
    body = (CORPUS / name).read_bytes()

    response = submit(server.channel, key, body)

    items = _items_by_entry(server, response.document_sha256)
    found: list[str] = []
    for entry in response.entries:
        words = [ingest_pb2.EntryOutcomeKind.Name(entry.outcome)]
        if entry.outcome == ingest_pb2.ENTRY_REJECTED:
            words.append(entry.violations[0].reason)
        else:
            words += items.get(entry.index, [])
        found.append(" ".join(words))
    assert found == EXPECTED[name]
