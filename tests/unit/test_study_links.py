"""Study-link tokens: bound to a check, a study and an institution, signed, expiring."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest

from mutualrec.client.links import credential, study_link_token
from mutualrec.security.api_keys import InvalidKey
from mutualrec.security.patient_tokens import mint_patient_token
from mutualrec.security.study_links import (
    StudyGrant,
    mint_study_link_token,
    verify_study_link_token,
)
from mutualrec.services.authentication import study_link_principal

SECRET = b"s" * 32
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _grant(expires_at: dt.datetime = NOW + dt.timedelta(hours=1)) -> StudyGrant:
    return StudyGrant("chk-1", "1.2.826.0.1.99", 7, expires_at)


def test_a_token_round_trips_its_grant() -> None:
    token = mint_study_link_token(SECRET, _grant())
    assert token.startswith("mro_")
    assert verify_study_link_token(SECRET, token) == _grant()
    principal = study_link_principal(SECRET, token)
    assert (principal.role, principal.institution_id) == ("doctor", 7)
    assert (principal.check_id, principal.checked_study_uid) == ("chk-1", "1.2.826.0.1.99")


def test_expired_forged_and_foreign_tokens_are_refused() -> None:
    expired = mint_study_link_token(SECRET, _grant(NOW - dt.timedelta(minutes=5)))
    with pytest.raises(InvalidKey, match="expired"):
        verify_study_link_token(SECRET, expired)
    with pytest.raises(InvalidKey):
        verify_study_link_token(b"o" * 32, mint_study_link_token(SECRET, _grant()))
    # Unsigned, or a patient token dressed as a link: another audience.
    unsigned = jwt.encode({"sub": "x", "chk": "c", "ins": 1}, key="", algorithm="none")
    patient = mint_patient_token(SECRET, "patient-key", dt.timedelta(hours=1)).token
    for token in (f"mro_{unsigned}", f"mro_{patient}", "mro_", patient):
        with pytest.raises(InvalidKey):
            verify_study_link_token(SECRET, token)


def test_the_cli_reads_the_token_of_an_https_open_url() -> None:
    url = "https://region.example.org/open#mro_a.b.c"
    assert study_link_token(url) == "mro_a.b.c"
    assert credential(url) == "mro_a.b.c"
    assert study_link_token("mutualrec://study/1.2.3") is None
    assert study_link_token("https://region.example.org/open#other") is None
