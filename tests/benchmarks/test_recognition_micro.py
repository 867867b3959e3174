"""Micro-benchmarks of FHIR preparation and of the recognition rules (pytest-benchmark).

Skipped in the normal test run; figures go to docs/benchmarks.md. Each asserts its result, so a
broken hot path fails here too.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pytest_benchmark.fixture import BenchmarkFixture

from mutualrec.ingest.fhir_version import FhirVersion
from mutualrec.ingest.lab_ingest import PreparedBatch, prepare_batch
from mutualrec.matching.catalog import packaged_catalog
from mutualrec.matching.facts import (
    InstitutionFacts,
    InstitutionLevel,
    ItemCategory,
    Qualification,
    ResultStatus,
    Scope,
    Verdict,
)
from mutualrec.matching.indexed_results import IndexedResult
from mutualrec.matching.order_lines import decide_lines, plan_lines
from mutualrec.matching.policy import Policy
from mutualrec.services.reference import ReferenceData
from tests.fhir_factory import bundle_bytes

NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)


def test_prepare_a_bundle_of_1000_observations(benchmark: BenchmarkFixture) -> None:
    bodies = iter([bundle_bytes(seed, observations=1000, now=NOW) for seed in range(40)])

    def prepare() -> PreparedBatch:
        # A new bundle each round: new patients and specimens, as a LIS feed sends them.
        batch = prepare_batch(next(bodies), FhirVersion.R4, NOW, b"s" * 32)
        assert isinstance(batch, PreparedBatch)
        return batch

    batch = benchmark.pedantic(prepare, rounds=30, warmup_rounds=2)
    assert len(batch.pending) == 1000


def test_decide_five_ordered_items(benchmark: BenchmarkFixture) -> None:
    catalog = packaged_catalog()
    issuer = InstitutionFacts("H1", "Issuer", InstitutionLevel.TERTIARY, "chongqing", "cy")
    asker = InstitutionFacts("H2", "Asker", InstitutionLevel.SECONDARY, "chongqing", "cy")
    data = ReferenceData(
        catalog=catalog,
        institutions={1: issuer, 2: asker},
        qualifications=tuple(
            Qualification("H1", None, category, Scope.CITY, NOW - dt.timedelta(days=900), None)
            for category in ItemCategory
        ),
        loaded_at=0.0,
    )
    rows = [
        IndexedResult(code, "lab", f"lab:{n}", 1, ResultStatus.FINAL.value, NOW - age, 1, "{}")
        for n, (code, age) in enumerate(
            [
                ("LAB-K", dt.timedelta(days=2)),
                ("LAB-CBC", dt.timedelta(days=5)),
                ("LAB-GLU", dt.timedelta(days=12)),
                ("LAB-ALT", dt.timedelta(days=40)),
                ("LAB-K", dt.timedelta(days=20)),
            ]
        )
    ]
    lines = plan_lines(["LAB-K", "LAB-CBC", "14749-6", "LAB-ALT", "IMG-CT-CHEST"], catalog, {})
    checked = benchmark(
        lambda: decide_lines(lines, rows, data, 2, NOW, {"LAB-K": Decimal("4")}, Policy())
    )
    assert [c.finding.verdict for c in checked] == [
        Verdict.RECOGNIZABLE,
        Verdict.EXPIRED,
        Verdict.RECOGNIZABLE,
        Verdict.EXPIRED,
        Verdict.NO_RESULT,
    ]
