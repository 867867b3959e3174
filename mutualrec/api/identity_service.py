"""IdentityService: the region's identity provider vouches for a patient with a token."""

from __future__ import annotations

import datetime as dt
from typing import TypeAlias

import grpc

from mutualrec.api.auth import caller
from mutualrec.api.patients import identity_document
from mutualrec.api.status import abort_with_violations
from mutualrec.identity import InvalidIdentity, patient_key
from mutualrec.runtime import Runtime
from mutualrec.security.audit import touched
from mutualrec.security.patient_tokens import DEFAULT_TTL, MAX_TTL, MIN_TTL, mint_patient_token
from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc
from mutualrec.violations import Violation

Context: TypeAlias = grpc.aio.ServicerContext


class IdentityService(imaging_pb2_grpc.IdentityServiceServicer):  # type: ignore[misc]
    """Mints patient tokens for admin keys (the identity provider's stand-in)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def IssuePatientToken(
        self, request: imaging_pb2.IssuePatientTokenRequest, context: Context
    ) -> imaging_pb2.IssuePatientTokenResponse:
        """A short-lived token reading one patient's own data."""
        caller(self.runtime, context)
        problems = []
        patient = request.patient
        try:
            document = identity_document(patient, "patient.")
        except InvalidIdentity as exc:
            problems.append(Violation(exc.field, str(exc), "INVALID_IDENTITY"))
        ttl = dt.timedelta(seconds=request.ttl_seconds) if request.ttl_seconds else DEFAULT_TTL
        if not MIN_TTL <= ttl <= MAX_TTL:
            problems.append(
                Violation(
                    "ttl_seconds",
                    f"must be between {MIN_TTL.total_seconds():.0f} and "
                    f"{MAX_TTL.total_seconds():.0f} (0 for one hour)",
                    "OUT_OF_RANGE",
                )
            )
        if problems:
            await abort_with_violations(
                context, grpc.StatusCode.INVALID_ARGUMENT, "the token request is invalid", problems
            )
        settings = self.runtime.settings
        key = patient_key(document, settings.patient_key_secret)
        touched(key, f"patient token valid {ttl.total_seconds():.0f} s")
        issued = mint_patient_token(settings.token_secret, key, ttl)
        return imaging_pb2.IssuePatientTokenResponse(
            token=issued.token,
            expire_time=issued.expires_at.isoformat().replace("+00:00", "Z"),
        )
