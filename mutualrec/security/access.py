"""The authorization matrix: which roles may call each RPC.

One table for the whole service, enforced before any servicer runs
(:class:`mutualrec.api.authorization.AuthorizationInterceptor`). A method missing from it is
refused to everyone, so a new RPC is closed until someone decides who may call it.
"""

from __future__ import annotations

from collections.abc import Mapping

HOSPITAL = "hospital"
"""An institution's API key: ingests as itself, checks orders, records decisions."""
REGULATOR = "regulator"
"""The health commission's API key: statistics, never a patient's data."""
ADMIN = "admin"
"""The identity provider's stand-in: mints patient tokens."""
PATIENT = "patient"
"""A patient token: the patient's own imaging history and share links."""
SHARE = "share"
"""A share link: read-only, one study."""

ROLES = (HOSPITAL, REGULATOR, ADMIN, PATIENT, SHARE)

_EVERYONE = frozenset(ROLES)
_HOSPITAL = frozenset({HOSPITAL})
_PATIENT = frozenset({PATIENT})
# A hospital opens a study only while a recent check of its recognized that study (the servicer
# answers NOT_FOUND otherwise, as for a study that does not exist).
_STUDY_READERS = frozenset({PATIENT, SHARE, HOSPITAL})

RPC_ROLES: Mapping[str, frozenset[str]] = {
    "mutualrec.v1.CatalogService/ListItems": _EVERYONE,
    "mutualrec.v1.CatalogService/GetItem": _EVERYONE,
    "mutualrec.v1.IngestService/UploadStudy": _HOSPITAL,
    "mutualrec.v1.IngestService/GetStudyStatus": _HOSPITAL,
    "mutualrec.v1.IngestService/SubmitObservations": _HOSPITAL,
    "mutualrec.v1.IngestService/LinkPatient": _HOSPITAL,
    "mutualrec.v1.IngestService/ListUnlinkedStudies": _HOSPITAL,
    "mutualrec.v1.RecognitionService/CheckOrder": _HOSPITAL,
    "mutualrec.v1.RecognitionService/RecordDecision": _HOSPITAL,
    "mutualrec.v1.StatisticsService/GetSavingsReport": frozenset({REGULATOR}),
    "mutualrec.v1.StatisticsService/ExportReport": frozenset({REGULATOR}),
    "mutualrec.v1.ImagingService/ListStudies": _PATIENT,
    "mutualrec.v1.ImagingService/GetStudy": _STUDY_READERS,
    "mutualrec.v1.ImagingService/GetThumbnail": _STUDY_READERS,
    "mutualrec.v1.ImagingService/DownloadStudy": _STUDY_READERS,
    "mutualrec.v1.ImagingService/CreateShareLink": _PATIENT,
    "mutualrec.v1.ImagingService/ListShareLinks": _PATIENT,
    "mutualrec.v1.ImagingService/RevokeShareLink": _PATIENT,
    "mutualrec.v1.ImagingService/ListAccesses": _PATIENT,
    "mutualrec.v1.IdentityService/IssuePatientToken": frozenset({ADMIN}),
}

# Served without credentials: load balancers probe health, tools list the services.
PUBLIC_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


def rpc_name(method: str) -> str:
    """``/package.Service/Method`` as the matrix names it."""
    return method.lstrip("/")


def is_public(method: str) -> bool:
    """Whether ``method`` is served to callers without credentials."""
    return rpc_name(method).split("/", 1)[0] in PUBLIC_SERVICES


def roles_for(method: str) -> frozenset[str]:
    """The roles that may call ``method`` (none for a method the matrix does not name)."""
    return RPC_ROLES.get(rpc_name(method), frozenset())


def refusal(method: str, role: str) -> str:
    """Why ``role`` may not call ``method``, naming who may."""
    allowed = sorted(roles_for(method))
    who = ", ".join(allowed) if allowed else "no role"
    return f"a {role} credential may not call {rpc_name(method)} (allowed: {who})"
