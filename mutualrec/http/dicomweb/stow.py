"""STOW-RS (DICOM PS3.18 10.5): ``POST /dicomweb/studies[/{study}]`` with a
``multipart/related; type="application/dicom"`` body, from hospitals only.

The instances go through the same ingest as UploadStudy and C-STORE
(:class:`mutualrec.services.web_store.WebStore`). The patient is declared as UploadStudy's
PatientIdentity is, in headers (not the URL, which proxies log):

    X-Patient-Identity: RESIDENT_ID_CARD 11010519491231002X      (type, number[, country])
    X-Accession-Number: A123          (optional)
    X-Performed-Item-Code: IMG-CT-CHEST   (optional)

Without ``X-Patient-Identity`` each instance's patient is resolved as C-STORE resolves it.
The answer is PS3.18's store response in DICOM JSON: 200 (all stored), 202 (some failed, or
warnings), 409 (none stored); a malformed request is a problem body (400, 413, 415).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from mutualrec.http.admission import Admission
from mutualrec.http.dicomweb.request_parts import DICOM, dicom_parts
from mutualrec.http.problems import Refusal
from mutualrec.ingest.study_upload import InstanceOutcome, OutcomeKind
from mutualrec.security.api_keys import Principal
from mutualrec.security.limits import limit_key
from mutualrec.services.dicom_store import PATIENT_NOT_IDENTIFIED
from mutualrec.services.study_upload import UploadHeader
from mutualrec.services.web_store import StowResult
from mutualrec.violations import DomainError, Rejected, Violation

DICOM_JSON = "application/dicom+json"
IDENTITY_HEADER = "X-Patient-Identity"
ACCESSION_HEADER = "X-Accession-Number"
ITEM_HEADER = "X-Performed-Item-Code"

# PS3.18 Table 10.5.3-1 / PS3.4 B.2.3 codes, as the C-STORE door answers the same outcomes.
FAILURE_REFUSED = 0xC000  # cannot understand: the instance is not acceptable as sent
FAILURE_STUDY_MISMATCH = 0xA900  # not of the study the request URL names
FAILURE_PROCESSING = 0x0110  # held for another patient or institution: a conflict
FAILURE_PATIENT_UNKNOWN = 0xC001  # no document and no PatientID: C-STORE's answer too
WARNING_COERCED = 0xB000  # held already as sent, or held until its patient is linked
_CONFLICTS = frozenset({"CONFLICT", "OTHER_PATIENT", "SECOND_STUDY", "SECOND_PATIENT"})

# DICOM JSON attribute tags of the store response.
RETRIEVE_URL = "00081190"
FAILED_SOPS = "00081198"
REFERENCED_SOPS = "00081199"
SOP_CLASS = "00081150"
SOP_INSTANCE = "00081155"
FAILURE_REASON = "00081197"
WARNING_REASON = "00081196"


def declared_patient(request: Request) -> UploadHeader | None:
    """The patient the request declares, as UploadStudy's header would; None without
    ``X-Patient-Identity``. Checked by the upload (field names remapped by :func:`_remapped`)."""
    identity = request.headers.get(IDENTITY_HEADER)
    if identity is None:
        return None
    words = identity.split()
    if len(words) not in (2, 3):
        raise Rejected.one(
            f"{IDENTITY_HEADER} is malformed",
            IDENTITY_HEADER,
            "the document type, its number and, for a passport, the issuing country, separated "
            "by spaces: RESIDENT_ID_CARD 11010519491231002X",
            "MALFORMED_IDENTITY",
        )
    return UploadHeader(
        document_type=words[0].upper(),
        document_number=words[1],
        issuing_country=words[2] if len(words) == 3 else "",
        accession_number=request.headers.get(ACCESSION_HEADER, ""),
        performed_item_code=request.headers.get(ITEM_HEADER, ""),
    )


_HEADER_FIELDS = {
    "header.patient.document_type": f"{IDENTITY_HEADER} (document type)",
    "header.patient.document_number": f"{IDENTITY_HEADER} (document number)",
    "header.patient.issuing_country": f"{IDENTITY_HEADER} (issuing country)",
    "header.accession_number": ACCESSION_HEADER,
    "header.performed_item_code": ITEM_HEADER,
}


def _remapped(error: DomainError) -> DomainError:
    """``error`` with UploadStudy's header fields named as this request sent them."""
    fields = [
        Violation(_HEADER_FIELDS.get(v.field, v.field), v.description, v.reason)
        for v in error.violations
    ]
    return type(error)(error.summary, fields)


def boundary_of(request: Request) -> str:
    """The boundary of a ``multipart/related; type="application/dicom"`` body; a 415
    refusal for any other type, a 400 for a multipart type without its boundary."""
    content_type = request.headers.get("content-type", "")
    media_type, _, rest = content_type.partition(";")
    parameters: dict[str, str] = {}
    for parameter in rest.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip():
            parameters[name.strip().lower()] = value.strip().strip('"')
    kind = parameters.get("type", DICOM).lower()
    if media_type.strip().lower() != "multipart/related" or kind != DICOM:
        raise Refusal(
            415,
            f"Content-Type is {content_type[:100] or 'missing'}; send "
            f'multipart/related; type="{DICOM}"; boundary=...',
        )
    boundary = parameters.get("boundary", "")
    if not boundary or len(boundary) > 70:
        raise Rejected.one(
            "the multipart body's boundary is missing",
            "Content-Type",
            'name the boundary: multipart/related; type="application/dicom"; boundary=...',
            "MISSING_BOUNDARY",
        )
    return boundary


def failure_reason(outcome: InstanceOutcome) -> int:
    """The FailureReason of a refused instance."""
    reason = outcome.violations[0].reason if outcome.violations else ""
    if reason == "STUDY_MISMATCH":
        return FAILURE_STUDY_MISMATCH
    if reason == PATIENT_NOT_IDENTIFIED:
        return FAILURE_PATIENT_UNKNOWN
    if reason in _CONFLICTS:
        return FAILURE_PROCESSING
    return FAILURE_REFUSED


def _uid(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def _us(value: int) -> dict[str, Any]:
    return {"vr": "US", "Value": [value]}


def store_response(result: StowResult, studies_url: str) -> tuple[int, dict[str, Any]]:
    """PS3.18's status and DICOM JSON body for ``result``; ``studies_url``: where WADO-RS
    retrieves studies (``.../dicomweb/studies``)."""
    referenced: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    studies: set[str] = set()
    warned = False
    for outcome in result.outcomes:
        item = {
            SOP_CLASS: _uid(outcome.sop_class_uid),
            SOP_INSTANCE: _uid(outcome.sop_instance_uid),
        }
        if outcome.kind is OutcomeKind.REJECTED:
            failed.append({**item, FAILURE_REASON: _us(failure_reason(outcome))})
            continue
        studies.add(outcome.study_instance_uid)
        item[RETRIEVE_URL] = {
            "vr": "UR",
            "Value": [
                f"{studies_url}/{outcome.study_instance_uid}/series/"
                f"{outcome.series_instance_uid}/instances/{outcome.sop_instance_uid}"
            ],
        }
        if outcome.kind is OutcomeKind.DUPLICATE_IDENTICAL or outcome.index in result.held_unlinked:
            item[WARNING_REASON] = _us(WARNING_COERCED)
            warned = True
        referenced.append(item)
    body: dict[str, Any] = {}
    if len(studies) == 1:
        body[RETRIEVE_URL] = {"vr": "UR", "Value": [f"{studies_url}/{next(iter(studies))}"]}
    if failed:
        body[FAILED_SOPS] = {"vr": "SQ", "Value": failed}
    if referenced:
        body[REFERENCED_SOPS] = {"vr": "SQ", "Value": referenced}
    if not referenced:
        return 409, body
    return (202 if failed or warned else 200), body


def stow_routes(admission: Admission) -> list[BaseRoute]:
    """The STOW-RS routes."""
    runtime = admission.runtime
    uploads = runtime.limits.uploads

    async def store(request: Request, principal: Principal | None) -> Response:
        assert principal is not None
        boundary = boundary_of(request)
        declared = declared_patient(request)
        settings = runtime.settings
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > settings.max_stow_bytes:
            raise Refusal(413, f"the body is larger than {settings.max_stow_bytes} bytes")
        study = request.path_params.get("study", "")
        key = limit_key(principal)
        if not uploads.acquire(key):
            raise Refusal(429, f"at most {uploads.limit} uploads at once with this credential", 1.0)
        try:
            parts = dicom_parts(
                request, boundary, settings.max_instance_bytes, settings.max_stow_bytes
            )
            result = await runtime.web_store.store(principal, declared, study, parts)
        except DomainError as error:
            raise _remapped(error) from None
        finally:
            uploads.release(key)
        base = settings.http_public_url or str(request.base_url).rstrip("/")
        status, body = store_response(result, f"{base}/dicomweb/studies")
        return JSONResponse(body, status_code=status, media_type=DICOM_JSON)

    return [
        admission.route("POST", "/dicomweb/studies", store),
        admission.route("POST", "/dicomweb/studies/{study}", store),
    ]
