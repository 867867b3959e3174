"""Institution API keys: issued once, stored only as a hash, checked on every call.

A key reads ``mrk_<key_id>_<secret>``. The key id finds the row; the secret has 256 bits of
entropy, so a plain SHA-256 of it is as safe to store as a slow password hash and costs
microseconds per call instead of the ~100 ms a password KDF would add to every upload.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

PREFIX = "mrk"
_KEY_SHAPE = re.compile(r"^mrk_([a-z0-9]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly made key: ``token`` is shown once, the rest is what the index keeps."""

    key_id: str
    secret_sha256: str
    token: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the role and, for a hospital, its institution."""

    role: str
    institution_id: int | None
    institution_code: str | None
    key_id: str
    # A patient token's patient, or the patient who made a share link.
    patient_key: str | None = None
    # A share link's id and the one study it opens.
    share_link_id: str | None = None
    shared_study_id: int | None = None
    # A study link's check and the one study it opens (role doctor).
    check_id: str | None = None
    checked_study_uid: str | None = None
    # When a key being rotated out stops working (its grace period's end), if it is set to.
    valid_until: dt.datetime | None = None


class InvalidKey(Exception):
    """A missing, malformed, unknown or revoked key; the message is safe to send back."""


def hash_secret(secret: str) -> str:
    """The stored form of a key's secret."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def issue_key() -> IssuedKey:
    """Make a new random key."""
    key_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(16))
    secret = secrets.token_urlsafe(32)
    return IssuedKey(key_id, hash_secret(secret), f"{PREFIX}_{key_id}_{secret}")


def split_token(token: str) -> tuple[str, str]:
    """(key_id, secret) of a presented key; raises :class:`InvalidKey` if it is malformed."""
    match = _KEY_SHAPE.match(token)
    if not match:
        raise InvalidKey("the API key is malformed")
    return match.group(1), match.group(2)


def secret_matches(secret: str, stored_sha256: str) -> bool:
    """Constant-time check of a presented secret against the stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_sha256)


def has_bearer(metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
    """Whether the call carries ``authorization`` metadata at all."""
    return any(name.lower() == "authorization" for name, _ in metadata or ())


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    """The token of the ``authorization: Bearer ...`` metadata entry."""
    for name, value in metadata or ():
        if name.lower() == "authorization":
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise InvalidKey("authorization metadata must read 'Bearer <key>'")
            return token.strip()
    raise InvalidKey("no credentials: send 'authorization: Bearer <key>' metadata")
