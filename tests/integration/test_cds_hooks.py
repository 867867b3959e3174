"""CDS Hooks 2.0 over real HTTP against the running server, on SQLite and on PostgreSQL.

Results arrive the way hospitals send them (SubmitObservations over gRPC); the EHR signs its
JWTs with its own key, registered for its institution; request and response shapes are
validated against the CDS Hooks 2.0 schemas in tests/fixtures/cds_hooks.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select

from mutualrec.matching.decisions import DeclineReason
from mutualrec.security.access import REGULATOR
from mutualrec.security.api_keys import InvalidKey
from mutualrec.services.catalogs import Catalogs
from mutualrec.services.cds_clients import CdsClients
from mutualrec.statistics.periods import today
from mutualrec.storage import admin_changes, cds_clients, statistics_index
from mutualrec.storage.models import AuditEntry, CdsTokenUse, Decision
from mutualrec.v1 import statistics_pb2, statistics_pb2_grpc
from tests.cds_client import LOINC, Ehr, hook_request, service_request, validate
from tests.conftest import RunningServer, make_settings, new_key, start_server
from tests.fhir_docs import OTHER_PATIENT_ID, PATIENT_ID, bundle, observation, submit
from tests.integration.test_recognition import ASKER, ISSUER, _fhir_time, _setup

EHR_ISSUER = "https://ehr.asker-hospital.example.org"


@pytest.fixture
def ehr(server: RunningServer) -> Ehr:
    """The asking hospital's EHR, registered; a potassium result of PATIENT_ID a day old from
    a qualified issuer is on record."""
    keys = _setup(server)
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    submit(server.channel, keys[ISSUER], bundle([observation("K-1", issued=_fhir_time(issued))]))
    client = Ehr(server, EHR_ISSUER)
    client.register(ASKER)
    return client


def _orders() -> list[dict[str, Any]]:
    return [
        # Potassium by LOINC: held, recognizable.
        service_request("sr-k", (LOINC, "2823-3")),
        # Sodium by catalog code: nothing on record.
        service_request(
            "sr-na", ("https://fhir.mutualrec.org/CodeSystem/recognition-item", "LAB-NA")
        ),
        # A code nobody knows.
        service_request("sr-x", ("urn:local", "NO-SUCH-CODE")),
    ]


def _decisions(server: RunningServer) -> list[tuple[bool, str]]:
    with server.runtime.sessions() as session:
        rows = session.execute(select(Decision.accepted, Decision.booked_saving)).all()
    return [(bool(a), str(b)) for a, b in rows]


def test_discovery_lists_both_services(ehr: Ehr) -> None:
    reply = httpx.get(f"{ehr.base}/cds-services", timeout=10)
    assert reply.status_code == 200
    validate(reply.json(), "DiscoveryResponse")
    services = {s["id"]: s for s in reply.json()["services"]}
    assert {s["hook"] for s in services.values()} == {"order-select", "order-sign"}
    assert services["order-sign"]["prefetch"] == {"patient": "Patient/{{context.patientId}}"}


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_a_recognizable_result_is_one_card(ehr: Ehr, hook: str) -> None:
    request = hook_request(hook, _orders(), PATIENT_ID)
    validate(request, "HookRequest")

    reply = ehr.post(f"/cds-services/{hook}", request, language="en")

    assert reply.status_code == 200, reply.text
    validate(reply.json(), "HookResponse")
    (card,) = reply.json()["cards"]
    assert len(card["summary"]) < 140
    assert card["summary"].startswith("Potassium: recognizable result from Hospital H500103001")
    assert "Hospital H500103001" in card["detail"]
    assert "4.1 mmol/L" in card["detail"]
    assert "valid until" in card["detail"]
    assert card["selectionBehavior"] == "at-most-one"
    (suggestion,) = card["suggestions"]
    assert suggestion["actions"] == [
        {"type": "delete", "description": suggestion["label"], "resourceId": "ServiceRequest/sr-k"}
    ]
    assert [r["code"] for r in card["overrideReasons"]] == [r.value for r in DeclineReason]


def test_cards_speak_the_requests_language(ehr: Ehr) -> None:
    request = hook_request("order-sign", _orders(), PATIENT_ID)
    (card,) = ehr.post("/cds-services/order-sign", request, language="zh-CN").json()["cards"]
    assert "钾" in card["summary"]
    assert "可互认" in card["summary"]
    assert "有效期至" in card["detail"]
    assert card["overrideReasons"][0]["display"] == "病情变化"


def test_order_select_advises_on_the_selected_orders_only(ehr: Ehr) -> None:
    request = hook_request("order-select", _orders(), PATIENT_ID, ["ServiceRequest/sr-na"])
    reply = ehr.post("/cds-services/order-select", request)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"cards": []}


def test_no_card_when_nothing_is_recognizable(ehr: Ehr) -> None:
    # Another patient, with nothing on record.
    request = hook_request("order-sign", _orders(), OTHER_PATIENT_ID)
    reply = ehr.post("/cds-services/order-sign", request)
    assert reply.status_code == 200, reply.text
    validate(reply.json(), "HookResponse")
    assert reply.json() == {"cards": []}


def test_feedback_books_the_saving_once(ehr: Ehr) -> None:
    request = hook_request("order-sign", _orders(), PATIENT_ID)
    (card,) = ehr.post("/cds-services/order-sign", request).json()["cards"]
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                "outcomeTimestamp": dt.datetime.now(dt.UTC).isoformat(),
            }
        ]
    }
    validate(feedback, "FeedbackRequest")

    first = ehr.post("/cds-services/order-sign/feedback", feedback)
    again = ehr.post("/cds-services/order-sign/feedback", feedback)

    assert (first.status_code, again.status_code) == (200, 200), (first.text, again.text)
    assert _decisions(ehr.server) == [(True, "4.00")]
    # The regulator's report counts it once.
    statistics_index.compact(ehr.server.runtime.engine)
    with ehr.server.runtime.sessions.begin() as session:
        regulator = new_key(session, REGULATOR)
    day = today().isoformat()
    report = statistics_pb2_grpc.StatisticsServiceStub(ehr.server.channel).GetSavingsReport(
        statistics_pb2.ReportRequest(
            from_date=day,
            to_date=day,
            granularity=statistics_pb2.GRANULARITY_DAY,
            group_by=statistics_pb2.GROUP_BY_DISTRICT,
        ),
        metadata=(("authorization", f"Bearer {regulator}"),),
        timeout=30,
    )
    assert (report.totals.accepted, report.totals.saving) == (1, "4.00")
    # Overriding a card accepted already is a conflict, and books nothing more.
    overridden = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": card["overrideReasons"][0]},
                "outcomeTimestamp": dt.datetime.now(dt.UTC).isoformat(),
            }
        ]
    }
    validate(overridden, "FeedbackRequest")
    conflict = ehr.post("/cds-services/order-sign/feedback", overridden)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "application/problem+json"
    assert _decisions(ehr.server) == [(True, "4.00")]


def test_an_override_is_recorded_with_its_reason_and_books_nothing(ehr: Ehr) -> None:
    request = hook_request("order-select", _orders(), PATIENT_ID)
    (card,) = ehr.post("/cds-services/order-select", request).json()["cards"]
    overridden = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {"code": "EMERGENCY", "system": card["overrideReasons"][0]["system"]},
                    "userComment": "急诊",
                },
                "outcomeTimestamp": dt.datetime.now(dt.UTC).isoformat(),
            }
        ]
    }
    reply = ehr.post("/cds-services/order-select/feedback", overridden)
    assert reply.status_code == 200, reply.text
    with ehr.server.runtime.sessions() as session:
        rows = session.execute(select(Decision.accepted, Decision.reason)).all()
    assert [(bool(a), r) for a, r in rows] == [(False, "EMERGENCY")]


def _refused(reply: httpx.Response, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = reply.json()
    assert body["status"] == status
    return body


def test_jwt_refusals(ehr: Ehr) -> None:
    request = hook_request("order-sign", _orders(), PATIENT_ID)
    url = f"{ehr.base}/cds-services/order-sign"
    now = dt.datetime.now(dt.UTC)

    impostor = Ehr(ehr.server, EHR_ISSUER)  # the same issuer, another private key
    assert (
        "signature" in _refused(impostor.post("/cds-services/order-sign", request), 401)["detail"]
    )
    wrong_aud = ehr.token("https://elsewhere.example.org/cds-services/order-sign")
    assert (
        "audience"
        in _refused(ehr.post("/cds-services/order-sign", request, wrong_aud), 401)["detail"]
    )
    expired = ehr.token(
        url,
        iat=int((now - dt.timedelta(minutes=20)).timestamp()),
        exp=int((now - dt.timedelta(minutes=15)).timestamp()),
    )
    assert (
        "expired" in _refused(ehr.post("/cds-services/order-sign", request, expired), 401)["detail"]
    )
    too_long = ehr.token(url, exp=int((now + dt.timedelta(hours=1)).timestamp()))
    _refused(ehr.post("/cds-services/order-sign", request, too_long), 401)
    no_jti = ehr.token(url, jti=None)
    _refused(ehr.post("/cds-services/order-sign", request, no_jti), 401)
    stranger = Ehr(ehr.server, "https://unregistered.example.org")
    assert "issuer" in _refused(stranger.post("/cds-services/order-sign", request), 401)["detail"]
    missing = httpx.post(url, json=request, timeout=10)
    _refused(missing, 401)
    assert missing.headers["www-authenticate"].startswith("Bearer")

    once = ehr.token(url)
    assert ehr.post("/cds-services/order-sign", request, once).status_code == 200
    replayed = ehr.post("/cds-services/order-sign", request, once)
    assert "used already" in _refused(replayed, 401)["detail"]


def test_a_pem_key_registers_too_and_removal_refuses_the_next_call(server: RunningServer) -> None:
    _setup(server)
    clients = CdsClients(server.runtime.sessions)
    ehr = Ehr(server, "https://pem-ehr.example.org")
    clients.add(ASKER, ehr.issuer, ehr.public_pem())
    request = hook_request("order-sign", _orders(), PATIENT_ID)
    assert ehr.post("/cds-services/order-sign", request).status_code == 200
    assert [c.issuer for c in clients.list()] == [ehr.issuer]
    assert clients.remove(ehr.issuer)
    _refused(ehr.post("/cds-services/order-sign", request), 401)


def test_held_keys_follow_another_processs_changes_at_once(ehr: Ehr) -> None:
    """Servers keep the registered keys in memory; the administrator's command is another
    process (here another CdsClients on the same index). The server's next call follows each
    change, without waiting for the change watch."""
    admin = CdsClients(ehr.server.runtime.sessions)
    request = hook_request("order-sign", [], PATIENT_ID)
    path = "/cds-services/order-sign"
    assert ehr.post(path, request).status_code == 200  # the server holds the keys now
    assert admin.remove(EHR_ISSUER)
    assert "not a registered" in _refused(ehr.post(path, request), 401)["detail"]
    # Registered again with another key: that key is accepted, the old one refused.
    rotated = Ehr(ehr.server, EHR_ISSUER)
    rotated.register(ASKER)
    assert rotated.post(path, request).status_code == 200
    assert "signature" in _refused(ehr.post(path, request), 401)["detail"]
    # An unknown issuer is not remembered as unknown: registered, its next call is accepted.
    newcomer = Ehr(ehr.server, "https://newcomer.example.org")
    _refused(newcomer.post(path, request), 401)
    newcomer.register(ASKER)
    assert newcomer.post(path, request).status_code == 200


def test_a_server_holding_keys_refuses_a_removed_registration(ehr: Ehr) -> None:
    """The same without a change watch at all (two CdsClients: a server's and the
    administrator's): what refuses the removed registration is the index, on every call."""
    sessions = ehr.server.runtime.sessions
    serving, admin = CdsClients(sessions), CdsClients(sessions)
    url = f"{ehr.base}/cds-services/order-sign"
    assert serving.authenticate(ehr.token(url), [url]).institution_code == ASKER
    with sessions() as session:
        before = admin_changes.version(session)
    # Removed and registered again, with the same key, for another institution (SQLite may
    # even give it the removed registration's id): the server's next call reads it again.
    assert admin.remove(EHR_ISSUER)
    admin.add(ISSUER, EHR_ISSUER, ehr.jwks())
    assert serving.authenticate(ehr.token(url), [url]).institution_code == ISSUER
    # Removed: refused.
    assert admin.remove(EHR_ISSUER)
    with pytest.raises(InvalidKey, match="not a registered"):
        serving.authenticate(ehr.token(url), [url])
    # Every change moved the counter other servers watch.
    with sessions() as session:
        assert admin_changes.version(session) == before + 3


def test_a_token_is_used_once_whichever_process_it_reaches(ehr: Ehr) -> None:
    """Each process remembers the ids it accepted; the index refuses a replay to another."""
    sessions = ehr.server.runtime.sessions
    one, other = CdsClients(sessions), CdsClients(sessions)
    url = f"{ehr.base}/cds-services/order-sign"
    token = ehr.token(url)
    assert one.authenticate(token, [url]).institution_code == ASKER
    with pytest.raises(InvalidKey, match="used already"):
        other.authenticate(token, [url])
    with pytest.raises(InvalidKey, match="used already"):
        one.authenticate(token, [url])
    # The first refuses it from memory alone: with the index's record gone, it still does.
    with sessions.begin() as session:
        session.execute(delete(CdsTokenUse))
    with pytest.raises(InvalidKey, match="used already"):
        one.authenticate(token, [url])


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (
            lambda r: r["context"]["draftOrders"]["entry"][2]["resource"].pop("code"),
            "context.draftOrders.entry[2].resource.code",
        ),
        (
            lambda r: r["context"]["draftOrders"]["entry"].__setitem__(1, "not an entry"),
            "context.draftOrders.entry[1]",
        ),
        (
            lambda r: r["context"]["draftOrders"].__setitem__("resourceType", "Patient"),
            "context.draftOrders.resourceType",
        ),
        (lambda r: r["context"].pop("draftOrders"), "context.draftOrders"),
        (lambda r: r.pop("prefetch"), "prefetch"),
        (
            lambda r: r["prefetch"]["patient"]["identifier"][0].__setitem__("value", "123"),
            "prefetch.patient.identifier[0].value",
        ),
        (
            lambda r: r["prefetch"]["patient"].__setitem__("identifier", []),
            "prefetch.patient.identifier",
        ),
        (
            lambda r: r["prefetch"]["patient"].__setitem__("id", "someone-else"),
            "prefetch.patient.id",
        ),
        (lambda r: r.__setitem__("hook", "patient-view"), "hook"),
        (lambda r: r.pop("hookInstance"), "hookInstance"),
        (lambda r: r["context"].pop("patientId"), "context.patientId"),
    ],
)
def test_malformed_requests_name_the_field(ehr: Ehr, mutate: Any, field: str) -> None:
    request = hook_request("order-sign", _orders(), PATIENT_ID)
    mutate(request)
    body = _refused(ehr.post("/cds-services/order-sign", request), 400)
    assert field in [v["field"] for v in body["violations"]], body


def test_bodies_that_are_not_requests(ehr: Ehr) -> None:
    for raw in (b"{not json", b"[]", b"null", b"\xff\xfe"):
        body = _refused(ehr.post("/cds-services/order-sign", raw), 400)
        assert body["violations"][0]["field"] == ""
    reply = httpx.post(
        f"{ehr.base}/cds-services/order-sign",
        content=b"<xml/>",
        headers={
            "Authorization": f"Bearer {ehr.token(f'{ehr.base}/cds-services/order-sign')}",
            "Content-Type": "application/xml",
        },
        timeout=10,
    )
    assert _refused(reply, 400)["violations"][0]["reason"] == "NOT_JSON"
    select_without_selections = hook_request("order-select", _orders(), PATIENT_ID)
    del select_without_selections["context"]["selections"]
    body = _refused(ehr.post("/cds-services/order-select", select_without_selections), 400)
    assert body["violations"][0]["field"] == "context.selections"
    bad_feedback = {"feedback": [{"card": "nonsense", "outcome": "maybe"}]}
    body = _refused(ehr.post("/cds-services/order-sign/feedback", bad_feedback), 400)
    assert [v["field"] for v in body["violations"]] == ["feedback[0].card"]
    unknown_card = {"feedback": [{"card": f"{uuid.uuid4()}:0", "outcome": "accepted"}]}
    _refused(ehr.post("/cds-services/order-sign/feedback", unknown_card), 404)
    no_reason = {"feedback": [{"card": f"{uuid.uuid4()}:0", "outcome": "overridden"}]}
    body = _refused(ehr.post("/cds-services/order-sign/feedback", no_reason), 400)
    assert body["violations"][0]["field"] == "feedback[0].overrideReason.reason"
    # The server keeps serving.
    assert httpx.get(f"{ehr.base}/healthz", timeout=10).status_code == 200


def test_unknown_service_is_404(ehr: Ehr) -> None:
    request = hook_request("order-sign", _orders(), PATIENT_ID)
    _refused(ehr.post("/cds-services/patient-view", request), 404)


def test_a_check_is_in_the_audit_trail(ehr: Ehr) -> None:
    request = hook_request("order-sign", _orders(), PATIENT_ID)
    assert ehr.post("/cds-services/order-sign", request).status_code == 200
    entries: list[Any] = []
    for _ in range(50):
        assert ehr.server.runtime.audit.flush()
        with ehr.server.runtime.sessions() as session:
            entries = list(
                session.execute(select(AuditEntry).where(AuditEntry.rpc.like("HTTP %"))).scalars()
            )
        if entries:
            break
        time.sleep(0.1)
    (entry,) = entries
    assert entry.rpc == "HTTP POST /cds-services/{service_id}"
    assert (entry.role, entry.outcome, entry.peer) == ("hospital", "OK", "ipv4:127.0.0.1")
    assert entry.credential.startswith("cds:https://ehr.")
    assert "check of 3 ordered items" in entry.what


def test_hostile_bodies_are_refused_and_the_server_keeps_serving(ehr: Ehr) -> None:
    request = hook_request("order-sign", _orders(), PATIENT_ID)
    request["context"]["draftOrders"]["entry"][0]["resource"]["code"]["coding"][0]["code"] = (
        "2823\x00-3"
    )
    body = _refused(ehr.post("/cds-services/order-sign", request), 400)
    assert body["violations"][0]["field"] == (
        "context.draftOrders.entry[0].resource.code.coding[0].code"
    )
    deep = b"[" * 100_000 + b"]" * 100_000
    _refused(ehr.post("/cds-services/order-sign", deep), 400)
    nested = "[" * 900 + "]" * 900
    _refused(ehr.post("/cds-services/order-sign", nested), 400)
    huge = b'{"hook": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    _refused(ehr.post("/cds-services/order-sign", huge), 413)
    long_code = hook_request("order-sign", [service_request("a", (LOINC, "9" * 500))], PATIENT_ID)
    body = _refused(ehr.post("/cds-services/order-sign", long_code), 400)
    assert body["violations"][0]["field"].endswith("resource.code.coding[0].code")
    many = hook_request(
        "order-sign", [service_request(f"o{i}", (LOINC, f"C-{i}")) for i in range(150)], PATIENT_ID
    )
    body = _refused(ehr.post("/cds-services/order-sign", many), 400)
    assert body["violations"][0]["field"] == "context.draftOrders.entry"
    assert httpx.get(f"{ehr.base}/healthz", timeout=10).status_code == 200


def test_behind_a_proxy_the_audience_is_the_public_url(tmp_path: Path) -> None:
    public = "https://region.example.org/mutualrec"
    settings = make_settings(
        tmp_path,
        MUTUALREC_DATABASE_URL=f"sqlite:///{tmp_path / 'index.sqlite3'}",
        MUTUALREC_HTTP_PUBLIC_URL=public + "/",
    )
    servers = start_server(settings)
    server = next(servers)
    try:
        server.add_hospital(ASKER, level="secondary")
        ehr = Ehr(server, EHR_ISSUER)
        ehr.register(ASKER)
        request = hook_request("order-sign", [], PATIENT_ID)
        as_public = ehr.token(f"{public}/cds-services/order-sign")
        assert ehr.post("/cds-services/order-sign", request, as_public).status_code == 200
        # The URL it arrived on is not the audience any more.
        _refused(ehr.post("/cds-services/order-sign", request), 401)
    finally:
        servers.close()


def test_expired_token_ids_are_swept(ehr: Ehr) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    with ehr.server.runtime.sessions.begin() as session:
        client = cds_clients.find_client(session, EHR_ISSUER)
        assert client is not None
        cds_clients.use_token(session, client, "long-expired", past, sweep=False)
    request = hook_request("order-sign", [], PATIENT_ID)
    # The server's first CDS call sweeps.
    assert ehr.post("/cds-services/order-sign", request).status_code == 200
    with ehr.server.runtime.sessions() as session:
        kept = session.execute(select(CdsTokenUse.jti)).scalars().all()
    assert len(kept) == 1
    assert "long-expired" not in kept


def test_a_panel_with_an_item_to_measure_is_not_suggested_for_removal(ehr: Ehr) -> None:
    Catalogs(ehr.server.runtime.sessions).load_code_mappings(
        ASKER,
        "local_code,item_codes,description\n"
        "HIS-K,LAB-K,potassium\n"
        "HIS-KNA,LAB-K;LAB-NA,potassium and sodium\n",
    )
    ehr.server.runtime.reference.invalidate()
    orders = [
        service_request("sr-local-k", ("urn:oid:1.2.156.his", "HIS-K")),
        service_request("sr-panel", ("urn:oid:1.2.156.his", "HIS-KNA")),
    ]
    reply = ehr.post("/cds-services/order-sign", hook_request("order-sign", orders, PATIENT_ID))
    assert reply.status_code == 200, reply.text
    validate(reply.json(), "HookResponse")
    by_removal = sorted(
        [a["resourceId"] for s in card.get("suggestions", []) for a in s["actions"]]
        for card in reply.json()["cards"]
    )
    # Potassium is held: one card for each order naming it; only the potassium-only order goes,
    # the panel stays (its sodium must be measured).
    assert by_removal == [[], ["ServiceRequest/sr-local-k"]]
