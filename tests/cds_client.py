"""A CDS Hooks client for tests, as an EHR is one: its own signing key (ES384), JWTs as the
CDS Hooks 2.0 specification describes them, hook requests shaped like the specification's
examples, and their JSON schemas (tests/fixtures/cds_hooks)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from mutualrec.services.cds_clients import CdsClients
from tests.conftest import RunningServer

SCHEMAS = json.loads(
    (Path(__file__).parent / "fixtures" / "cds_hooks" / "cds_hooks_2_0.schema.json").read_text()
)
RESIDENT_ID_SYSTEM = "https://fhir.mutualrec.org/sid/resident-id-card"
LOINC = "http://loinc.org"


def validate(instance: Any, definition: str) -> None:
    """Fail unless ``instance`` is a valid ``definition`` of the CDS Hooks 2.0 schemas."""
    schema = {**SCHEMAS, "$ref": f"#/$defs/{definition}"}
    jsonschema.validate(
        instance, schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@dataclass
class Ehr:
    """An EHR registered (or not) for an institution, calling one server."""

    server: RunningServer
    issuer: str
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    kid: str = "ehr-key-1"

    @property
    def base(self) -> str:
        assert self.server.http_url is not None
        return self.server.http_url

    def jwks(self) -> str:
        public = json.loads(ECAlgorithm.to_jwk(self.key.public_key()))
        public.update(kid=self.kid, use="sig", alg="ES384")
        return json.dumps({"keys": [public]})

    def public_pem(self) -> str:
        return (
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def register(self, institution: str) -> None:
        CdsClients(self.server.runtime.sessions).add(institution, self.issuer, self.jwks())

    def token(self, audience: str, **claims: Any) -> str:
        """A JWT as CDS Hooks 2.0 says an EHR signs one; ``claims`` override its claims."""
        now = dt.datetime.now(dt.UTC)
        body: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "client-id-of-the-ehr",
            "aud": audience,
            "exp": int((now + dt.timedelta(minutes=5)).timestamp()),
            "iat": int(now.timestamp()),
            "jti": str(uuid.uuid4()),
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(
            body, self.key, algorithm="ES384", headers={"kid": self.kid, "typ": "JWT"}
        )

    def post(
        self,
        path: str,
        body: Any,
        token: str | None = None,
        language: str = "zh-CN",
        **kwargs: Any,
    ) -> httpx.Response:
        url = f"{self.base}{path}"
        headers = {
            "Authorization": f"Bearer {token or self.token(url)}",
            "Accept-Language": language,
        }
        if isinstance(body, (bytes, str)):
            headers["Content-Type"] = "application/json"
            return httpx.post(url, content=body, headers=headers, timeout=30, **kwargs)
        return httpx.post(url, json=body, headers=headers, timeout=30, **kwargs)


def service_request(resource_id: str, *codings: tuple[str, str]) -> dict[str, Any]:
    """A draft ServiceRequest as the specification's examples show one."""
    return {
        "resource": {
            "resourceType": "ServiceRequest",
            "id": resource_id,
            "status": "draft",
            "intent": "order",
            "code": {"coding": [{"system": s, "code": c} for s, c in codings]},
            "subject": {"reference": "Patient/example"},
        }
    }


def hook_request(
    hook: str,
    orders: list[dict[str, Any]],
    patient_number: str,
    selections: list[str] | None = None,
) -> dict[str, Any]:
    """An order-select or order-sign request shaped like the specification's examples."""
    context: dict[str, Any] = {
        "userId": "PractitionerRole/A2340113",
        "patientId": "example",
        "encounterId": "89284",
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": orders},
    }
    if hook == "order-select":
        context["selections"] = (
            selections
            if selections is not None
            else [f"ServiceRequest/{o['resource']['id']}" for o in orders]
        )
    return {
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://ehr.example.org/fhir",
        "hook": hook,
        "context": context,
        "prefetch": {
            "patient": {
                "resourceType": "Patient",
                "id": "example",
                "identifier": [{"system": RESIDENT_ID_SYSTEM, "value": patient_number}],
            }
        },
    }
