"""The JWTs an EHR signs for CDS Hooks (CDS Hooks 2.0, "Trusting CDS Clients"): which keys an
administrator may register, and verifying a token against them.

The EHR signs with its private key (RS* / ES* / PS*; never a shared secret, never ``none``);
the token names the EHR (``iss``), the endpoint called (``aud``), its lifetime (``iat``,
``exp``, at most five minutes) and a unique id (``jti``) that the caller records against
replays.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from mutualrec.security.api_keys import InvalidKey

# Asymmetric only: the EHR's private key never leaves it, we hold its public keys.
ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512")
# The spec: exp "SHALL be no more than 5 minutes in the future".
MAX_LIFETIME = dt.timedelta(minutes=5)
# Clocks of EHRs drift a little.
LEEWAY = dt.timedelta(seconds=60)
MAX_TOKEN_CHARS = 16_384


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """What a verified token says."""

    issuer: str
    jti: str
    expires_at: dt.datetime


class BadKeys(ValueError):
    """Key material that is no usable set of public keys."""


class UnknownSigner(InvalidKey):
    """No key given signed the token: none has its ``kid``, or none verifies its signature.
    Keys held in memory may be older than the issuer's registration: read them again."""


def parsed_keys(jwks: str) -> tuple[jwt.PyJWK, ...]:
    """The keys of a JWKS :func:`public_keys` made, ready to verify with (parsing them costs
    more than a signature check: servers keep them)."""
    return tuple(jwt.PyJWKSet.from_json(jwks).keys)


def public_keys(text: str) -> str:
    """``text`` (a JWKS, one JWK, or a PEM public key) as a JWKS JSON document of public keys;
    raises :class:`BadKeys`."""
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(stripped.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise BadKeys(f"not a PEM public key ({exc})") from None
        if isinstance(key, rsa.RSAPublicKey):
            jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key))
        elif isinstance(key, ec.EllipticCurvePublicKey):
            jwk = json.loads(ECAlgorithm.to_jwk(key))
        else:
            raise BadKeys("only RSA and EC public keys sign CDS Hooks JWTs")
        document: dict[str, Any] = {"keys": [jwk]}
    else:
        try:
            parsed = json.loads(stripped)
        except ValueError:
            raise BadKeys("neither a PEM public key nor JSON (a JWKS)") from None
        if isinstance(parsed, dict) and "kty" in parsed:
            parsed = {"keys": [parsed]}
        if not isinstance(parsed, dict) or not isinstance(parsed.get("keys"), list):
            raise BadKeys('a JWKS is an object with a "keys" list')
        document = {"keys": parsed["keys"]}
    for key_data in document["keys"]:
        if not isinstance(key_data, dict):
            raise BadKeys("every key of a JWKS is an object")
        if key_data.get("kty") not in ("RSA", "EC"):
            raise BadKeys(f"key type {key_data.get('kty')!r}: only RSA and EC keys")
        if "d" in key_data:
            raise BadKeys("a private key was given: register the EHR's public key only")
    try:
        jwt.PyJWKSet.from_dict(document)
    except jwt.exceptions.PyJWTError as exc:
        raise BadKeys(f"no usable key ({exc})") from None
    return json.dumps(document, sort_keys=True)


def claimed_issuer(token: str) -> str:
    """The ``iss`` a token claims, read before its signature is checked (to find its keys);
    raises :class:`InvalidKey`."""
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidKey("the token is too long")
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.exceptions.PyJWTError:
        raise InvalidKey("the bearer token is not a JWT") from None
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise InvalidKey("the token names no issuer (iss)")
    return issuer


def verify(
    token: str, keys: Sequence[jwt.PyJWK], issuer: str, audiences: Sequence[str]
) -> VerifiedToken:
    """The claims of ``token`` once its signature (by one of ``keys``), issuer, audience (one
    of ``audiences``: the endpoint called) and lifetime (against the clock now, as PyJWT reads
    it) are checked; raises :class:`InvalidKey` saying what is wrong (:class:`UnknownSigner`
    when no key signed it)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.exceptions.PyJWTError:
        raise InvalidKey("the bearer token is not a JWT") from None
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise InvalidKey(f"the token's algorithm {str(algorithm)[:20]!r} is not accepted")
    kid = header.get("kid")
    candidates = [k for k in keys if kid is None or k.key_id in (None, kid)]
    if not candidates:
        raise UnknownSigner("no registered key of this issuer has the token's kid")
    claims: dict[str, Any] | None = None
    for candidate in candidates:
        try:
            claims = jwt.decode(
                token,
                candidate.key,
                algorithms=[algorithm],
                audience=list(audiences),
                issuer=issuer,
                leeway=LEEWAY,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
            break
        except jwt.exceptions.InvalidSignatureError:
            continue
        except jwt.exceptions.ExpiredSignatureError:
            raise InvalidKey("the token has expired") from None
        except jwt.exceptions.InvalidAudienceError:
            raise InvalidKey(f"the token's audience (aud) is not {audiences[0]}") from None
        except jwt.exceptions.PyJWTError as exc:
            raise InvalidKey(f"the token is not valid: {exc}") from None
    if claims is None:
        raise UnknownSigner("the token's signature does not verify with the issuer's keys")
    expires_at = dt.datetime.fromtimestamp(claims["exp"], dt.UTC)
    if expires_at > dt.datetime.now(dt.UTC) + MAX_LIFETIME + LEEWAY:
        raise InvalidKey("the token expires more than 5 minutes from now")
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise InvalidKey("the token's id (jti) is not a string of 1 to 255 characters")
    return VerifiedToken(issuer, jti, expires_at)
