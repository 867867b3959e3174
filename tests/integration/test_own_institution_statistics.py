"""A hospital's reuse of its own results, split out in every statistics grouping, and left out
of the recognition figures when the region policy says so; over real gRPC on both databases.
"""

from __future__ import annotations

import datetime as dt

from mutualrec.security.access import REGULATOR
from mutualrec.services.catalogs import Catalogs
from mutualrec.statistics.periods import today
from mutualrec.storage import statistics_index
from mutualrec.v1 import recognition_pb2, statistics_pb2, statistics_pb2_grpc
from tests.conftest import RunningServer, new_key
from tests.fhir_docs import bundle, observation, submit
from tests.integration.test_recognition import ASKER, ISSUER, _check, _decide, _fhir_time, _setup


def _report(server: RunningServer, key: str, group_by: int) -> statistics_pb2.SavingsReport:
    day = today().isoformat()
    stub = statistics_pb2_grpc.StatisticsServiceStub(server.channel)
    response: statistics_pb2.SavingsReport = stub.GetSavingsReport(
        statistics_pb2.ReportRequest(
            from_date=day,
            to_date=day,
            granularity=statistics_pb2.GRANULARITY_DAY,
            group_by=group_by,
        ),
        metadata=(("authorization", f"Bearer {key}"),),
        timeout=30,
    )
    return response


def _figures(row: statistics_pb2.ReportRow) -> tuple[object, ...]:
    return (
        row.items_recognizable,
        row.accepted,
        row.saving,
        row.recognition_rate,
        row.items_recognizable_own_institution,
        row.accepted_own_institution,
        row.saving_own_institution,
    )


def test_own_results_are_counted_apart_in_every_grouping(server: RunningServer) -> None:
    keys = _setup(server)
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    submit(server.channel, keys[ISSUER], bundle([observation("K-1", issued=_fhir_time(issued))]))
    # The issuing hospital reuses its own potassium; another hospital recognizes it.
    for key in (keys[ISSUER], keys[ASKER]):
        check = _check(server, key, "LAB-K")
        _decide(server, key, check.check_id, 0, decision=recognition_pb2.ACCEPTED)
    with server.runtime.sessions.begin() as session:
        regulator = new_key(session, REGULATOR)
    statistics_index.compact(server.runtime.engine)

    by_asker = _report(server, regulator, statistics_pb2.GROUP_BY_ASKING_INSTITUTION)
    by_category = _report(server, regulator, statistics_pb2.GROUP_BY_CATEGORY)

    # LAB-K's reference price is 4 yuan.
    assert by_asker.own_institution_counted is True
    assert {row.group_key: _figures(row) for row in by_asker.rows} == {
        ASKER: (1, 1, "4.00", "1.0000", 0, 0, "0.00"),
        ISSUER: (1, 1, "4.00", "1.0000", 1, 1, "4.00"),
    }
    assert {row.group_key: _figures(row) for row in by_category.rows} == {
        "lab": (2, 2, "8.00", "1.0000", 1, 1, "4.00")
    }
    assert _figures(by_asker.totals) == (2, 2, "8.00", "1.0000", 1, 1, "4.00")

    # A region that reports only recognition between institutions.
    Catalogs(server.runtime.sessions).load_policy(
        'version = "2027.9"\n[statistics]\nown_institution_counts = false\n'
    )
    server.runtime.reference.invalidate()

    by_asker = _report(server, regulator, statistics_pb2.GROUP_BY_ASKING_INSTITUTION)
    by_pair = _report(server, regulator, statistics_pb2.GROUP_BY_ISSUER_ASKER_PAIR)

    assert by_asker.own_institution_counted is False
    assert {row.group_key: _figures(row) for row in by_asker.rows} == {
        ASKER: (1, 1, "4.00", "1.0000", 0, 0, "0.00"),
        ISSUER: (0, 0, "0.00", "", 1, 1, "4.00"),
    }
    assert {row.group_key: _figures(row) for row in by_pair.rows} == {
        f"{ISSUER}>{ASKER}": (1, 1, "4.00", "1.0000", 0, 0, "0.00"),
        f"{ISSUER}>{ISSUER}": (0, 0, "0.00", "", 1, 1, "4.00"),
    }
    assert _figures(by_asker.totals) == (1, 1, "4.00", "1.0000", 1, 1, "4.00")
