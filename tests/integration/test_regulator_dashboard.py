"""The regulators' dashboard through the real HTTP door, beside the real gRPC report.

A region of three hospitals with known checks and decisions, recorded on days of a closed month
(the month before last, whatever today is) and tallied as the operator's rebuild does. The page's
totals and table and the CSV download are compared with GetSavingsReport and ExportReport for
the same query, and with figures counted here by hand from the data.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from mutualrec.security.access import ADMIN, HOSPITAL, REGULATOR
from mutualrec.statistics.periods import today
from mutualrec.storage import statistics_index
from mutualrec.storage.institutions import add_institution, find_institution
from mutualrec.storage.models import CheckLine, Decision, RecognitionCheck
from mutualrec.v1 import statistics_pb2, statistics_pb2_grpc
from tests.conftest import RunningServer, make_settings, new_key, start_server

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
A, B, C = "H500103001", "H500106002", "H500112003"
HOSPITALS = {
    A: ("重庆市第一人民医院", "渝中区"),
    B: ("沙坪坝区人民医院", "沙坪坝区"),
    C: ("渝北区中医院", "渝北区"),
}
GROUPINGS = {
    "district": statistics_pb2.GROUP_BY_DISTRICT,
    "asking-institution": statistics_pb2.GROUP_BY_ASKING_INSTITUTION,
    "issuing-institution": statistics_pb2.GROUP_BY_ISSUING_INSTITUTION,
    "pair": statistics_pb2.GROUP_BY_ISSUER_ASKER_PAIR,
    "item": statistics_pb2.GROUP_BY_ITEM,
    "category": statistics_pb2.GROUP_BY_CATEGORY,
}
# A line: (item, verdict, issuer, decision: None | ("accepted", yuan) | ("declined", reason)).
Line = tuple[str, str, str | None, tuple[str, str] | None]
ACCEPT = "accepted"
DECLINE = "declined"


def _month_before_last() -> tuple[dt.date, dt.date]:
    first_of_this = today().replace(day=1)
    last = (first_of_this - dt.timedelta(days=1)).replace(day=1) - dt.timedelta(days=1)
    return last.replace(day=1), last


# (asker, day of the month, lines), every check of the region.
CHECKS: list[tuple[str, int, list[Line]]] = [
    (
        B,
        3,
        [
            ("LAB-K", "RECOGNIZABLE", A, (ACCEPT, "4.00")),
            ("LAB-NA", "RECOGNIZABLE", A, (DECLINE, "PATIENT_REQUEST")),
            ("IMG-CT-CHEST", "NO_RESULT", None, None),
        ],
    ),
    (B, 3, [("LAB-K", "RECOGNIZABLE", A, (ACCEPT, "4.00"))]),
    (
        C,
        10,
        [
            ("IMG-CT-CHEST", "RECOGNIZABLE", A, (ACCEPT, "150.00")),
            ("LAB-K", "RECOGNIZABLE", B, (DECLINE, "EMERGENCY")),
        ],
    ),
    (A, 10, [("LAB-K", "RECOGNIZABLE", C, (ACCEPT, "4.00"))]),
    (C, 20, [("LAB-NA", "NO_RESULT", None, None)]),
]
# Counted by hand from CHECKS: (checks, items checked, recognizable, accepted, declined,
# rate, saving).
BY_DISTRICT = {
    "沙坪坝区": (2, 4, 3, 2, 1, "0.6667", "8.00"),
    "渝北区": (2, 3, 2, 1, 1, "0.5000", "150.00"),
    "渝中区": (1, 1, 1, 1, 0, "1.0000", "4.00"),
}
BY_ITEM = {
    "LAB-K": (4, 4, 4, 3, 1, "0.7500", "12.00"),
    "LAB-NA": (2, 2, 1, 0, 1, "0.0000", "0.00"),
    "IMG-CT-CHEST": (2, 2, 1, 1, 0, "1.0000", "150.00"),
}
TOTAL_BY_DISTRICT = (5, 8, 6, 4, 2, "0.6667", "162.00")


def _record(server: RunningServer, first: dt.date) -> None:
    """The region's checks and decisions, written into the record at noon of their days (one
    more the day before the month, outside every period asked), then tallied."""
    with server.runtime.sessions.begin() as session:
        for code, (name, district) in HOSPITALS.items():
            add_institution(session, code, name, district, "tertiary")
        ids = {code: find_institution(session, code).id for code in HOSPITALS}
        outside = (B, 0, [("LAB-K", "RECOGNIZABLE", A, (ACCEPT, "4.00"))])
        for asker, day, lines in [*CHECKS, outside]:
            when = dt.datetime.combine(
                first + dt.timedelta(days=day - 1), dt.time(12), SHANGHAI
            ).astimezone(dt.UTC)
            check_id = str(uuid.uuid4())
            session.add(
                RecognitionCheck(
                    id=check_id,
                    institution_id=ids[asker],
                    patient_key="p" * 64,
                    received_at=when,
                    catalog_version="2026.1",
                    order_id="",
                    department="",
                    emergency=False,
                )
            )
            session.flush()
            for position, (item, verdict, issuer, decision) in enumerate(lines):
                session.add(
                    CheckLine(
                        check_id=check_id,
                        line=position,
                        ordered_code=item,
                        item_code=item,
                        verdict=verdict,
                        reason="",
                        result_ref=f"lab:{position + 1}" if issuer else "",
                        result_version=1 if issuer else 0,
                        issuer_institution_id=ids[issuer] if issuer else None,
                        estimated_saving="0",
                    )
                )
                session.flush()
                if decision is not None:
                    accepted = decision[0] == ACCEPT
                    session.add(
                        Decision(
                            check_id=check_id,
                            line=position,
                            accepted=accepted,
                            reason="" if accepted else decision[1],
                            reason_text="",
                            booked_saving=decision[1] if accepted else "0",
                            decided_at=when + dt.timedelta(minutes=5),
                        )
                    )
    with server.runtime.sessions.begin() as session:
        statistics_index.rebuild(session)


class _Page(HTMLParser):
    """What a test reads of the dashboard: table rows by key, totals by figure, chart bars,
    errors by field, and whether anything runs script or styles inline."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self.totals: dict[str, str] = {}
        self.bars: list[str] = []
        self.errors: list[str] = []
        self.scripts = 0
        self.inline_styles = 0
        self._row: str | None = None
        self._cell: list[str] | None = None
        self._figure: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.scripts += tag == "script"
        self.inline_styles += "style" in found or tag == "style"
        if tag == "tr" and found.get("data-key") is not None:
            self._row = found["data-key"] or ""
            self.rows[self._row] = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "dd" and found.get("data-figure"):
            self._figure = found["data-figure"]
        elif tag == "rect" and (found.get("class") or "").startswith("bar "):
            self.bars.append(found["class"] or "")
        elif tag == "li" and found.get("data-field"):
            self.errors.append(found["data-field"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self.rows[self._row].append(" ".join(" ".join(self._cell).split()))
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "dd":
            self._figure = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._figure is not None:
            self.totals[self._figure] = self.totals.get(self._figure, "") + data.strip()


def _form_dates(html: str) -> tuple[str, str]:
    """The from and to dates the page's form shows."""
    found = dict(re.findall(r'name="(from_date|to_date)" value="([^"]*)"', html))
    return found["from_date"], found["to_date"]


def _shown(figures: tuple[Any, ...]) -> list[str]:
    """Hand-counted figures as the table prints them: the rate as a percentage."""
    *counts, rate, saving = figures
    percent = f"{Decimal(rate) * 100:.2f}%" if rate else "–"
    return [*(str(n) for n in counts), percent, saving]


def _grpc_figures(row: statistics_pb2.ReportRow) -> tuple[Any, ...]:
    return (
        row.checks,
        row.items_checked,
        row.items_recognizable,
        row.accepted,
        row.declined,
        row.recognition_rate,
        row.saving,
    )


def _table_figures(cells: list[str]) -> list[str]:
    """A table row's figures (after period and group), money without thousands separators."""
    return [cell.replace(",", "") for cell in cells[2:]]


@pytest.fixture
def region(server: RunningServer) -> tuple[RunningServer, dict[str, str], tuple[dt.date, dt.date]]:
    first, last = _month_before_last()
    _record(server, first)
    with server.runtime.sessions.begin() as session:
        key = new_key(session, REGULATOR)
    return server, {"authorization": f"Bearer {key}"}, (first, last)


def _grpc_report(server: RunningServer, headers: dict[str, str], **fields: Any) -> Any:
    stub = statistics_pb2_grpc.StatisticsServiceStub(server.channel)
    return stub.GetSavingsReport(
        statistics_pb2.ReportRequest(**fields),
        metadata=(("authorization", headers["authorization"]),),
        timeout=30,
    )


def _grpc_csv(server: RunningServer, headers: dict[str, str], **fields: Any) -> bytes:
    stub = statistics_pb2_grpc.StatisticsServiceStub(server.channel)
    chunks = stub.ExportReport(
        statistics_pb2.ReportRequest(**fields),
        metadata=(("authorization", headers["authorization"]),),
        timeout=30,
    )
    return b"".join(chunk.data for chunk in chunks)


def test_the_page_shows_the_reports_figures(
    region: tuple[RunningServer, dict[str, str], tuple[dt.date, dt.date]],
) -> None:
    server, headers, (first, last) = region
    for by, group_by in GROUPINGS.items():
        params = {
            "from_date": first.isoformat(),
            "to_date": last.isoformat(),
            "group_by": by,
            "granularity": "month",
        }
        reply = httpx.get(f"{server.http_url}/regulator", params=params, headers=headers)
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == "text/html; charset=utf-8"
        page = _Page(reply.text)
        report = _grpc_report(
            server,
            headers,
            from_date=first.isoformat(),
            to_date=last.isoformat(),
            granularity=statistics_pb2.GRANULARITY_MONTH,
            group_by=group_by,
        )
        # The table: one row per report row (one month here), the same figures.
        assert {
            key: _table_figures(cells) for key, cells in page.rows.items() if key != "TOTAL"
        } == {row.group_key: _shown(_grpc_figures(row)) for row in report.rows}, by
        assert _table_figures(page.rows["TOTAL"]) == _shown(_grpc_figures(report.totals))
        # One saving bar and one rate bar per group.
        assert page.bars.count("bar saving") == len(report.rows)
        assert page.bars.count("bar rate") == len(report.rows)
        assert page.scripts == 0
        assert page.inline_styles == 0

    # And as counted by hand.
    for by, expected in (("district", BY_DISTRICT), ("item", BY_ITEM)):
        page = _Page(
            httpx.get(
                f"{server.http_url}/regulator",
                params={
                    "from_date": first.isoformat(),
                    "to_date": last.isoformat(),
                    "group_by": by,
                },
                headers=headers,
            ).text
        )
        assert {k: _table_figures(v) for k, v in page.rows.items() if k != "TOTAL"} == {
            key: _shown(figures) for key, figures in expected.items()
        }
        if by == "district":
            assert [cells[1] for key, cells in page.rows.items() if key != "TOTAL"] == [
                "沙坪坝区",
                "渝中区",
                "渝北区",
            ]
    by_district = _Page(
        httpx.get(
            f"{server.http_url}/regulator",
            params={"from_date": first.isoformat(), "to_date": last.isoformat()},
            headers=headers,
        ).text
    )
    checks, _, recognizable, accepted, declined, _, saving = TOTAL_BY_DISTRICT
    assert by_district.totals == {
        "checks": str(checks),
        "items_recognizable": str(recognizable),
        "accepted": str(accepted),
        "declined": str(declined),
        "rate": _shown(TOTAL_BY_DISTRICT)[-2],
        "saving": f"¥{saving}",
    }


def test_the_csv_is_export_reports_with_a_byte_order_mark(
    region: tuple[RunningServer, dict[str, str], tuple[dt.date, dt.date]],
) -> None:
    server, headers, (first, last) = region
    for by in ("district", "asking-institution", "pair"):
        reply = httpx.get(
            f"{server.http_url}/regulator/report.csv",
            params={
                "from_date": first.isoformat(),
                "to_date": last.isoformat(),
                "group_by": by,
                "granularity": "week",
            },
            headers=headers,
        )
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "text/csv; charset=utf-8"
        assert reply.headers["content-disposition"] == (
            f'attachment; filename="mutualrec-savings-{first}-{last}-{by}.csv"'
        )
        assert reply.content.startswith(b"\xef\xbb\xbf")
        assert reply.content[3:] == _grpc_csv(
            server,
            headers,
            from_date=first.isoformat(),
            to_date=last.isoformat(),
            granularity=statistics_pb2.GRANULARITY_WEEK,
            group_by=GROUPINGS[by],
        )

    by_month = httpx.get(
        f"{server.http_url}/regulator/report.csv",
        params={"from_date": first.isoformat(), "to_date": last.isoformat()},
        headers=headers,
    )
    lines = by_month.content.decode("utf-8-sig").splitlines()
    header = lines[0].split(",")
    wanted = [
        "checks",
        "items_checked",
        "items_recognizable",
        "accepted",
        "declined",
        "recognition_rate",
        "saving_cny",
    ]
    columns = [header.index(name) for name in wanted]
    records = {line.split(",")[2]: line.split(",") for line in lines[1:]}
    assert {key: tuple(r[i] for i in columns) for key, r in records.items()} == {
        **{k: tuple(str(v) for v in f) for k, f in BY_DISTRICT.items()},
        "TOTAL": tuple(str(v) for v in TOTAL_BY_DISTRICT),
    }
    assert records["渝中区"][3] == "渝中区"  # the label, in Chinese


def test_chinese_first_english_by_choice(
    region: tuple[RunningServer, dict[str, str], tuple[dt.date, dt.date]],
) -> None:
    server, headers, (first, last) = region
    params = {"from_date": first.isoformat(), "to_date": last.isoformat(), "group_by": "category"}
    chinese = httpx.get(f"{server.http_url}/regulator", params=params, headers=headers)
    assert chinese.headers["content-language"] == "zh-CN"
    assert '<html lang="zh-CN">' in chinese.text
    assert "互认率" in chinese.text
    assert [cells[1] for key, cells in _Page(chinese.text).rows.items() if key != "TOTAL"] == [
        "检查 imaging",
        "检验 lab",
    ]
    for english in (
        httpx.get(f"{server.http_url}/regulator", params={**params, "lang": "en"}, headers=headers),
        httpx.get(
            f"{server.http_url}/regulator",
            params=params,
            headers={**headers, "accept-language": "en-GB,en;q=0.8,zh;q=0.5"},
        ),
    ):
        assert english.headers["content-language"] == "en"
        assert "Recognition rate" in english.text
        assert "互认率" not in english.text


def test_the_page_is_served_under_a_strict_policy_with_its_stylesheet(
    region: tuple[RunningServer, dict[str, str], tuple[dt.date, dt.date]],
) -> None:
    server, headers, _ = region
    page = httpx.get(f"{server.http_url}/regulator", headers=headers)
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "'unsafe-inline'" not in policy
    assert "script-src" not in policy  # no script at all
    assert page.headers["cache-control"] == "no-store"
    assert 'href="/static/regulator/dashboard.css"' in page.text
    # Quick picks are links that resolve on the region's calendar (Asia/Shanghai), as the
    # report counts days; with no dates at all, the last 30 days.
    assert "range=last-30-days" in page.text
    for params, period in (
        ({}, lambda day: (day - dt.timedelta(days=29), day)),
        (
            {"range": "last-year"},
            lambda day: (dt.date(day.year - 1, 1, 1), dt.date(day.year - 1, 12, 31)),
        ),
        ({"range": "this-month"}, lambda day: (day.replace(day=1), day)),
    ):
        before = today()
        shown = httpx.get(f"{server.http_url}/regulator", params=params, headers=headers)
        after = today()  # the same day, unless midnight passed in Shanghai meanwhile
        dates = _form_dates(shown.text)
        assert dates in {
            tuple(d.isoformat() for d in period(before)),
            tuple(d.isoformat() for d in period(after)),
        }
    css = httpx.get(f"{server.http_url}/static/regulator/dashboard.css")
    assert css.status_code == 200
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert "svg.chart" in css.text
    missing = httpx.get(f"{server.http_url}/static/regulator/nothing.css")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[RunningServer]:
    settings = make_settings(
        tmp_path, MUTUALREC_DATABASE_URL=f"sqlite:///{tmp_path / 'index.sqlite3'}"
    )
    yield from start_server(settings)


def _key(server: RunningServer, role: str) -> dict[str, str]:
    with server.runtime.sessions.begin() as session:
        if role == HOSPITAL:
            add_institution(session, A, "H", "渝中区", "tertiary")
        return {
            "authorization": f"Bearer {new_key(session, role, A if role == HOSPITAL else None)}"
        }


BAD = [
    ({"from_date": "2026-03-02", "to_date": "2026-03-01"}, {"to_date": "END_BEFORE_START"}),
    ({"from_date": "2026-3-1", "to_date": "2026-03-01"}, {"from_date": "BAD_DATE"}),
    ({"from_date": "", "to_date": "2026-03-01"}, {"from_date": "BAD_DATE"}),
    ({"from_date": "2025-01-01", "to_date": "2026-03-01"}, {"to_date": "TOO_LONG"}),
    (
        {"from_date": "2026-01-01", "to_date": "2026-06-30", "granularity": "day"},
        {"granularity": "GRANULARITY_TOO_FINE"},
    ),
    ({"group_by": "ward"}, {"group_by": "UNKNOWN_GROUP_BY"}),
    ({"granularity": "hour"}, {"granularity": "UNKNOWN_GRANULARITY"}),
    ({"range": "last-decade"}, {"range": "UNKNOWN_RANGE"}),
    (
        {"from_date": "2026-13-01", "to_date": "2026-03-01", "group_by": "ward"},
        {"from_date": "BAD_DATE", "group_by": "UNKNOWN_GROUP_BY"},
    ),
]


@pytest.mark.parametrize(("params", "violations"), BAD)
def test_bad_input_names_the_field(
    http_server: RunningServer, params: dict[str, str], violations: dict[str, str]
) -> None:
    headers = _key(http_server, REGULATOR)
    query = {"from_date": "2026-03-01", "to_date": "2026-03-03", **params}
    for path in ("/regulator", "/regulator/report.csv"):
        problem = httpx.get(f"{http_server.http_url}{path}", params=query, headers=headers)
        assert problem.status_code == 400
        assert problem.headers["content-type"] == "application/problem+json"
        body = problem.json()
        assert {v["field"]: v["reason"] for v in body["violations"]} == violations
        # A browser gets the page again, each field's error shown.
        page = httpx.get(
            f"{http_server.http_url}{path}",
            params=query,
            headers={**headers, "accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
        )
        assert page.status_code == 400
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        shown = _Page(page.text)
        assert sorted(shown.errors) == sorted(violations)
        assert shown.rows == {}
        assert 'role="alert"' in page.text


def test_an_echoed_value_stays_text(http_server: RunningServer) -> None:
    headers = {**_key(http_server, REGULATOR), "accept": "text/html"}
    page = httpx.get(
        f"{http_server.http_url}/regulator",
        params={"from_date": '"><script>x</script>', "group_by": "<b>"},
        headers=headers,
    )
    assert page.status_code == 400
    assert _Page(page.text).scripts == 0
    assert "<b>" not in page.text


@pytest.mark.parametrize("role", [HOSPITAL, ADMIN])
def test_only_regulators_are_admitted(http_server: RunningServer, role: str) -> None:
    headers = _key(http_server, role)
    for path in ("/regulator", "/regulator/report.csv"):
        refused = httpx.get(f"{http_server.http_url}{path}", headers=headers)
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert "regulator" in refused.json()["detail"]


def test_no_credential_is_401(http_server: RunningServer) -> None:
    for path in ("/regulator", "/regulator/report.csv"):
        for headers in ({}, {"authorization": "Bearer mrk_not_a_key"}):
            refused = httpx.get(f"{http_server.http_url}{path}", headers=headers)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == 'Bearer realm="mutualrec"'
