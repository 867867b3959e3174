"""Patient tokens and share tokens: what a patient's app and a doctor's viewer present.

A patient token is a short-lived JWT (HS256) bound to one ``patient_key``; it needs no lookup,
so listing a history costs no credential query. A share token is a random secret whose SHA-256
alone is stored: it can be revoked, and every use is recorded, so it is looked up on every call.
It carries a MAC of its random part (``mrs_<random>.<mac>``): a token the server did not make
is refused without a lookup, so guessing tokens costs no index query. Tokens made before the
MAC (``mrs_<random>``) are still looked up, within the per-address limit of failed attempts.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import jwt

from mutualrec.security.api_keys import InvalidKey

ISSUER = "mutualrec"
PATIENT_AUDIENCE = "mutualrec:patient"
DEFAULT_TTL = dt.timedelta(hours=1)
MIN_TTL = dt.timedelta(minutes=1)
MAX_TTL = dt.timedelta(hours=24)
# Clocks of the identity provider and of the servers may differ a little.
LEEWAY = dt.timedelta(seconds=30)
SHARE_PREFIX = "mrs_"
# 32 random bytes and a 16-byte MAC, base64url without padding.
_SHARE_SHAPE = re.compile(r"^mrs_([A-Za-z0-9_-]{43})(?:\.([A-Za-z0-9_-]{22}))?$")
_SHARE_MAC_LABEL = b"mutualrec share token v2\0"
_ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class IssuedPatientToken:
    """A minted patient token and the moment it stops working."""

    token: str
    expires_at: dt.datetime


def mint_patient_token(
    secret: bytes, patient_key: str, ttl: dt.timedelta, now: dt.datetime | None = None
) -> IssuedPatientToken:
    """A token that reads ``patient_key``'s own data for ``ttl``; refuses a ttl out of bounds."""
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise ValueError(
            f"a patient token lives between {MIN_TTL.total_seconds():.0f} and "
            f"{MAX_TTL.total_seconds():.0f} seconds"
        )
    issued_at = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    expires_at = issued_at + ttl
    claims = {
        "iss": ISSUER,
        "aud": PATIENT_AUDIENCE,
        "sub": patient_key,
        "iat": issued_at,
        "exp": expires_at,
        "jti": secrets.token_hex(8),
    }
    return IssuedPatientToken(jwt.encode(claims, secret, algorithm=_ALGORITHM), expires_at)


def looks_like_patient_token(token: str) -> bool:
    """Whether a bearer token has a JWT's shape (three dot-separated parts)."""
    return token.count(".") == 2


def verify_patient_token(secret: bytes, token: str) -> str:
    """The patient key a valid, unexpired token was minted for; raises :class:`InvalidKey`.

    Only HS256 is accepted, so a token announcing ``alg: none`` or an asymmetric algorithm is
    refused rather than trusted.
    """
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            audience=PATIENT_AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidKey("the patient token has expired") from None
    except jwt.InvalidTokenError:
        raise InvalidKey("the patient token is malformed or its signature is wrong") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidKey("the patient token is malformed or its signature is wrong")
    return subject


@dataclass(frozen=True, slots=True)
class IssuedShareToken:
    """A share link's token (shown once) and the hash the index keeps."""

    token: str
    token_sha256: str


def _share_mac(secret: bytes, random_part: str) -> str:
    digest = hmac.new(secret, _SHARE_MAC_LABEL + random_part.encode("ascii"), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:16]).rstrip(b"=").decode("ascii")


def new_share_token(secret: bytes) -> IssuedShareToken:
    """A fresh share token with 256 bits of entropy, signed with ``secret``."""
    random_part = secrets.token_urlsafe(32)
    token = f"{SHARE_PREFIX}{random_part}.{_share_mac(secret, random_part)}"
    return IssuedShareToken(token, share_token_hash(token))


def check_share_token(secret: bytes, token: str) -> None:
    """Refuse (:class:`InvalidKey`) a share token that cannot be one the server made: a wrong
    shape, or a MAC that ``secret`` did not make. Passing says only that a lookup may find it."""
    shape = _SHARE_SHAPE.match(token)
    if shape is None:
        raise InvalidKey("the share link is unknown, expired or revoked")
    random_part, mac = shape.groups()
    if mac is not None and not hmac.compare_digest(mac, _share_mac(secret, random_part)):
        raise InvalidKey("the share link is unknown, expired or revoked")


def share_token_hash(token: str) -> str:
    """The stored form of a share token (256 random bits need no slow hash)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_share_token(token: str) -> bool:
    """Whether a bearer token is a share token."""
    return token.startswith(SHARE_PREFIX)


def patient_token_expiry(token: str) -> dt.datetime:
    """When a token :func:`verify_patient_token` accepted stops being valid (its ``exp``)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC)
