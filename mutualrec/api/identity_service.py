"""IdentityService: the region's identity provider vouches for a patient with a token."""

from __future__ import annotations

from typing import TypeAlias

import grpc

from mutualrec.api.auth import caller
from mutualrec.api.patients import document_type_name
from mutualrec.runtime import Runtime
from mutualrec.services.identity import TokenRequest
from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc

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
        patient = request.patient
        # Pure computation (an HMAC and a signature): on the event loop, no worker needed.
        issued = self.runtime.patient_tokens.issue(
            TokenRequest(
                document_type=document_type_name(patient),
                document_number=patient.document_number,
                issuing_country=patient.issuing_country,
                ttl_seconds=request.ttl_seconds,
            )
        )
        return imaging_pb2.IssuePatientTokenResponse(
            token=issued.token,
            expire_time=issued.expires_at.isoformat().replace("+00:00", "Z"),
        )
