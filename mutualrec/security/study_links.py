"""Study-link tokens: what a recognized study's ``open_url`` carries, so the doctor of the
asking hospital opens that one study, as long as the check that recognized it is recent.

A token is ``mro_`` and a JWT (HS256, the server's token secret) bound to the check, the study,
the asking institution and an expiry (the check's time plus the window in which a hospital may
open a study its check recognized). It needs no lookup to verify; every read it makes is still
checked against the index (that very check recognized that very study, recently).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import jwt

from mutualrec.security.api_keys import InvalidKey
from mutualrec.security.patient_tokens import ISSUER, LEEWAY

STUDY_LINK_PREFIX = "mro_"
STUDY_LINK_AUDIENCE = "mutualrec:open-study"
_ALGORITHM = "HS256"
_INVALID = "the study link is malformed, expired or its signature is wrong"


@dataclass(frozen=True, slots=True)
class StudyGrant:
    """What a study-link token opens: one study, for the institution whose check recognized
    it, until ``expires_at``."""

    check_id: str
    study_instance_uid: str
    institution_id: int
    expires_at: dt.datetime


def mint_study_link_token(secret: bytes, grant: StudyGrant) -> str:
    """The token of ``grant``, signed with ``secret``."""
    claims = {
        "iss": ISSUER,
        "aud": STUDY_LINK_AUDIENCE,
        "sub": grant.study_instance_uid,
        "chk": grant.check_id,
        "ins": grant.institution_id,
        "exp": grant.expires_at,
    }
    return STUDY_LINK_PREFIX + jwt.encode(claims, secret, algorithm=_ALGORITHM)


def looks_like_study_link_token(token: str) -> bool:
    """Whether a bearer token is a study-link token."""
    return token.startswith(STUDY_LINK_PREFIX)


def verify_study_link_token(secret: bytes, token: str) -> StudyGrant:
    """The grant of a token ``secret`` signed and that has not expired; raises
    :class:`InvalidKey` (only HS256 is accepted: ``alg: none`` is refused)."""
    if not looks_like_study_link_token(token):
        raise InvalidKey(_INVALID)
    try:
        claims = jwt.decode(
            token[len(STUDY_LINK_PREFIX) :],
            secret,
            algorithms=[_ALGORITHM],
            audience=STUDY_LINK_AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY,
            options={"require": ["exp", "sub", "aud", "iss", "chk", "ins"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidKey("the study link has expired: check the patient again") from None
    except jwt.InvalidTokenError:
        raise InvalidKey(_INVALID) from None
    study, check, institution = claims["sub"], claims["chk"], claims["ins"]
    if not (
        isinstance(study, str)
        and study
        and isinstance(check, str)
        and check
        and isinstance(institution, int)
    ):
        raise InvalidKey(_INVALID)
    return StudyGrant(check, study, institution, dt.datetime.fromtimestamp(claims["exp"], dt.UTC))
