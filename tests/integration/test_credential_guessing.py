"""Guessing credentials costs the guesser, not the index: a share token the server did not sign
is refused without a lookup, and an address whose credentials keep failing is refused before
its next one is looked up. Lookups are counted on the server's real engine."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import event, update

from mutualrec.client.upload import auth_metadata
from mutualrec.identity import parse_identity, patient_key
from mutualrec.security.patient_tokens import mint_patient_token, share_token_hash
from mutualrec.storage.models import ShareLink
from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc
from tests.conftest import RunningServer, make_settings, start_server
from tests.helpers import file_messages, header_message, study_files, upload

CT = "ct_chest_contrast_hosp_a"


@contextmanager
def counted(server: RunningServer, table: str) -> Iterator[list[str]]:
    """The statements the server sends to its index that name ``table``, while in the block."""
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if table in statement:
            statements.append(statement)

    event.listen(server.runtime.engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(server.runtime.engine, "before_cursor_execute", seen)


def _get_study(server: RunningServer, token: str) -> grpc.StatusCode:
    try:
        imaging_pb2_grpc.ImagingServiceStub(server.channel).GetStudy(
            imaging_pb2.GetStudyRequest(), metadata=auth_metadata(token), timeout=30
        )
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _random_signed_shape() -> str:
    # The shape CreateShareLink prints: 43 random characters, a dot, a 22-character MAC.
    return f"mrs_{secrets.token_urlsafe(32)}.{secrets.token_urlsafe(16)}"


def _random_unsigned_shape() -> str:
    # The shape of share tokens made before they carried a MAC.
    return f"mrs_{secrets.token_urlsafe(32)}"


def test_random_share_tokens_cost_no_index_lookup(server: RunningServer) -> None:
    with counted(server, "share_link") as lookups:
        codes = {_get_study(server, _random_signed_shape()) for _ in range(200)}

    assert codes == {grpc.StatusCode.UNAUTHENTICATED}
    assert lookups == []


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[RunningServer]:
    """Five failed authentications per address, refilled at one every 100 s."""
    settings = make_settings(
        tmp_path,
        MUTUALREC_DATABASE_URL=f"sqlite:///{tmp_path / 'index.sqlite3'}",
        MUTUALREC_AUTH_FAILURE_RATE="0.01",
        MUTUALREC_AUTH_FAILURE_BURST="5",
    )
    yield from start_server(settings)


def test_an_address_whose_credentials_keep_failing_is_refused_before_any_lookup(
    guarded: RunningServer,
) -> None:
    with counted(guarded, "share_link") as lookups:
        codes = [_get_study(guarded, _random_unsigned_shape()) for _ in range(50)]

    assert (
        codes == [grpc.StatusCode.UNAUTHENTICATED] * 5 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 45
    )
    assert len(lookups) == 5


def _patient_token(server: RunningServer, study: dict[str, Any]) -> str:
    settings = server.runtime.settings
    patient = study["patient"]
    key = patient_key(
        parse_identity(patient["document_type"], patient["document_number"]),
        settings.patient_key_secret,
    )
    return mint_patient_token(settings.token_secret, key, dt.timedelta(minutes=10)).token


def _shared_ct(server: RunningServer, manifest: dict[str, Any]) -> Any:
    """Upload the sample CT and let its patient share it for a day; the new link."""
    study = manifest[CT]
    hospital = server.add_hospital(study["institution_code"])
    upload(server.channel, hospital, [header_message(study), *file_messages(study_files(study))])
    return imaging_pb2_grpc.ImagingServiceStub(server.channel).CreateShareLink(
        imaging_pb2.CreateShareLinkRequest(
            study_instance_uid=study["study_instance_uid"],
            expire_time=(dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat(),
        ),
        metadata=auth_metadata(_patient_token(server, study)),
        timeout=30,
    )


def test_share_tokens_made_before_the_mac_still_open_their_study(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    created = _shared_ct(server, manifest)
    legacy = _random_unsigned_shape()
    with server.runtime.sessions.begin() as session:
        session.execute(
            update(ShareLink)
            .where(ShareLink.id == created.link.link_id)
            .values(token_sha256=share_token_hash(legacy))
        )

    assert _get_study(server, legacy) == grpc.StatusCode.OK
    # The token printed before the change of its row is no longer the link's.
    assert _get_study(server, created.token) == grpc.StatusCode.UNAUTHENTICATED


def test_a_share_token_with_a_wrong_mac_is_refused_without_lookup(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    created = _shared_ct(server, manifest)
    random_part, mac = created.token.split(".")
    forged = f"{random_part}.{'A' if mac[0] != 'A' else 'B'}{mac[1:]}"

    assert _get_study(server, created.token) == grpc.StatusCode.OK
    with counted(server, "share_link") as lookups:
        assert _get_study(server, forged) == grpc.StatusCode.UNAUTHENTICATED
    assert lookups == []
