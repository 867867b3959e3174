"""The EHR's JWTs (CDS Hooks 2.0): which keys register, and what a token must be to verify."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from mutualrec.security.api_keys import InvalidKey
from mutualrec.security.cds_tokens import (
    BadKeys,
    UnknownSigner,
    claimed_issuer,
    parsed_keys,
    public_keys,
    verify,
)

ISSUER = "https://ehr.example.org"
AUDIENCE = "https://region.example.org/cds-services/order-sign"


def _pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _token(
    key: Any, algorithm: str = "ES384", headers: dict[str, Any] | None = None, **claims: Any
) -> str:
    now = dt.datetime.now(dt.UTC)
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int((now + dt.timedelta(minutes=5)).timestamp()),
        "jti": "id-1",
    }
    body.update(claims)
    return jwt.encode(
        {k: v for k, v in body.items() if v is not None}, key, algorithm=algorithm, headers=headers
    )


def test_pem_jwk_and_jwks_register_as_one_jwks() -> None:
    ec_key = ec.generate_private_key(ec.SECP384R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    one_jwk = ECAlgorithm.to_jwk(ec_key.public_key())
    for text in (_pem(ec_key), _pem(rsa_key), one_jwk, json.dumps({"keys": [json.loads(one_jwk)]})):
        document = json.loads(public_keys(text))
        assert len(document["keys"]) == 1
        assert "d" not in document["keys"][0]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not a key", "neither"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "PEM"),
        ('{"keys": "no"}', "keys"),
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "only RSA and EC"),
        (
            RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "private",
        ),
    ],
)
def test_unusable_keys_are_refused(text: str, why: str) -> None:
    with pytest.raises(BadKeys, match=why):
        public_keys(text)


def test_an_ed25519_pem_is_refused() -> None:
    with pytest.raises(BadKeys, match="RSA and EC"):
        public_keys(_pem(ed25519.Ed25519PrivateKey.generate()))


def test_a_signed_token_verifies_and_what_it_must_not_be() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    jwks = public_keys(_pem(key))
    verified = verify(_token(key), parsed_keys(jwks), ISSUER, [AUDIENCE])
    assert (verified.issuer, verified.jti) == (ISSUER, "id-1")
    assert claimed_issuer(_token(key)) == ISSUER

    now = dt.datetime.now(dt.UTC)
    refusals = {
        "algorithm": _token(b"a shared secret of 32 bytes or more!", "HS256"),
        "signature": _token(ec.generate_private_key(ec.SECP384R1())),
        "audience": _token(key, aud="https://elsewhere.example.org"),
        "expired": _token(key, exp=int((now - dt.timedelta(minutes=5)).timestamp())),
        "5 minutes": _token(key, exp=int((now + dt.timedelta(hours=2)).timestamp())),
        "jti": _token(key, jti=None),
        "iat": _token(key, iat=None),
        "kid": _token(key, headers={"kid": "another"}),
    }
    jwks_with_kid = json.loads(jwks)
    jwks_with_kid["keys"][0]["kid"] = "mine"
    for why, token in refusals.items():
        keys = parsed_keys(json.dumps(jwks_with_kid) if why == "kid" else jwks)
        refused = UnknownSigner if why in ("signature", "kid") else InvalidKey
        with pytest.raises(refused, match=why):
            verify(token, keys, ISSUER, [AUDIENCE])


def test_a_token_without_an_issuer_or_not_a_jwt() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(InvalidKey, match="issuer"):
        claimed_issuer(_token(key, iss=None))
    with pytest.raises(InvalidKey, match="not a JWT"):
        claimed_issuer("mrk_abc_def")
