"""The authorization matrix: which roles may call each RPC and each HTTP route.

One table for the whole service and every door, enforced before any handler runs (gRPC:
:class:`mutualrec.api.authorization.AuthorizationInterceptor`; HTTP:
:mod:`mutualrec.http.admission`). A method or route missing from it is refused to everyone, so a
new one is closed until someone decides who may call it. HTTP routes are named
``HTTP <METHOD> <path template>``, the path as the HTTP door's router declares it.
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
DOCTOR = "doctor"
"""A recognized study's open link (``open_url``): read-only, the one study a hospital's check
recognized, for that hospital, while the check is recent."""

ROLES = (HOSPITAL, REGULATOR, ADMIN, PATIENT, SHARE, DOCTOR)

_EVERYONE = frozenset(ROLES)
_HOSPITAL = frozenset({HOSPITAL})
_PATIENT = frozenset({PATIENT})
# A hospital opens a study only while a recent check of its recognized that study (the servicer
# answers NOT_FOUND otherwise, as for a study that does not exist).
_STUDY_READERS = frozenset({PATIENT, SHARE, HOSPITAL, DOCTOR})
_SIGNS_IN = frozenset({PATIENT, SHARE, HOSPITAL, REGULATOR, DOCTOR})

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
    # CDS Hooks: an EHR's signed JWT names its institution, which calls as a hospital does
    # over CheckOrder and RecordDecision.
    "HTTP POST /cds-services/{service_id}": _HOSPITAL,
    "HTTP POST /cds-services/{service_id}/feedback": _HOSPITAL,
    # The regulators' dashboard: the same reports as GetSavingsReport and ExportReport.
    "HTTP GET /regulator": frozenset({REGULATOR}),
    "HTTP GET /regulator/report.csv": frozenset({REGULATOR}),
    # Browser sessions: a patient, a doctor's share link, a hospital or regulator signs in
    # (the administrator's key mints tokens and has no pages); who am I.
    "HTTP POST /session": _SIGNS_IN,
    "HTTP GET /session": _SIGNS_IN,
    # The patient's pages, as ListStudies, GetThumbnail, the share-link RPCs and ListAccesses.
    "HTTP GET /": _PATIENT,
    "HTTP GET /studies/{study_uid}/thumbnail": _PATIENT,
    "HTTP GET /shares": _PATIENT,
    "HTTP POST /shares": _PATIENT,
    "HTTP POST /shares/{link_id}/revoke": _PATIENT,
    "HTTP GET /accesses": _PATIENT,
    # STOW-RS: a hospital stores instances as over UploadStudy and C-STORE.
    "HTTP POST /dicomweb/studies": _HOSPITAL,
    "HTTP POST /dicomweb/studies/{study}": _HOSPITAL,
    # DICOMweb reads (QIDO-RS, WADO-RS): who reads which study is ImagingService's rule, so the
    # same readers as GetStudy and DownloadStudy.
    "HTTP GET /dicomweb/studies": _STUDY_READERS,
    "HTTP GET /dicomweb/series": _STUDY_READERS,
    "HTTP GET /dicomweb/instances": _STUDY_READERS,
    "HTTP GET /dicomweb/studies/{study}": _STUDY_READERS,
    "HTTP GET /dicomweb/studies/{study}/series": _STUDY_READERS,
    "HTTP GET /dicomweb/studies/{study}/instances": _STUDY_READERS,
    "HTTP GET /dicomweb/studies/{study}/metadata": _STUDY_READERS,
    "HTTP GET /dicomweb/studies/{study}/series/{series}": _STUDY_READERS,
    "HTTP GET /dicomweb/studies/{study}/series/{series}/instances": _STUDY_READERS,
    "HTTP GET /dicomweb/studies/{study}/series/{series}/metadata": _STUDY_READERS,
    "HTTP GET /dicomweb/studies/{study}/series/{series}/instances/{instance}": _STUDY_READERS,
    "HTTP GET /dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata": (
        _STUDY_READERS
    ),
    "HTTP GET /dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}": (
        _STUDY_READERS
    ),
    "HTTP GET /dicomweb/studies/{study}/series/{series}/instances/{instance}/rendered": (
        _STUDY_READERS
    ),
    "HTTP GET /dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}"
    "/rendered": _STUDY_READERS,
}

# Served without credentials: load balancers probe health, tools list the services.
PUBLIC_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)

# HTTP routes served without credentials: load balancers probe health; the CDS Hooks discovery
# document only lists what the services are (the spec lets an EHR read it before it signs).
# The sign-in and share-link pages, their files and the language toggle are for browsers not
# signed in yet; signing out ends only the caller's own session (both forms carry a CSRF token).
# A page's stylesheet or script names nothing (and a browser fetches it without credentials).
# The viewer's files are the same for everyone and hold no patient data (what it shows comes
# from /dicomweb, which admits its callers).
PUBLIC_ROUTES = frozenset(
    {
        "HTTP GET /healthz",
        "HTTP GET /cds-services",
        "HTTP GET /signin",
        "HTTP GET /open",
        "HTTP GET /static/{name}",
        "HTTP GET /static/regulator/{name}",
        "HTTP POST /session/end",
        "HTTP POST /language",
        "HTTP GET /viewer",
        "HTTP GET /viewer/{path:path}",
    }
)


def http_route(method: str, path: str) -> str:
    """The matrix's name of the HTTP route ``path`` (a template) answering ``method``."""
    return f"HTTP {method} {path}"


def rpc_name(method: str) -> str:
    """``/package.Service/Method`` as the matrix names it."""
    return method.lstrip("/")


def is_public(method: str) -> bool:
    """Whether ``method`` (an RPC or an HTTP route) is served to callers without credentials."""
    name = rpc_name(method)
    return name in PUBLIC_ROUTES or name.split("/", 1)[0] in PUBLIC_SERVICES


def roles_for(method: str) -> frozenset[str]:
    """The roles that may call ``method`` (none for a method the matrix does not name)."""
    return RPC_ROLES.get(rpc_name(method), frozenset())


def refusal(method: str, role: str) -> str:
    """Why ``role`` may not call ``method``, naming who may."""
    allowed = sorted(roles_for(method))
    who = ", ".join(allowed) if allowed else "no role"
    return f"a {role} credential may not call {rpc_name(method)} (allowed: {who})"
