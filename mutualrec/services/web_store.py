"""STOW-RS: a hospital stores instances over DICOMweb, one HTTP request of multipart parts.

The same path as the other doors: with a declared patient (the request's identity header) the
request is an UploadStudy (:meth:`StudyUploads.upload`), instance for instance; without one,
each instance's patient is resolved as C-STORE resolves it (:class:`DicomAssociation`:
OtherPatientIDsSequence, an earlier link of the hospital's PatientID, else held unlinked).
Either way an instance's outcome is known only once it is durable and indexed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from mutualrec.ingest.study_upload import InstanceOutcome, PendingInstance
from mutualrec.security.api_keys import Principal
from mutualrec.services.dicom_peers import DicomCaller
from mutualrec.services.dicom_store import DicomStorage
from mutualrec.services.study_upload import Chunk, StudyUploads, UploadHeader
from mutualrec.violations import Rejected

# How the C-STORE side of the path names this door in the patients' access trail.
STOW_CALLER = "STOW-RS"


@dataclass(frozen=True, slots=True)
class StowResult:
    """Every instance's outcome in the order sent, and which of them are held unlinked (their
    patient is not known yet)."""

    outcomes: list[InstanceOutcome]
    held_unlinked: frozenset[int]


class WebStore:
    """The STOW-RS use case over the study upload service, built once per server."""

    def __init__(self, uploads: StudyUploads, storage: DicomStorage) -> None:
        self._uploads = uploads
        self._storage = storage

    async def store(
        self,
        principal: Principal,
        declared: UploadHeader | None,
        study_instance_uid: str,
        chunks: AsyncIterator[Chunk],
    ) -> StowResult:
        """Store what ``chunks`` carry; ``declared``: the patient the sender declared (None:
        resolved per instance). ``chunks`` may raise a :class:`DomainError` (a malformed body):
        instances received whole before it are kept all the same."""
        if declared is not None:
            header = UploadHeader(
                document_type=declared.document_type,
                document_number=declared.document_number,
                issuing_country=declared.issuing_country,
                accession_number=declared.accession_number,
                performed_item_code=declared.performed_item_code,
                study_instance_uid=study_instance_uid,
            )
            result = await self._uploads.upload(header, chunks, principal)
            return StowResult(result.outcomes, frozenset())
        return await self._resolved_per_instance(principal, study_instance_uid, chunks)

    async def _resolved_per_instance(
        self, principal: Principal, study_instance_uid: str, chunks: AsyncIterator[Chunk]
    ) -> StowResult:
        assert principal.institution_id is not None  # only institutions are authorized to store
        caller = DicomCaller(
            principal.institution_id, principal.institution_code or "", STOW_CALLER
        )
        association = self._storage.open(caller, study_instance_uid)
        max_chunk = self._uploads.limits.max_chunk_bytes
        outcomes: list[InstanceOutcome] = []
        unlinked: set[int] = set()
        pending: PendingInstance | None = None
        try:
            async for chunk in chunks:
                if pending is None:
                    pending = association.begin_instance(chunk.source_name)
                pending.write(chunk.data, max_chunk)
                if chunk.end_of_instance:
                    finished, pending = pending, None
                    # Its own thread: store_pending waits on the upload service's pools, so it
                    # must not hold one of their threads while it waits (as C-STORE's threads).
                    stored = await asyncio.to_thread(association.store_pending, finished)
                    outcomes.append(stored.outcome)
                    if stored.held_unlinked:
                        unlinked.add(stored.outcome.index)
        finally:
            if pending is not None:
                pending.close()
        if not outcomes:
            raise Rejected.one(
                "the request contains no instance",
                "body",
                "send each instance as a part of type application/dicom",
                "EMPTY_UPLOAD",
            )
        return StowResult(outcomes, frozenset(unlinked))
