"""The patients' web pages and browser sign-in through the real HTTP door, with httpx as the
browser: sessions (good, bad, expired, revoked credentials; cookie attributes; idle and token
expiry on the sessions' own clock; sign-out), CSRF and Origin refusals, the pages' CSP, who may
see which page, share links opened through /open, and no credential in any URL or log."""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mutualrec.http.headers import PAGE_POLICY
from mutualrec.identity import parse_identity, patient_key
from mutualrec.security.access import ADMIN, HOSPITAL, REGULATOR
from mutualrec.security.dev_ca import make_ca, make_server_cert
from mutualrec.security.patient_tokens import mint_patient_token
from mutualrec.services.identity import TokenRequest
from mutualrec.services.web_sessions import hash_session_id
from mutualrec.storage.institutions import revoke_key
from mutualrec.storage.models import WebSession
from tests.conftest import (
    SAMPLES,
    RunningServer,
    make_settings,
    module_database,
    new_key,
    start_server,
)
from tests.helpers import file_messages, header_message, study_files, upload

ZHANG = "50010319680315109X"  # CT chest at hospital A, chest films at hospital C
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html,application/xhtml+xml"}


@dataclass
class Pages:
    """A running service holding Zhang's studies, and credentials to sign in with."""

    server: RunningServer
    manifest: dict[str, Any]
    hospital_key: str
    regulator_key: str
    admin_key: str

    @property
    def url(self) -> str:
        assert self.server.http_url is not None
        return self.server.http_url

    def browser(self, **headers: str) -> httpx.Client:
        """A fresh browser: its own cookie jar, redirects not followed (the tests read them)."""
        return httpx.Client(base_url=self.url, follow_redirects=False, headers=headers)

    def patient_token(self, ttl: dt.timedelta = dt.timedelta(minutes=10)) -> str:
        issued = self.server.runtime.patient_tokens.issue(
            TokenRequest("RESIDENT_ID_CARD", ZHANG, ttl_seconds=int(ttl.total_seconds()))
        )
        return issued.token

    def zhang_studies(self) -> list[str]:
        return [
            s["study_instance_uid"]
            for s in self.manifest.values()
            if s["patient"]["document_number"] == ZHANG
        ]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def pages(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pages]:
    """Zhang's studies uploaded once per database; tests only add sessions and links."""
    tmp = tmp_path_factory.mktemp("pages")
    databases = module_database(request, tmp, "web_pages_test")
    url = next(databases)

    manifest = json.loads((SAMPLES / "manifest.json").read_text())["studies"]
    servers = start_server(make_settings(tmp, MUTUALREC_DATABASE_URL=url))
    server = next(servers)
    try:
        keys: dict[str, str] = {}
        for study in manifest.values():
            if study["patient"]["document_number"] != ZHANG:
                continue
            code = study["institution_code"]
            if code not in keys:
                keys[code] = server.add_hospital(code)
            upload(
                server.channel,
                keys[code],
                [header_message(study), *file_messages(study_files(study))],
            )
        with server.runtime.sessions.begin() as session:
            regulator_key = new_key(session, REGULATOR)
            admin_key = new_key(session, ADMIN)
        yield Pages(server, manifest, next(iter(keys.values())), regulator_key, admin_key)
    finally:
        servers.close()
        databases.close()


@pytest.fixture(autouse=True)
def real_clock(pages: Pages) -> Iterator[None]:
    """Each test starts on the real clock, whatever an earlier one moved."""
    sessions = pages.server.runtime.web_sessions
    sessions.clock = lambda: dt.datetime.now(dt.UTC)
    yield
    sessions.clock = lambda: dt.datetime.now(dt.UTC)


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf" value="([^"]+)"', page.text) or re.search(
        r'name="csrf-token" content="([^"]+)"', page.text
    )
    assert found, "the page has no CSRF token"
    return html.unescape(found.group(1))


def sign_in(browser: httpx.Client, credential: str, **headers: str) -> httpx.Response:
    """Sign in as a browser does: open the sign-in page, post its form."""
    form = browser.get("/signin", headers=HTML)
    assert form.status_code == 200
    return browser.post(
        "/session",
        content=f"credential={credential}&csrf={csrf_of(form)}",
        headers={**FORM, **headers},
    )


def set_cookies(reply: httpx.Response) -> dict[str, str]:
    """The response's Set-Cookie headers by cookie name."""
    return {value.split("=", 1)[0]: value for value in reply.headers.get_list("set-cookie")}


# --- signing in ----------------------------------------------------------------------------


def test_a_patient_signs_in_and_the_cookie_is_httponly_strict_and_site_wide(pages: Pages) -> None:
    with pages.browser() as browser:
        reply = sign_in(browser, pages.patient_token())
        assert reply.status_code == 303
        assert reply.headers["location"] == "/"
        cookie = set_cookies(reply)["mrsession"]
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= attributes
        assert "secure" not in attributes  # this door speaks plain HTTP
        # The pre-session CSRF cookie is spent.
        assert "max-age=0" in set_cookies(reply)["mrcsrf"].lower()
        history = browser.get("/", headers=HTML)
        assert history.status_code == 200
        for uid in pages.zhang_studies():
            assert uid in history.text
            assert f"/viewer/viewer?StudyInstanceUIDs={uid}" in history.text


def test_a_bad_credential_is_refused_with_401(pages: Pages) -> None:
    with pages.browser() as browser:
        for credential in ("nonsense", "mrk_aaaaaaaaaaaaaaaa_" + "b" * 43, ""):
            reply = sign_in(browser, credential, **JSON)
            assert reply.status_code == 401, credential
            assert reply.headers["content-type"] == "application/problem+json"
            assert "mrsession" not in set_cookies(reply)


def test_a_browser_sees_a_refusal_as_a_page(pages: Pages) -> None:
    with pages.browser() as browser:
        reply = sign_in(browser, "nonsense", **HTML)
        assert reply.status_code == 401
        assert reply.headers["content-type"].startswith("text/html")
        assert 'id="problem-detail"' in reply.text
        assert reply.headers["content-security-policy"] == PAGE_POLICY.decode()


def test_an_expired_patient_token_is_refused(pages: Pages) -> None:
    secret = pages.server.runtime.settings.token_secret
    key = patient_key(
        parse_identity("RESIDENT_ID_CARD", ZHANG),
        pages.server.runtime.settings.patient_key_secret,
    )
    expired = mint_patient_token(
        secret, key, dt.timedelta(minutes=5), now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    ).token
    with pages.browser() as browser:
        reply = sign_in(browser, expired, **JSON)
        assert reply.status_code == 401
        assert "expired" in reply.json()["detail"]


def test_an_administrator_key_has_no_pages_to_sign_in_to(pages: Pages) -> None:
    with pages.browser() as browser:
        reply = sign_in(browser, pages.admin_key, **JSON)
        assert reply.status_code == 403


# --- CSRF and origins ----------------------------------------------------------------------


def test_sign_in_without_the_forms_token_or_from_another_site_is_refused(pages: Pages) -> None:
    token = pages.patient_token()
    with pages.browser() as browser:
        form = browser.get("/signin")
        good = csrf_of(form)
        no_token = browser.post("/session", content=f"credential={token}", headers=FORM)
        assert no_token.status_code == 403
        wrong = browser.post("/session", content=f"credential={token}&csrf=x{good}", headers=FORM)
        assert wrong.status_code == 403
        elsewhere = browser.post(
            "/session",
            content=f"credential={token}&csrf={good}",
            headers={**FORM, "Origin": "https://evil.example"},
        )
        assert elsewhere.status_code == 403
        cross_site = browser.post(
            "/session",
            content=f"credential={token}&csrf={good}",
            headers={**FORM, "Sec-Fetch-Site": "cross-site"},
        )
        assert cross_site.status_code == 403
        same_origin = browser.post(
            "/session",
            content=f"credential={token}&csrf={good}",
            headers={**FORM, "Origin": pages.url, "Sec-Fetch-Site": "same-origin"},
        )
        assert same_origin.status_code == 303


def test_a_signed_in_form_needs_the_sessions_token(pages: Pages) -> None:
    uid = pages.zhang_studies()[0]
    with pages.browser() as browser:
        sign_in(browser, pages.patient_token())
        page = browser.get("/")
        body = f"study_uid={uid}&days=1&note=x"
        assert browser.post("/shares", content=body, headers=FORM).status_code == 403
        pre_session = browser.post("/shares", content=body + "&csrf=abc", headers=FORM)
        assert pre_session.status_code == 403
        foreign = browser.post(
            "/shares",
            content=body + f"&csrf={csrf_of(page)}",
            headers={**FORM, "Origin": "http://attacker.example"},
        )
        assert foreign.status_code == 403
        good = browser.post("/shares", content=body + f"&csrf={csrf_of(page)}", headers=FORM)
        assert good.status_code == 200
        assert "/open#mrs_" in good.text


def test_every_page_has_the_strict_policy_and_the_api_keeps_its_own(pages: Pages) -> None:
    with pages.browser() as browser:
        sign_in(browser, pages.patient_token())
        for path in ("/signin", "/open", "/", "/shares", "/accesses", "/session"):
            reply = browser.get(path, headers=HTML)
            assert reply.status_code == 200, path
            policy = reply.headers["content-security-policy"]
            assert policy == PAGE_POLICY.decode()
            for directive in (
                "script-src 'self'",
                "object-src 'none'",
                "frame-ancestors 'none'",
                "base-uri 'none'",
                "form-action 'self'",
            ):
                assert directive in policy
            assert "unsafe-inline" not in policy
            assert "<script>" not in reply.text  # every script is a file
            assert 'name="viewport"' in reply.text
        assert browser.get("/healthz").headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        )


# --- who sees what -------------------------------------------------------------------------


@pytest.mark.parametrize("role", [REGULATOR, HOSPITAL])
def test_a_regulator_or_hospital_session_sees_no_patient_page(pages: Pages, role: str) -> None:
    key = pages.regulator_key if role == REGULATOR else pages.hospital_key
    with pages.browser() as browser:
        reply = sign_in(browser, key)
        assert reply.status_code == 303
        # A regulator lands on the dashboard; a hospital has no page of its own (who am I).
        landing = "/regulator" if role == REGULATOR else "/session"
        assert reply.headers["location"] == landing
        assert browser.get(landing).status_code == 200
        uid = pages.zhang_studies()[0]
        for path in ("/", "/shares", "/accesses", f"/studies/{uid}/thumbnail"):
            assert browser.get(path, headers=JSON).status_code == 403, path


def test_without_a_session_pages_send_a_browser_to_sign_in(pages: Pages) -> None:
    with pages.browser() as browser:
        page = browser.get("/", headers=HTML)
        assert page.status_code == 303
        assert page.headers["location"] == "/signin"
        assert browser.get("/", headers=JSON).status_code == 401


def test_a_bearer_header_still_admits_where_no_cookie_is(pages: Pages) -> None:
    with pages.browser(Authorization=f"Bearer {pages.patient_token()}") as client:
        assert client.get("/", headers=HTML).status_code == 200


def test_the_history_filters_and_thumbnails(pages: Pages) -> None:
    by_modality = {
        s["modality"]: s["study_instance_uid"]
        for s in pages.manifest.values()
        if s["patient"]["document_number"] == ZHANG
    }
    with pages.browser() as browser:
        sign_in(browser, pages.patient_token())
        ct = browser.get("/", params={"modality": "CT"})
        assert by_modality["CT"] in ct.text
        assert all(uid not in ct.text for m, uid in by_modality.items() if m != "CT")
        bad = browser.get("/", params={"from": "not a date"}, headers=JSON)
        assert bad.status_code == 400
        thumb = browser.get(f"/studies/{by_modality['CT']}/thumbnail")
        assert thumb.status_code == 200
        assert thumb.headers["content-type"] == "image/png"
        assert thumb.content.startswith(b"\x89PNG")
        assert browser.get("/studies/1.2.3.4/thumbnail", headers=JSON).status_code == 404


# --- ending sessions -----------------------------------------------------------------------


def test_a_session_ends_after_its_idle_time(pages: Pages) -> None:
    sessions = pages.server.runtime.web_sessions
    with pages.browser() as browser:
        sign_in(browser, pages.patient_token(dt.timedelta(hours=2)))
        assert browser.get("/").status_code == 200
        later = dt.datetime.now(dt.UTC) + sessions.limits.idle - dt.timedelta(minutes=1)
        sessions.clock = lambda: later
        assert browser.get("/").status_code == 200  # in use: idle time starts again
        too_late = later + sessions.limits.idle + dt.timedelta(seconds=1)
        sessions.clock = lambda: too_late
        assert browser.get("/", headers=JSON).status_code == 401


def test_a_session_ends_when_its_patient_token_would_have(pages: Pages) -> None:
    sessions = pages.server.runtime.web_sessions
    with pages.browser() as browser:
        sign_in(browser, pages.patient_token(dt.timedelta(minutes=2)))
        assert browser.get("/").status_code == 200
        past_token = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=3)
        assert past_token - dt.datetime.now(dt.UTC) < sessions.limits.idle
        sessions.clock = lambda: past_token
        assert browser.get("/", headers=JSON).status_code == 401


def test_a_session_ends_at_its_absolute_lifetime_however_busy(pages: Pages) -> None:
    sessions = pages.server.runtime.web_sessions
    start = dt.datetime.now(dt.UTC)
    with pages.browser() as browser:
        sign_in(browser, pages.regulator_key)
        step = sessions.limits.idle / 2
        moment = start
        while moment + step < start + sessions.limits.absolute:
            moment += step
            sessions.clock = lambda at=moment: at  # type: ignore[misc]
            assert browser.get("/session").status_code == 200
        sessions.clock = lambda: start + sessions.limits.absolute + dt.timedelta(seconds=1)
        assert browser.get("/session", headers=JSON).status_code == 401


def test_signing_out_ends_the_session_for_good(pages: Pages) -> None:
    with pages.browser() as browser:
        sign_in(browser, pages.patient_token())
        page = browser.get("/")
        stolen = browser.cookies["mrsession"]
        out = browser.post("/session/end", content=f"csrf={csrf_of(page)}", headers=FORM)
        assert out.status_code == 303
        assert out.headers["location"] == "/signin"
        assert "max-age=0" in set_cookies(out)["mrsession"].lower()
    with pages.browser() as replay:
        replay.cookies.set("mrsession", stolen)
        assert replay.get("/", headers=JSON).status_code == 401


def test_revoking_an_api_key_ends_its_sessions(pages: Pages) -> None:
    with pages.server.runtime.sessions.begin() as session:
        key = new_key(session, REGULATOR)
    with pages.browser() as browser:
        sign_in(browser, key)
        assert browser.get("/session").status_code == 200
        with pages.server.runtime.sessions.begin() as session:
            assert revoke_key(session, key.split("_")[1])
        assert browser.get("/session", headers=JSON).status_code == 401


# --- share links ---------------------------------------------------------------------------


def test_a_share_link_opens_its_study_in_a_second_browser_until_revoked(
    pages: Pages, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    uid = pages.zhang_studies()[0]
    patient_token = pages.patient_token()
    with pages.browser() as patient, pages.browser() as doctor:
        sign_in(patient, patient_token)
        page = patient.get("/")
        created = patient.post(
            "/shares",
            content=f"study_uid={uid}&days=3&note=Dr+Li&csrf={csrf_of(page)}",
            headers=FORM,
        )
        assert created.status_code == 200
        url = html.unescape(re.search(r'id="share-url"[^>]*value="([^"]+)"', created.text).group(1))  # type: ignore[union-attr]
        assert url.startswith(f"{pages.url}/open#mrs_")
        assert "<svg" in created.text
        share_token = url.split("#", 1)[1]

        # What /open's script does: the page, then the token posted from the fragment.
        opener = doctor.get("/open", headers=HTML)
        assert opener.status_code == 200
        assert '<script src="/static/open.js"' in opener.text
        assert doctor.get("/static/open.js").status_code == 200
        answer = doctor.post(
            "/session",
            content=f"credential={share_token}&csrf={csrf_of(opener)}",
            headers={**FORM, **JSON},
        )
        assert answer.status_code == 200
        assert answer.json()["target"] == f"/viewer/viewer?StudyInstanceUIDs={uid}"
        assert doctor.get("/session").status_code == 200
        assert doctor.get("/", headers=JSON).status_code == 403  # not the patient's pages

        listing = patient.get("/shares")
        link_id = re.search(r'data-link-id="([^"]+)" data-state="active"', listing.text).group(1)  # type: ignore[union-attr]
        revoked = patient.post(
            f"/shares/{link_id}/revoke", content=f"csrf={csrf_of(listing)}", headers=FORM
        )
        assert revoked.status_code == 303
        assert f'data-link-id="{link_id}" data-state="revoked"' in patient.get("/shares").text
        assert doctor.get("/session", headers=JSON).status_code == 401

        accesses = patient.get("/accesses")
        assert accesses.status_code == 200
        assert 'class="access"' in accesses.text
    for record in caplog.records:
        message = record.getMessage()
        assert share_token not in message
        assert patient_token not in message


def test_the_language_follows_the_toggle_then_accept_language(pages: Pages) -> None:
    with pages.browser(**{"Accept-Language": "en-US,en;q=0.9"}) as browser:
        assert "Sign in" in browser.get("/signin").text
    with pages.browser() as browser:
        first = browser.get("/signin")
        assert "登录" in first.text
        assert 'lang="zh-CN"' in first.text
        switched = browser.post(
            "/language",
            content=f"lang=en&back=/signin&csrf={csrf_of(first)}",
            headers=FORM,
        )
        assert switched.status_code == 303
        assert switched.headers["location"] == "/signin"
        assert 'lang="en"' in browser.get("/signin").text
        elsewhere = browser.post(
            "/language",
            content=f"lang=zh&back=//evil.example/&csrf={csrf_of(first)}",
            headers=FORM,
        )
        assert elsewhere.headers["location"] == "/"


def test_problems_are_pages_for_browsers_and_json_for_clients(pages: Pages, tmp_path: Path) -> None:
    with pages.browser() as browser:
        page = browser.get("/no/such/thing", headers=HTML)
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        api = browser.get("/no/such/thing", headers=JSON)
        assert api.headers["content-type"] == "application/problem+json"


def test_sessions_long_expired_are_cleared_by_later_sign_ins(pages: Pages) -> None:
    runtime = pages.server.runtime
    sessions = runtime.web_sessions
    with pages.browser() as old:
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
        sessions.clock = lambda: long_ago
        sign_in(old, pages.regulator_key)
        stale = hash_session_id(old.cookies["mrsession"])
    with runtime.sessions() as session:
        assert session.get(WebSession, stale) is not None
    sessions.clock = lambda: dt.datetime.now(dt.UTC)
    with pages.browser() as fresh:
        sign_in(fresh, pages.regulator_key)
        assert fresh.get("/session").status_code == 200
    with runtime.sessions() as session:
        assert session.get(WebSession, stale) is None


def test_guessing_credentials_at_the_sign_in_form_meets_the_brake(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        MUTUALREC_DATABASE_URL=f"sqlite:///{tmp_path / 'index.sqlite3'}",
        MUTUALREC_AUTH_FAILURE_RATE="0.01",
        MUTUALREC_AUTH_FAILURE_BURST="3",
    )
    for server in start_server(settings):
        assert server.http_url is not None
        with httpx.Client(base_url=server.http_url) as browser:
            statuses = [sign_in(browser, f"guess-{n}", **JSON).status_code for n in range(5)]
        assert statuses[:3] == [401, 401, 401]
        assert statuses[3:] == [429, 429]


def test_hostile_values_in_page_urls_and_forms_are_refused_not_crashed(pages: Pages) -> None:
    with pages.browser() as browser:
        sign_in(browser, pages.patient_token())
        page = browser.get("/")
        for path, params in (
            ("/", {"modality": "CT\0"}),
            ("/", {"institution": "\0"}),
            ("/", {"page": "x\0y"}),
            ("/accesses", {"page": "\0"}),
            ("/studies/1.2%003/thumbnail", {}),
        ):
            reply = browser.get(path, params=params, headers=JSON)
            assert reply.status_code in (400, 404), (path, params)
            assert reply.headers["content-type"] == "application/problem+json"
        for path, body in (
            ("/shares", "study_uid=1.2%003&days=1"),
            ("/shares", "study_uid=1.2.3&days=400"),
            ("/shares/shl_%00/revoke", ""),
            ("/shares/shl_nope/revoke", ""),
        ):
            reply = browser.post(
                path, content=f"{body}&csrf={csrf_of(page)}", headers={**FORM, **JSON}
            )
            assert reply.status_code in (400, 404), path


def test_signing_in_again_ends_the_session_before(pages: Pages) -> None:
    with pages.browser() as browser:
        sign_in(browser, pages.patient_token())
        first = browser.cookies["mrsession"]
        sign_in(browser, pages.regulator_key)
        assert browser.cookies["mrsession"] != first
    with pages.browser() as replay:
        replay.cookies.set("mrsession", first)
        assert replay.get("/", headers=JSON).status_code == 401


def test_under_tls_the_session_cookie_is_secure_and_host_bound(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    cert = make_server_cert(tmp_path / "ca", tmp_path / "server", ["127.0.0.1"])
    settings = make_settings(
        tmp_path,
        MUTUALREC_DATABASE_URL=f"sqlite:///{tmp_path / 'index.sqlite3'}",
        MUTUALREC_TLS_CERT=str(cert.cert),
        MUTUALREC_TLS_KEY=str(cert.key),
    )
    for server in start_server(settings):
        assert server.http_url is not None
        assert server.http_url.startswith("https://")
        with server.runtime.sessions.begin() as session:
            key = new_key(session, REGULATOR)
        trust = ssl.create_default_context(cafile=str(ca.cert))
        with httpx.Client(base_url=server.http_url, verify=trust) as browser:
            reply = sign_in(browser, key)
            assert reply.status_code == 303
            cookie = set_cookies(reply)["__Host-mrsession"]
            attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
            assert {"secure", "httponly", "samesite=strict", "path=/"} <= attributes
            assert not any(a.startswith("domain") for a in attributes)
            assert browser.get("/session").status_code == 200


def test_a_script_reads_its_sessions_csrf_token_and_sends_it_as_a_header(pages: Pages) -> None:
    uid = pages.zhang_studies()[0]
    with pages.browser() as browser:
        sign_in(browser, pages.patient_token())
        about = browser.get("/session", headers=JSON).json()
        assert about["role"] == "patient"
        assert about["landing"] == "/"
        body = f"study_uid={uid}&days=1"
        refused = browser.post("/shares", content=body, headers={**FORM, "X-CSRF-Token": "x"})
        assert refused.status_code == 403
        accepted = browser.post(
            "/shares", content=body, headers={**FORM, "X-CSRF-Token": about["csrf"]}
        )
        assert accepted.status_code == 200


@pytest.mark.parametrize("installed", [True, False])
def test_the_history_fetches_and_prerenders_the_viewer_ahead_only_when_a_viewer_is_installed(
    tmp_path: Path, installed: bool
) -> None:
    viewer = tmp_path / "viewer"
    viewer.mkdir()
    bundle = "/viewer/app.bundle.0f6159c501addfe9.js"
    (viewer / "index.html").write_text(
        '<html><head><script src="/viewer/app-config.js"></script>'
        f'<script defer src="{bundle}"></script>'
        '<link href="/viewer/app.bundle.css" rel="stylesheet"></head></html>',
        encoding="utf-8",
    )
    settings = make_settings(tmp_path, MUTUALREC_VIEWER_DIR=str(viewer) if installed else "off")
    servers = start_server(settings)
    server = next(servers)
    try:
        assert server.http_url is not None
        token = server.runtime.patient_tokens.issue(
            TokenRequest("RESIDENT_ID_CARD", ZHANG, ttl_seconds=600)
        ).token
        with httpx.Client(base_url=server.http_url, follow_redirects=False) as browser:
            assert sign_in(browser, token).status_code == 303
            history = browser.get("/", headers=HTML)
            assert history.status_code == 200
            assert history.headers["content-security-policy"] == PAGE_POLICY.decode()
            script = re.search(
                r'<script src="/static/viewer-prefetch\.js" defer data-files="([^"]*)">',
                history.text,
            )
            if installed:
                assert script is not None, history.text
                assert script.group(1).split() == [bundle, "/viewer/app.bundle.css"]
                prefetcher = browser.get("/static/viewer-prefetch.js")
                assert prefetcher.status_code == 200
                assert 'link.rel = "prefetch"' in prefetcher.text
                assert 'classList.add("prerender-now")' in prefetcher.text
                # The speculation rules, as a file the policy allows (no inline script).
                assert history.headers["speculation-rules"] == '"/static/viewer-prerender.json"'
                rules = browser.get("/static/viewer-prerender.json")
                assert rules.status_code == 200
                assert rules.headers["content-type"] == "application/speculationrules+json"
                assert rules.json() == {
                    "prerender": [
                        {
                            "where": {"selector_matches": "a.open-viewer.prerender-now"},
                            "eagerness": "immediate",
                        },
                        {
                            "where": {"selector_matches": "a.open-viewer"},
                            "eagerness": "conservative",
                        },
                    ]
                }
            else:
                assert script is None
                assert "viewer-prefetch" not in history.text
                assert "speculation-rules" not in history.headers
    finally:
        servers.close()


def test_the_reads_a_browser_made_ahead_are_marked_in_the_patients_accesses(
    pages: Pages,
) -> None:
    uid = pages.zhang_studies()[0]
    dicom_json = {"Accept": "application/dicom+json"}
    with pages.browser() as browser:
        assert sign_in(browser, pages.patient_token()).status_code == 303
        # What a viewer the history prerendered asks, as Chromium sends it.
        ahead = browser.get(
            f"/dicomweb/studies/{uid}/metadata",
            headers={**dicom_json, "Sec-Purpose": "prefetch;prerender"},
        )
        assert ahead.status_code == 200
        asked = browser.get(f"/dicomweb/studies/{uid}/series", headers=dicom_json)
        assert asked.status_code == 200
        assert pages.server.runtime.audit.flush()
        accesses = html.unescape(browser.get("/accesses", headers=HTML).text)
    mark = "(fetched ahead by the browser, not yet opened) "
    assert f"{mark}DICOMweb metadata of study {uid}" in accesses
    assert f"DICOMweb search of study {uid}" in accesses
    assert f"{mark}DICOMweb search of study {uid}" not in accesses
