"""Studies held unlinked: what a PACS sent over C-STORE for a PatientID its institution had not
linked to a patient. The hospital lists them and links a PatientID to the patient's identity
document (LinkPatient); its held studies then become the patient's, as if uploaded with that
document: in their history and recognized, and later C-STOREs of that PatientID resolve to them.
"""

from __future__ import annotations

from dataclasses import dataclass

from mutualrec.identity import InvalidIdentity, parse_identity, patient_key
from mutualrec.security.api_keys import Principal
from mutualrec.security.audit import touched
from mutualrec.services.outage import unavailable_on_outage
from mutualrec.services.result_indexing import adopt_unlinked
from mutualrec.services.study_upload import StudyUploads
from mutualrec.storage import imaging_index as index
from mutualrec.violations import Conflict, Rejected, Violation

# Listing pages: 0 asks for the default.
DEFAULT_PAGE = 50
MAX_PAGE = 500
# What PatientID (0010,0020, VR LO) holds.
PATIENT_ID_MAX = 64


@dataclass(frozen=True, slots=True)
class LinkRequest:
    """A hospital's word that its PatientID names the holder of an identity document."""

    document_type: str
    document_number: str
    issuing_country: str
    patient_id: str


@dataclass(frozen=True, slots=True)
class LinkResult:
    """The studies that were held unlinked under the PatientID and are the patient's now."""

    linked_study_uids: list[str]


@dataclass(frozen=True, slots=True)
class UnlinkedPage:
    """A page of the institution's held studies, newest held first."""

    studies: list[index.UnlinkedStudyRow]
    next_page_token: str


class UnlinkedStudies:
    """Listing and linking the calling institution's unlinked studies (blocking calls)."""

    def __init__(self, uploads: StudyUploads) -> None:
        self._uploads = uploads

    def link(self, request: LinkRequest, principal: Principal) -> LinkResult:
        """Link the institution's PatientID to the document's holder and give them every study
        held unlinked under it. :class:`Rejected` for bad input, :class:`Conflict` when the
        PatientID is linked to another patient already."""
        institution_id = principal.institution_id
        assert institution_id is not None  # only hospitals are authorized to link
        problems: list[Violation] = []
        document = None
        try:
            document = parse_identity(
                request.document_type,
                request.document_number,
                request.issuing_country,
                field_prefix="patient.",
            )
        except InvalidIdentity as bad:
            problems.append(Violation(bad.field, str(bad), "INVALID_IDENTITY"))
        local_id = request.patient_id.strip()
        if not local_id:
            problems.append(
                Violation("patient_id", "the hospital's PatientID is required", "MISSING_FIELD")
            )
        elif len(local_id) > PATIENT_ID_MAX or "\\" in local_id or not local_id.isprintable():
            problems.append(
                Violation(
                    "patient_id",
                    f"a PatientID has at most {PATIENT_ID_MAX} printable characters, no '\\'",
                    "MALFORMED_VALUE",
                )
            )
        if problems or document is None:
            raise Rejected("the link request is invalid", problems)
        key = patient_key(document, self._uploads.limits.patient_key_secret)
        touched(key, f"PatientID {local_id!r} linked")
        catalog = self._uploads.indexing.catalog()
        with (
            unavailable_on_outage("storage is unavailable", "nothing was linked: retry"),
            self._uploads.sessions.begin() as session,
        ):
            try:
                index.link_patient(session, institution_id, local_id, key)
            except index.IndexConflict:
                raise Conflict(
                    f"PatientID {local_id!r} is linked to another patient at this institution"
                ) from None
            adopted = adopt_unlinked(session, institution_id, local_id, key, catalog)
        return LinkResult(adopted)

    def page(self, principal: Principal, page_size: int, page_token: str) -> UnlinkedPage:
        """The institution's studies held unlinked, ``page_size`` at a time."""
        institution_id = principal.institution_id
        assert institution_id is not None  # only hospitals are authorized to list
        problems: list[Violation] = []
        size = page_size or DEFAULT_PAGE
        if not 1 <= size <= MAX_PAGE:
            problems.append(
                Violation("page_size", f"1 to {MAX_PAGE} (0 for {DEFAULT_PAGE})", "OUT_OF_RANGE")
            )
        after: int | None = None
        if page_token:
            # At most 18 digits: any such number fits the index's 64-bit study ids.
            if not page_token.isascii() or not page_token.isdigit() or len(page_token) > 18:
                problems.append(
                    Violation(
                        "page_token", "not a token a previous page gave", "INVALID_PAGE_TOKEN"
                    )
                )
            else:
                after = int(page_token)
        if problems:
            raise Rejected("the request is invalid", problems)
        with (
            unavailable_on_outage("storage is unavailable", "retry"),
            self._uploads.sessions() as session,
        ):
            rows = index.unlinked_studies(session, institution_id, after, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        return UnlinkedPage(rows, str(rows[-1].study_id) if more else "")
