"""StatisticsService over real gRPC, on SQLite and PostgreSQL.

Checks and decisions are made through the real CheckOrder and RecordDecision RPCs; every figure
of the report is compared with a count made here from those replies, not from the code tested.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import select, text

from mutualrec.security.access import REGULATOR
from mutualrec.statistics.periods import Period, full_months, today
from mutualrec.statistics.report import GroupBy
from mutualrec.storage import statistics_index
from mutualrec.storage.db import ensure_schema, make_engine
from mutualrec.storage.models import CheckLine, Decision, RecognitionCheck, StatTallyMonth
from mutualrec.v1 import recognition_pb2, statistics_pb2, statistics_pb2_grpc
from tests.conftest import RunningServer, make_settings, new_key, start_server
from tests.fhir_docs import OTHER_PATIENT_ID, bundle, observation, submit
from tests.helpers import bad_request
from tests.integration.test_recognition import (
    ASKER,
    ISSUER,
    UNQUALIFIED,
    _check,
    _decide,
    _fhir_time,
    _setup,
)

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def _regulator(server: RunningServer) -> str:
    with server.runtime.sessions.begin() as session:
        return new_key(session, REGULATOR)


def _report(server: RunningServer, key: str, **fields: Any) -> statistics_pb2.SavingsReport:
    stub = statistics_pb2_grpc.StatisticsServiceStub(server.channel)
    response: statistics_pb2.SavingsReport = stub.GetSavingsReport(
        statistics_pb2.ReportRequest(**fields),
        metadata=(("authorization", f"Bearer {key}"),),
        timeout=30,
    )
    return response


def _export(server: RunningServer, key: str, **fields: Any) -> str:
    stub = statistics_pb2_grpc.StatisticsServiceStub(server.channel)
    chunks = stub.ExportReport(
        statistics_pb2.ReportRequest(**fields),
        metadata=(("authorization", f"Bearer {key}"),),
        timeout=30,
    )
    return b"".join(chunk.data for chunk in chunks).decode("utf-8")


def _figures(row: statistics_pb2.ReportRow) -> dict[str, Any]:
    return {
        "checks": row.checks,
        "items_checked": row.items_checked,
        "items_recognizable": row.items_recognizable,
        "accepted": row.accepted,
        "declined": row.declined,
        "reasons": {pair.reason: pair.count for pair in row.declined_by_reason},
        "saving": Decimal(row.saving),
    }


def _empty() -> dict[str, Any]:
    return {
        "checks": set(),
        "items_checked": 0,
        "items_recognizable": 0,
        "accepted": 0,
        "declined": 0,
        "reasons": defaultdict(int),
        "saving": Decimal(0),
    }


def _expected(groups: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        key: {**g, "checks": len(g["checks"]), "reasons": dict(g["reasons"])}
        for key, g in groups.items()
    }


def test_report_matches_an_independent_count(server: RunningServer) -> None:
    keys = _setup(server)
    regulator = _regulator(server)
    issued = _fhir_time(dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    submit(
        server.channel,
        keys[ISSUER],
        bundle(
            [observation("S-K", issued=issued), observation("S-NA", loinc="2951-2", issued=issued)]
        ),
    )
    submit(
        server.channel,
        keys[ISSUER],
        bundle([observation("S-K2", issued=issued)]),
    )
    # The asker's checks, then the issuer asking for another patient (no results): two askers.
    checks = [
        (keys[ASKER], ASKER, _check(server, keys[ASKER], "LAB-K", "LAB-NA", "IMG-CT-CHEST", "X")),
        (keys[ASKER], ASKER, _check(server, keys[ASKER], "LAB-K")),
        (keys[ASKER], ASKER, _check(server, keys[ASKER], "LAB-K", "LAB-CBC")),
        (keys[ISSUER], ISSUER, _check(server, keys[ISSUER], "LAB-K", patient=OTHER_PATIENT_ID)),
    ]
    plan = {
        (0, 0): {"decision": recognition_pb2.ACCEPTED},
        (0, 1): {
            "decision": recognition_pb2.DECLINED,
            "reason": recognition_pb2.PATIENT_REQUEST,
        },
        (1, 0): {"decision": recognition_pb2.DECLINED, "reason": recognition_pb2.EMERGENCY},
        (2, 0): {"decision": recognition_pb2.ACCEPTED},
    }
    decisions: dict[tuple[int, int], recognition_pb2.RecordDecisionResponse] = {}
    for (n, line), fields in plan.items():
        key, _, response = checks[n]
        assert response.lines[line].verdict == recognition_pb2.RECOGNIZABLE
        decisions[n, line] = _decide(server, key, response.check_id, line, **fields)

    by_item: dict[str, dict[str, Any]] = defaultdict(_empty)
    by_asker: dict[str, dict[str, Any]] = defaultdict(_empty)
    by_issuer: dict[str, dict[str, Any]] = defaultdict(_empty)
    for n, (_, asker, response) in enumerate(checks):
        for line in response.lines:
            issuer = line.result.issuer_code if line.HasField("result") else ""
            for groups, group_key in (
                (by_item, line.item_code),
                (by_asker, asker),
                (by_issuer, issuer),
            ):
                g = groups[group_key]
                g["checks"].add(response.check_id)
                g["items_checked"] += 1
                g["items_recognizable"] += line.verdict == recognition_pb2.RECOGNIZABLE
                decided = decisions.get((n, line.line))
                if decided is None:
                    continue
                if decided.decision == recognition_pb2.ACCEPTED:
                    g["accepted"] += 1
                    g["saving"] += Decimal(decided.booked_saving)
                else:
                    g["declined"] += 1
                    g["reasons"][recognition_pb2.DeclineReason.Name(decided.reason)] += 1

    day = today().isoformat()
    for group_by, expected in (
        (statistics_pb2.GROUP_BY_ITEM, _expected(by_item)),
        (statistics_pb2.GROUP_BY_ASKING_INSTITUTION, _expected(by_asker)),
        (statistics_pb2.GROUP_BY_ISSUING_INSTITUTION, _expected(by_issuer)),
    ):
        report = _report(
            server,
            regulator,
            from_date=day,
            to_date=day,
            granularity=statistics_pb2.GRANULARITY_DAY,
            group_by=group_by,
        )
        got = {row.group_key: _figures(row) for row in report.rows}
        assert got == expected
        assert {row.period_start for row in report.rows} == {day}
        # Totals are the sums of the rows.
        total = _figures(report.totals)
        for name in ("checks", "items_checked", "items_recognizable", "accepted", "declined"):
            assert total[name] == sum(g[name] for g in expected.values())
        assert total["saving"] == sum(g["saving"] for g in expected.values())
        assert report.totals.recognition_rate == str(
            (Decimal(total["accepted"]) / total["items_recognizable"]).quantize(Decimal("0.0001"))
        )

    by_district = _report(
        server,
        regulator,
        from_date=day,
        to_date=day,
        granularity=statistics_pb2.GRANULARITY_MONTH,
        group_by=statistics_pb2.GROUP_BY_DISTRICT,
    )
    assert [row.group_key for row in by_district.rows] == ["Yuzhong"]  # every test hospital's
    assert by_district.rows[0].checks == len(checks)
    assert by_district.rows[0].saving == by_district.totals.saving == "8.00"  # 2 x LAB-K

    csv_text = _export(
        server,
        regulator,
        from_date=day,
        to_date=day,
        granularity=statistics_pb2.GRANULARITY_WEEK,
        group_by=statistics_pb2.GROUP_BY_CATEGORY,
    )
    records = csv_text.strip().splitlines()
    assert records[0].startswith("period_start,period_end,group_key,group_label,checks,")
    assert records[-1].split(",")[2] == "TOTAL"
    assert OTHER_PATIENT_ID not in csv_text


def test_only_regulators_read_statistics(server: RunningServer) -> None:
    keys = _setup(server)
    regulator = _regulator(server)
    day = today().isoformat()
    request = {
        "from_date": day,
        "to_date": day,
        "granularity": statistics_pb2.GRANULARITY_DAY,
        "group_by": statistics_pb2.GROUP_BY_DISTRICT,
    }
    with pytest.raises(grpc.RpcError) as denied:
        _report(server, keys[ASKER], **request)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as export_denied:
        _export(server, keys[ASKER], **request)
    assert export_denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as no_key:
        _report(server, "mrk_nope", **request)
    assert no_key.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # A regulator sees no patient: the check is refused.
    with pytest.raises(grpc.RpcError) as check_denied:
        _check(server, regulator, "LAB-K")
    assert check_denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as submit_denied:
        submit(server.channel, regulator, bundle([observation("R-1")]))
    assert submit_denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _report(server, regulator, **request).rows == []


@pytest.mark.parametrize(
    ("fields", "violations"),
    [
        (
            {"from_date": "2026-03-02", "to_date": "2026-03-01"},
            {"to_date": "END_BEFORE_START"},
        ),
        ({"from_date": "2025-01-01", "to_date": "2026-03-01"}, {"to_date": "TOO_LONG"}),
        ({"from_date": "2026-3-1", "to_date": "2026-03-01"}, {"from_date": "BAD_DATE"}),
        ({"group_by": statistics_pb2.GROUP_BY_UNSPECIFIED}, {"group_by": "UNKNOWN_GROUP_BY"}),
        ({"group_by": 99}, {"group_by": "UNKNOWN_GROUP_BY"}),
        (
            {"granularity": statistics_pb2.GRANULARITY_UNSPECIFIED},
            {"granularity": "UNKNOWN_GRANULARITY"},
        ),
        (
            {"from_date": "2026-01-01", "to_date": "2026-06-30"},
            {"granularity": "GRANULARITY_TOO_FINE"},
        ),
    ],
)
def test_bad_requests_name_the_field(
    server: RunningServer, fields: dict[str, Any], violations: dict[str, str]
) -> None:
    regulator = _regulator(server)
    request = {
        "from_date": "2026-03-01",
        "to_date": "2026-03-03",
        "granularity": statistics_pb2.GRANULARITY_DAY,
        "group_by": statistics_pb2.GROUP_BY_ITEM,
        **fields,
    }
    with pytest.raises(grpc.RpcError) as error:
        _report(server, regulator, **request)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(error.value) == violations


def test_closed_day_gives_the_same_numbers_every_time(server: RunningServer) -> None:
    keys = _setup(server)
    regulator = _regulator(server)
    closed = today() - dt.timedelta(days=2)  # the last closed day
    noon = dt.datetime.combine(closed, dt.time(12), SHANGHAI)
    # A day recorded before tallies were kept: written straight into the record, then tallied
    # from it as the migration and the operator's rebuild do.
    _record_directly(
        server,
        [
            (noon + dt.timedelta(minutes=n), accepted)
            for n, accepted in enumerate((True, False, None))
        ],
    )
    with server.runtime.sessions.begin() as session:
        assert statistics_index.rebuild(session) == 1
    request = {
        "from_date": closed.isoformat(),
        "to_date": closed.isoformat(),
        "granularity": statistics_pb2.GRANULARITY_DAY,
        "group_by": statistics_pb2.GROUP_BY_ASKING_INSTITUTION,
    }
    first = _report(server, regulator, **request)
    assert [(r.group_key, r.checks, r.accepted, r.declined) for r in first.rows] == [
        (ASKER, 3, 1, 1)
    ]
    assert first.rows[0].saving == "4.00"
    # The undecided line can no longer be decided, and new checks count on their own day.
    with server.runtime.sessions() as session:
        decided = _decided(session)
        undecided = [line for line in session.query(CheckLine) if line.check_id not in decided]
    with pytest.raises(grpc.RpcError) as late:
        _decide(server, keys[ASKER], undecided[0].check_id, 0, decision=recognition_pb2.ACCEPTED)
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    _check(server, keys[ASKER], "LAB-K")
    statistics_index.compact(server.runtime.engine)
    second = _report(server, regulator, **request)
    assert list(second.rows) == list(first.rows)
    assert second.totals == first.totals


def _every_grouping(server: RunningServer, key: str) -> dict[int, list[Any]]:
    day = today().isoformat()
    return {
        group_by: list(
            _report(
                server,
                key,
                from_date=day,
                to_date=day,
                granularity=statistics_pb2.GRANULARITY_DAY,
                group_by=group_by,
            ).rows
        )
        for group_by in statistics_pb2.GroupBy.values()
        if group_by != statistics_pb2.GROUP_BY_UNSPECIFIED
    }


def test_tallies_kept_on_write_equal_a_rebuild_from_the_record(server: RunningServer) -> None:
    keys = _setup(server)
    regulator = _regulator(server)
    issued = _fhir_time(dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    submit(
        server.channel,
        keys[ISSUER],
        bundle(
            [observation("T-K", issued=issued), observation("T-NA", loinc="2951-2", issued=issued)]
        ),
    )
    first = _check(server, keys[ASKER], "LAB-K", "LAB-NA", "IMG-CT-CHEST")
    second = _check(server, keys[ASKER], "LAB-K", "LAB-CBC")
    _check(server, keys[ISSUER], "LAB-K", patient=OTHER_PATIENT_ID)
    _decide(server, keys[ASKER], first.check_id, 0, decision=recognition_pb2.ACCEPTED)
    _decide(
        server,
        keys[ASKER],
        first.check_id,
        1,
        decision=recognition_pb2.DECLINED,
        reason=recognition_pb2.FAST_CHANGING_VALUE,
    )
    _decide(
        server,
        keys[ASKER],
        second.check_id,
        0,
        decision=recognition_pb2.DECLINED,
        reason=recognition_pb2.EMERGENCY,
    )
    # The same decision again books nothing twice.
    _decide(server, keys[ASKER], first.check_id, 0, decision=recognition_pb2.ACCEPTED)

    on_write = _every_grouping(server, regulator)
    by_item = {row.group_key: row for row in on_write[statistics_pb2.GROUP_BY_ITEM]}
    assert (by_item["LAB-K"].checks, by_item["LAB-K"].accepted, by_item["LAB-K"].declined) == (
        3,
        1,
        1,
    )
    assert by_item["LAB-NA"].declined == 1
    statistics_index.compact(server.runtime.engine)
    assert _every_grouping(server, regulator) == on_write
    months_on_write = _month_tallies(server)
    with server.runtime.sessions.begin() as session:
        statistics_index.rebuild(session)
    assert _every_grouping(server, regulator) == on_write
    assert _month_tallies(server) == months_on_write
    assert {row[0] for row in months_on_write} == {g.value for g in GroupBy}


def _month_tallies(server: RunningServer) -> list[tuple[Any, ...]]:
    with server.runtime.sessions() as session:
        return sorted(tuple(row) for row in session.execute(select(StatTallyMonth.__table__)))


def test_whole_months_come_from_month_tallies_and_edges_from_days(server: RunningServer) -> None:
    """A year by month: checks at the edges of whole months and in the partial months."""
    _setup(server)
    regulator = _regulator(server)
    end = today() - dt.timedelta(days=2)
    start = end - dt.timedelta(days=365)
    # Both edge months must be partial whatever today is: the period starts after a 1st and ends
    # before a month's last day.
    while start.day == 1 or (end + dt.timedelta(days=1)).day == 1:
        end -= dt.timedelta(days=1)
        start = end - dt.timedelta(days=365)
    months = full_months(Period(start, end))
    assert months is not None
    first_whole = months.start
    last_whole = months.end
    # (day, accepted) of each check, one line each; counted here by the month it falls in.
    recorded = [
        (start, True),  # the period's first day, in a partial month
        (first_whole - dt.timedelta(days=1), False),  # the same partial month's last day
        (first_whole, True),
        (first_whole, None),
        (last_whole, False),
        (last_whole + dt.timedelta(days=1), True),  # the last partial month
        (end, True),
        (start - dt.timedelta(days=1), True),  # outside the period
        (end + dt.timedelta(days=1), True),  # outside the period
    ]
    _record_directly(
        server,
        [(dt.datetime.combine(day, dt.time(12), SHANGHAI), accepted) for day, accepted in recorded],
    )
    with server.runtime.sessions.begin() as session:
        statistics_index.rebuild(session)

    report = _report(
        server,
        regulator,
        from_date=start.isoformat(),
        to_date=end.isoformat(),
        granularity=statistics_pb2.GRANULARITY_MONTH,
        group_by=statistics_pb2.GROUP_BY_ASKING_INSTITUTION,
    )

    expected: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for day, accepted in recorded:
        if start <= day <= end:
            row_start = max(day.replace(day=1), start).isoformat()
            expected[row_start][0] += 1
            expected[row_start][1] += accepted is True
            expected[row_start][2] += accepted is False
    assert {r.period_start: [r.checks, r.accepted, r.declined] for r in report.rows} == dict(
        expected
    )
    assert report.totals.checks == 7


def _institution_id(session: Any, code: str) -> int:
    from mutualrec.storage.institutions import find_institution

    return find_institution(session, code).id


def _decided(session: Any) -> set[str]:
    return {row.check_id for row in session.query(Decision)}


def _record_directly(server: RunningServer, checks: list[tuple[dt.datetime, bool | None]]) -> None:
    """Write checks of ASKER (one LAB-K line each, decided at once unless None) straight into
    the record, as if made before tallies were kept."""
    with server.runtime.sessions.begin() as session:
        asker_id = _institution_id(session, ASKER)
        for when, accepted in checks:
            check_id = str(uuid.uuid4())
            session.add(_check_row(check_id, asker_id, when))
            session.flush()
            session.add(_line_row(check_id, 0))
            session.flush()
            if accepted is not None:
                session.add(_decision_row(check_id, accepted, when))


def _check_row(check_id: str, asker_id: int, when: dt.datetime) -> RecognitionCheck:
    return RecognitionCheck(
        id=check_id,
        institution_id=asker_id,
        patient_key="p" * 64,
        received_at=when.astimezone(dt.UTC),
        catalog_version="2026.1",
        order_id="",
        department="",
        emergency=False,
    )


def _line_row(check_id: str, line: int) -> CheckLine:
    return CheckLine(
        check_id=check_id,
        line=line,
        ordered_code="LAB-K",
        item_code="LAB-K",
        verdict="RECOGNIZABLE",
        reason="",
        result_ref="lab:1",
        result_version=1,
        issuer_institution_id=None,
        estimated_saving="4.00",
    )


def _decision_row(check_id: str, accepted: bool, when: dt.datetime) -> Decision:
    return Decision(
        check_id=check_id,
        line=0,
        accepted=accepted,
        reason="" if accepted else "CONDITION_CHANGED",
        reason_text="",
        booked_saving="4.00" if accepted else "0",
        decided_at=when,
    )


@pytest.fixture
def strict_server(tmp_path: Path, database_url: str) -> Iterator[RunningServer]:
    """A server that leaves out groups of fewer than 2 checks and computes one report at once."""
    yield from start_server(
        make_settings(
            tmp_path,
            MUTUALREC_DATABASE_URL=database_url,
            MUTUALREC_MIN_GROUP_SIZE="2",
            MUTUALREC_MAX_CONCURRENT_REPORTS="1",
        )
    )


def test_small_groups_are_left_out_and_reports_wait_their_turn(
    strict_server: RunningServer,
) -> None:
    server = strict_server
    keys = _setup(server)
    regulator = _regulator(server)
    for _ in range(2):
        _check(server, keys[ASKER], "LAB-K")
    _check(server, keys[UNQUALIFIED], "LAB-K", "LAB-NA")
    day = today().isoformat()
    request = {
        "from_date": day,
        "to_date": day,
        "granularity": statistics_pb2.GRANULARITY_DAY,
        "group_by": statistics_pb2.GROUP_BY_ASKING_INSTITUTION,
    }

    report = _report(server, regulator, **request)

    assert [(r.group_key, r.checks, r.items_checked) for r in report.rows] == [(ASKER, 2, 2)]
    assert (report.suppressed_rows, report.min_group_size) == (1, 2)
    # Totals are the sums of the rows shown, so a left-out group cannot be worked out from them.
    assert (report.totals.checks, report.totals.items_checked) == (2, 2)
    csv_rows = _export(server, regulator, **request).splitlines()
    assert [line.split(",")[2] for line in csv_rows[1:]] == [ASKER, "TOTAL"]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda _: _report(server, regulator, **request), range(4)))
    assert [list(r.rows) for r in together] == [list(report.rows)] * 4


def test_the_compactor_empties_and_vacuums_the_deltas_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    """Autovacuum is off on the CI database: only the compactor's own VACUUM counts here."""
    settings = make_settings(
        tmp_path, MUTUALREC_DATABASE_URL=postgres_url, MUTUALREC_TALLY_INTERVAL_SECONDS="0.2"
    )
    running = start_server(settings)
    server = next(running)
    try:
        keys = _setup(server)
        for _ in range(3):
            _check(server, keys[ASKER], "LAB-K", "LAB-NA")
        deadline = time.monotonic() + 30
        while True:
            with server.runtime.engine.connect() as connection:
                connection.execute(text("SELECT pg_stat_clear_snapshot()"))
                left = connection.execute(text("SELECT count(*) FROM stat_delta")).scalar_one()
                vacuums = connection.execute(
                    text(
                        "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'stat_delta'"
                    )
                ).scalar_one()
            if (left, vacuums > 0) == (0, True) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert (left, vacuums > 0) == (0, True)
    finally:
        running.close()


def test_a_backlog_of_deltas_is_folded_by_hash_join_whatever_the_statistics_say(
    postgres_url: str,
) -> None:
    """The compactor vacuums the deltas after every fold. Vacuumed while one delta is left in
    the last of many pages, the table is recorded as one row in those pages, and as it fills
    them again the planner still expects one row: it then joined the batch to the deltas by a
    nested loop that reran the batch's subquery per delta (quadratic: 124,000 deltas were still
    being folded after 20 minutes on a bench database). The plan must be a hash join."""
    engine = make_engine(postgres_url)
    counters = ", ".join(["0"] * (len(statistics_index.DELTA_COLUMNS) - 3))
    fill = text(
        f"INSERT INTO stat_delta ({', '.join(statistics_index.DELTA_COLUMNS)}) "
        f"SELECT 'district', DATE '2026-01-01', 'k' || n, {counters} "
        "FROM generate_series(1, 20000) AS n"
    )
    try:
        ensure_schema(engine, auto_migrate=True)
        with engine.begin() as connection:
            connection.execute(fill)
            connection.execute(
                text("DELETE FROM stat_delta WHERE id < (SELECT max(id) FROM stat_delta)")
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM stat_delta"))  # one row left, in the last page
        with engine.begin() as connection:
            connection.execute(fill)
        with engine.begin() as connection:
            statistics_index._plan_compaction(connection)
            plan = "\n".join(
                row[0]
                for row in connection.execute(
                    text("EXPLAIN " + statistics_index._COMPACT_PG.text), {"batch": 50_000}
                )
            )
        assert "Nested Loop" not in plan
        assert statistics_index.compact(engine) == 20_001
    finally:
        engine.dispose()
