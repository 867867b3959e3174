"""Fuzzing every route of the HTTP door over real HTTP, on SQLite and on PostgreSQL, as
test_request_fuzz.py does the gRPC door: the routes are read from the app itself (a route
added later is fuzzed without anyone listing it), then called with plausible and hostile path
values, query parameters, headers and bodies, under every kind of caller (none, hospital,
regulator, admin, patient token, share link, a signed-in browser with its CSRF token, forged
credentials). No answer is a server error, every refusal carries a problem body (JSON, or a
page for a browser), and the server keeps serving. Seeded and bounded: the same requests every
run, 50 per route and method, about fifteen seconds per database."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from mutualrec.http.app import build_app
from tests.dicomweb_region import ZHANG, Region, region_on

CT = "ct_chest_contrast_hosp_a"
FORM = "application/x-www-form-urlencoded"
# Values a path segment or a query parameter plausibly holds, then hostile ones.
HOSTILE = [
    "",
    "0",
    "-1",
    "1",
    "1,2",
    "1-3",
    "99999999999999999999999",
    "1.2.3",
    "1." + "9" * 70,
    "x" * 300,
    "A" * 6_000,
    "\x00",
    "%00",
    "..",
    "../../etc/passwd",
    "中文",
    "\u202e\ufeff\U0001f600",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "2024-02-30",
    "20240101-",
    "-20240101",
    "0001-01-01",
    "9999-12-31",
    "all",
    "*",
    "ZHANG*",
]
# Query parameters the routes read (DICOMweb filters and paging, rendering, the regulator's
# report, the pages' forms), and some no route reads.
PARAMETERS = [
    "limit",
    "offset",
    "includefield",
    "fuzzymatching",
    "StudyDate",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientName",
    "PatientID",
    "ModalitiesInStudy",
    "0020000D",
    "00100020",
    "Modality",
    "quality",
    "viewport",
    "accept",
    "from",
    "to",
    "start",
    "end",
    "by",
    "group_by",
    "district",
    "institution",
    "item",
    "category",
    "lang",
    "next",
    "back",
    "credential",
    "csrf",
    "study",
    "note",
    "expires",
    "days",
    "page",
    "token",
    "unknown",
]
ACCEPTS = [
    None,
    "*/*",
    "text/html",
    "application/json",
    "application/dicom+json",
    'multipart/related; type="application/dicom"',
    'multipart/related; type="application/dicom"; transfer-syntax=*',
    'multipart/related; type="application/dicom"; transfer-syntax=1.2.3',
    'multipart/related; type="application/octet-stream"; transfer-syntax=',
    'multipart/related; type="image/jpeg"',
    "multipart/related",
    'multipart/related; type="',
    "image/jpeg",
    "image/png;q=0.5, image/gif",
    "image/*;q=abc",
    ";;;",
    ",",
    "text/csv",
    "x" * 5_000,
]
CONTENT_TYPES = [
    None,
    FORM,
    "application/json",
    "application/dicom",
    'multipart/related; type="application/dicom"; boundary=b',
    'multipart/related; type="application/dicom"',
    "multipart/related; boundary=",
    'multipart/related; type="application/dicom+json"; boundary=b',
    "multipart/form-data; boundary=b",
    "text/plain; charset=nonsense",
    ";",
]
BODIES = [
    b"",
    b"{}",
    b"[]",
    b"null",
    b'{"hook": "order-select", "hookInstance": 1, "context": []}',
    b'{"feedback": [{"card": null}]}',
    b"[" * 5_000 + b"]" * 5_000,
    b"credential=&csrf=",
    b"credential=%00&csrf=%ff",
    b"study=1.2.3&note=" + b"x" * 10_000 + b"&days=-1",
    b"--b\r\nContent-Type: application/dicom\r\n\r\nDICM\r\n--b--\r\n",
    b"--b\r\nContent-Type: application/dicom\r\n\r\n" + b"\x00" * 300,
    b"\xff\xfe\x00garbage",
    bytes(range(256)),
]
# What may answer a route that refuses: a problem body, or a page for a browser.
PROBLEM_TYPES = ("application/problem+json", "text/html")


@dataclass
class Callers:
    """The region, every kind of credential its door sees, and one kept-alive client."""

    region: Region
    client: httpx.Client
    credentials: dict[str, str | None]
    uids: dict[str, str]
    # A signed-in browser's session cookies and CSRF token (see sign_in).
    browser_cookies: dict[str, str] = field(default_factory=dict)
    browser_csrf: str = ""

    def sign_in(self) -> None:
        """A fresh browser session for the patient, as a browser gets one: the sign-in page,
        its form posted, then the session's CSRF token. Fresh for each route, because the
        fuzz may sign the last one out."""
        form = self.client.get("/signin", headers={"Accept": "text/html"})
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        signed_in = self.client.post(
            "/session",
            content=f"credential={self.credentials['patient']}&csrf={csrf.group(1)}",
            headers={"Content-Type": FORM},
        )
        assert signed_in.status_code == 303
        whoami = self.client.get("/session", headers={"Accept": "application/json"})
        self.browser_csrf = str(whoami.json()["csrf"])
        self.browser_cookies = dict(self.client.cookies)
        self.client.cookies.clear()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def callers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callers]:
    for region in region_on(request, tmp_path_factory.mktemp("http-fuzz")):
        ct = region.manifest[CT]
        patient = region.token(ZHANG)
        files = ct["files"]
        with httpx.Client(base_url=region.server.http_url or "", timeout=60) as client:
            yield Callers(
                region,
                client,
                {
                    "none": None,
                    "hospital": region.hospital_keys[ct["institution_code"]],
                    "regulator": region.regulator_key,
                    "admin": region.admin_key,
                    "patient": patient,
                    "share": region.share_token(patient, ct["study_instance_uid"]),
                    "forged token": patient[:-4] + "AAAA",
                    "forged key": "mr_" + "A" * 40,
                    "huge": "A" * 16_000,
                },
                {
                    "study": ct["study_instance_uid"],
                    "series": files[0]["series_instance_uid"],
                    "instance": files[0]["sop_instance_uid"],
                    "frames": "1",
                },
            )


def _routes(callers: Callers) -> list[tuple[str, str, list[str]]]:
    """(method, path template, parameter names) of every route the app has."""
    app = build_app(callers.region.server.runtime, lambda: True)
    found = []
    for route in app.routes:
        assert isinstance(route, Route), route
        for method in sorted(route.methods or ()):
            found.append((method, route.path, list(route.param_convertors)))
    return found


@dataclass
class Call:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    caller: str


def _fill(template: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        path_like = ":path" in match.group(1)
        return urllib.parse.quote(values[name], safe="/" if path_like else "")

    return re.sub(r"\{([^}]+)\}", value, template)


@st.composite
def calls(draw: st.DrawFn, callers: Callers, route: tuple[str, str, list[str]]) -> Call:
    method, template, names = route
    values = {}
    for name in names:
        plausible = callers.uids.get(name, "app-config.js" if name == "path" else "index.css")
        values[name] = draw(st.sampled_from([plausible, *HOSTILE]) | st.text(max_size=30))
    query = draw(
        st.lists(
            st.tuples(st.sampled_from(PARAMETERS), st.sampled_from(HOSTILE) | st.text(max_size=20)),
            max_size=6,
        )
    )
    headers = {}
    accept = draw(st.sampled_from(ACCEPTS))
    if accept is not None:
        headers["Accept"] = accept
    if draw(st.booleans()):
        headers["Sec-Purpose"] = draw(st.sampled_from(["prefetch", "prefetch;prerender", "x"]))
    if draw(st.booleans()):
        headers["Origin"] = draw(st.sampled_from(["http://evil.example", "null", "x"]))
    body = b""
    if method == "POST":
        content_type = draw(st.sampled_from(CONTENT_TYPES))
        if content_type is not None:
            headers["Content-Type"] = content_type
        body = draw(st.sampled_from(BODIES) | st.binary(max_size=200))
    # Mostly callers the door admits somewhere, so requests reach the routes' own checks.
    admitted = [
        "hospital",
        "regulator",
        "admin",
        "patient",
        "share",
        "browser",
        "browser with csrf",
    ]
    caller = draw(st.sampled_from(admitted) | st.sampled_from(list(callers.credentials)))
    return Call(method, _fill(template, values), query, headers, body, caller)


def _send(callers: Callers, call: Call) -> httpx.Response:
    headers = dict(call.headers)
    body = call.body
    if call.caller.startswith("browser"):
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in callers.browser_cookies.items())
        if call.caller == "browser with csrf" and call.method == "POST":
            headers["Content-Type"] = FORM
            body = body + b"&csrf=" + urllib.parse.quote(callers.browser_csrf).encode()
    else:
        credential = callers.credentials[call.caller]
        if credential is not None:
            headers["Authorization"] = f"Bearer {credential}"
    try:
        return callers.client.request(
            call.method, call.path, params=tuple(call.query), headers=headers, content=body or None
        )
    finally:
        # Each request carries only its own caller's credentials.
        callers.client.cookies.clear()


def _refusal_is_described(reply: httpx.Response) -> None:
    kind = reply.headers.get("content-type", "").split(";")[0]
    assert kind in PROBLEM_TYPES, (reply.status_code, kind, reply.text[:300])
    if kind == "application/problem+json":
        problem: dict[str, Any] = json.loads(reply.content)
        assert problem["status"] == reply.status_code
        assert problem["title"]


def test_no_request_gets_a_server_error(callers: Callers) -> None:
    seen: dict[int, int] = {}

    def fuzz(route: tuple[str, str, list[str]]) -> None:
        @settings(
            max_examples=50,
            derandomize=True,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(calls(callers, route))
        def one(call: Call) -> None:
            reply = _send(callers, call)
            seen[reply.status_code] = seen.get(reply.status_code, 0) + 1
            assert reply.status_code < 500, (call, reply.status_code, reply.text[:500])
            if reply.status_code >= 400 and call.method != "HEAD":
                _refusal_is_described(reply)

        one()

    # Every route in turn (each method of it), so none is left to chance.
    for route in _routes(callers):
        callers.sign_in()
        fuzz(route)
    # The fuzz reached past the door's first refusals, and the server still serves.
    assert any(200 <= status < 400 for status in seen), seen
    assert any(400 <= status < 500 for status in seen), seen
    assert callers.client.get("/healthz").status_code == 200
    studies = callers.client.get(
        "/dicomweb/studies",
        headers={"Authorization": f"Bearer {callers.credentials['patient']}"},
    )
    assert studies.status_code == 200
