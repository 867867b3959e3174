"""An administrator's change takes effect on every server within about a second.

Two servers share one index, as a city deployment runs them; the change is made on one (as the
command line does, in a transaction of its own) and observed through the other's gRPC API. No
test here invalidates a cache by hand. Waits are deadline loops, not sleeps and asserts.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from mutualrec.client.upload import auth_metadata
from mutualrec.security.api_keys import split_token
from mutualrec.services.api_keys import ApiKeys
from mutualrec.services.catalogs import Catalogs
from mutualrec.storage import catalog_store
from mutualrec.storage.institutions import revoke_key
from mutualrec.v1 import common_pb2, recognition_pb2, recognition_pb2_grpc
from tests.conftest import RunningServer, make_settings, start_server
from tests.integration.test_study_access import _upload_today

ZHANG = "50010319680315109X"
ISSUER = "H500103001"
ASKER = "H500106002"
# A change is polled for once a second; this leaves room for a loaded test machine.
DEADLINE_SECONDS = 10.0


@dataclass
class Pair:
    """Two servers on one index: ``admin`` is where changes are made, ``other`` observes."""

    admin: RunningServer
    other: RunningServer
    keys: dict[str, str]


@pytest.fixture
def pair(tmp_path: Path, database_url: str, manifest: dict[str, Any]) -> Iterator[Pair]:
    shared = {
        "MUTUALREC_DATABASE_URL": database_url,
        "MUTUALREC_OBJECT_STORE": f"file://{tmp_path / 'objects'}",
        # The production default: verified keys are cached, so revocation must reach them.
        "MUTUALREC_AUTH_CACHE_SECONDS": "30",
    }
    first = start_server(make_settings(tmp_path / "a", **shared))
    second = start_server(make_settings(tmp_path / "b", **shared))
    try:
        admin, other = next(first), next(second)
        keys = {code: admin.add_hospital(code) for code in (ISSUER, ASKER)}
        _upload_today(admin, keys[ISSUER], manifest["ct_chest_contrast_hosp_a"])
        yield Pair(admin, other, keys)
    finally:
        second.close()
        first.close()


def _check(server: RunningServer, key: str, code: str) -> recognition_pb2.CheckLine:
    reply = recognition_pb2_grpc.RecognitionServiceStub(server.channel).CheckOrder(
        recognition_pb2.CheckOrderRequest(
            patient=common_pb2.PatientIdentity(
                document_type=common_pb2.RESIDENT_ID_CARD, document_number=ZHANG
            ),
            ordered_codes=[code],
        ),
        metadata=auth_metadata(key),
        timeout=10,
    )
    line: recognition_pb2.CheckLine = reply.lines[0]
    return line


def _status(server: RunningServer, key: str) -> grpc.StatusCode:
    """How a check made with ``key`` ends."""
    try:
        _check(server, key, "IMG-CT-CHEST-C")
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _until(observe: Callable[[], Any], wanted: Any) -> None:
    """Observe until ``wanted`` is seen; fail once the deadline has passed."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while (seen := observe()) != wanted:
        assert time.monotonic() < deadline, f"still {seen!r}, not {wanted!r}"
        time.sleep(0.05)


def _qualify(server: RunningServer) -> None:
    with server.runtime.sessions.begin() as session:
        catalog_store.add_qualification(
            session,
            ISSUER,
            item_code=None,
            category="imaging",
            scope="city",
            valid_from=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
            valid_until=None,
            catalog=catalog_store.current_catalog(session),
        )


def test_a_qualification_mapping_and_price_reach_the_other_server(pair: Pair) -> None:
    asker = pair.keys[ASKER]
    # The other server has the reference data cached: the issuer is not qualified yet.
    assert (
        _check(pair.other, asker, "IMG-CT-CHEST-C").verdict == recognition_pb2.ISSUER_NOT_QUALIFIED
    )
    assert _check(pair.other, asker, "LOCAL-CT-77").verdict == recognition_pb2.UNKNOWN_CODE

    _qualify(pair.admin)
    _until(
        lambda: _check(pair.other, asker, "IMG-CT-CHEST-C").verdict, recognition_pb2.RECOGNIZABLE
    )

    Catalogs(pair.admin.runtime.sessions).load_code_mappings(
        ASKER, "local_code,item_codes\nLOCAL-CT-77,IMG-CT-CHEST-C\n"
    )
    _until(lambda: _check(pair.other, asker, "LOCAL-CT-77").verdict, recognition_pb2.RECOGNIZABLE)

    Catalogs(pair.admin.runtime.sessions).load_prices(
        ASKER, "item_code,price_cny\nIMG-CT-CHEST-C,123.45\n"
    )
    _until(lambda: _check(pair.other, asker, "IMG-CT-CHEST-C").estimated_saving, "123.45")


def test_a_revoked_key_stops_on_the_other_server_despite_its_cache(pair: Pair) -> None:
    asker = pair.keys[ASKER]
    _check(pair.other, asker, "IMG-CT-CHEST-C")  # verified, and cached for 30 s

    with pair.admin.runtime.sessions.begin() as session:
        assert revoke_key(session, split_token(asker)[0])
    _until(lambda: _status(pair.other, asker), grpc.StatusCode.UNAUTHENTICATED)


def test_a_rotated_out_key_stops_at_the_end_of_its_grace_despite_the_cache(pair: Pair) -> None:
    asker = pair.keys[ASKER]
    rotation = ApiKeys(pair.admin.runtime.sessions).rotate(
        split_token(asker)[0], dt.timedelta(seconds=5)
    )
    # Verified again after the rotation's change was seen, and cached for 30 s from then.
    _until(lambda: _status(pair.other, asker), grpc.StatusCode.OK)
    assert _check(pair.other, rotation.token, "IMG-CT-CHEST-C").item_code == "IMG-CT-CHEST-C"
    _until(lambda: _status(pair.other, asker), grpc.StatusCode.UNAUTHENTICATED)


def test_a_new_region_policy_reaches_the_other_server(pair: Pair) -> None:
    asker = pair.keys[ASKER]
    _qualify(pair.admin)
    _until(
        lambda: _check(pair.other, asker, "IMG-CT-CHEST-C").verdict, recognition_pb2.RECOGNIZABLE
    )

    since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=30)).date()
    Catalogs(pair.admin.runtime.sessions).load_policy(
        f'version = "suspended"\n[[suspensions]]\ninstitution = "{ISSUER}"\n'
        f'category = "imaging"\nfrom = {since.isoformat()}\nreason = "failed EQA"\n'
    )
    _until(
        lambda: _check(pair.other, asker, "IMG-CT-CHEST-C").verdict,
        recognition_pb2.ISSUER_NOT_QUALIFIED,
    )
