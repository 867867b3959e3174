"""IngestService: hospitals' gateways push imaging studies and lab results.

Thin: messages become the study upload and lab submission services' requests, their results
become messages; a refusal is a domain error the request guard turns into a status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc

from mutualrec.api.auth import caller
from mutualrec.api.lab_messages import FHIR_VERSIONS, submission_response
from mutualrec.api.patients import document_type_name
from mutualrec.api.status import violations_to_proto
from mutualrec.ingest.study_records import StudyOverview
from mutualrec.ingest.study_upload import InstanceOutcome, OutcomeKind
from mutualrec.runtime import Runtime
from mutualrec.services.lab_submission import LabSubmissionRequest
from mutualrec.services.study_upload import Chunk, UploadCounts, UploadHeader
from mutualrec.services.unlinked_studies import LinkRequest, UnlinkedStudies
from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc
from mutualrec.violations import Rejected

Context: TypeAlias = grpc.aio.ServicerContext

_KINDS = {
    OutcomeKind.STORED: ingest_pb2.STORED,
    OutcomeKind.DUPLICATE_IDENTICAL: ingest_pb2.DUPLICATE_IDENTICAL,
    OutcomeKind.NEW_VERSION: ingest_pb2.NEW_VERSION,
    OutcomeKind.REJECTED: ingest_pb2.REJECTED,
}


def _outcome_proto(outcome: InstanceOutcome) -> ingest_pb2.InstanceOutcome:
    return ingest_pb2.InstanceOutcome(
        index=outcome.index,
        source_name=outcome.source_name,
        sop_instance_uid=outcome.sop_instance_uid,
        series_instance_uid=outcome.series_instance_uid,
        outcome=_KINDS[outcome.kind],
        version=outcome.version,
        size_bytes=outcome.size_bytes,
        sha256=outcome.sha256,
        reason=outcome.reason,
        violations=violations_to_proto(outcome.violations),
    )


def _study_proto(study: StudyOverview | None) -> ingest_pb2.StudySummary | None:
    if study is None:
        return None
    return ingest_pb2.StudySummary(
        study_instance_uid=study.study_instance_uid,
        institution_code=study.institution_code,
        accession_number=study.accession_number,
        study_date="" if study.study_date is None else study.study_date.isoformat(),
        study_time=study.study_time.isoformat() if study.study_time else "",
        description=study.description,
        modalities=study.modalities,
        body_parts=study.body_parts,
        contrast=study.contrast,
        performed_item_code=study.performed_item_code,
        series_count=study.series_count,
        instance_count=study.instance_count,
        size_bytes=study.size_bytes,
        not_recognized_reason=study.not_recognized_reason,
    )


def _counts_proto(counts: UploadCounts) -> ingest_pb2.UploadCounts:
    return ingest_pb2.UploadCounts(
        stored=counts.stored,
        duplicate_identical=counts.duplicate_identical,
        new_version=counts.new_version,
        rejected=counts.rejected,
    )


async def _header(
    request_iterator: AsyncIterator[ingest_pb2.UploadStudyRequest],
) -> UploadHeader:
    """The upload's first message, which must be its header."""
    first = await anext(aiter(request_iterator), None)
    if first is None:
        raise Rejected.one(
            "the upload is empty", "header", "an upload starts with its header", "EMPTY_UPLOAD"
        )
    if first.WhichOneof("part") != "header":
        raise Rejected.one(
            "the first message of an upload must be its header",
            "header",
            "missing: the first message was a chunk",
            "MISSING_HEADER",
        )
    header = first.header
    return UploadHeader(
        document_type=document_type_name(header.patient),
        document_number=header.patient.document_number,
        issuing_country=header.patient.issuing_country,
        accession_number=header.accession_number,
        performed_item_code=header.performed_item_code,
    )


async def _chunks(
    request_iterator: AsyncIterator[ingest_pb2.UploadStudyRequest],
) -> AsyncIterator[Chunk]:
    """The messages after the header, each of which must be a chunk."""
    async for message in request_iterator:
        if message.WhichOneof("part") != "chunk":
            raise Rejected.one(
                "an upload has exactly one header, as its first message",
                "header",
                "a second header was sent",
                "UNEXPECTED_HEADER",
            )
        chunk = message.chunk
        yield Chunk(chunk.source_name, chunk.data, chunk.end_of_instance)


class IngestService(ingest_pb2_grpc.IngestServiceServicer):  # type: ignore[misc]  # untyped stub
    """Translates IngestService messages to the study upload and lab submission services."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.unlinked = UnlinkedStudies(runtime.study_uploads)

    async def UploadStudy(
        self,
        request_iterator: AsyncIterator[ingest_pb2.UploadStudyRequest],
        context: Context,
    ) -> ingest_pb2.UploadStudyResponse:
        """Receive a study instance by instance; reply with one outcome per instance."""
        principal = caller(self.runtime, context)
        header = await _header(request_iterator)
        result = await self.runtime.study_uploads.upload(
            header, _chunks(request_iterator), principal
        )
        return ingest_pb2.UploadStudyResponse(
            instances=[_outcome_proto(o) for o in result.outcomes],
            counts=_counts_proto(result.counts),
            study=_study_proto(result.study),
        )

    async def GetStudyStatus(
        self, request: ingest_pb2.GetStudyStatusRequest, context: Context
    ) -> ingest_pb2.GetStudyStatusResponse:
        """The instances held for a study of the calling institution."""
        principal = caller(self.runtime, context)
        status = await self.runtime.run_blocking(
            self.runtime.study_uploads.status, request.study_instance_uid, principal
        )
        return ingest_pb2.GetStudyStatusResponse(
            study=_study_proto(status.study),
            instances=[
                ingest_pb2.HeldInstance(
                    sop_instance_uid=i.sop_instance_uid,
                    series_instance_uid=i.series_instance_uid,
                    version=i.version,
                    size_bytes=i.size_bytes,
                    sha256=i.sha256,
                )
                for i in status.instances
            ],
        )

    async def SubmitObservations(
        self, request: ingest_pb2.SubmitObservationsRequest, context: Context
    ) -> ingest_pb2.SubmitObservationsResponse:
        """Store the lab results of a FHIR document; one outcome per entry."""
        principal = caller(self.runtime, context)
        result = await self.runtime.lab_submissions.submit(
            LabSubmissionRequest(request.body, FHIR_VERSIONS.get(request.fhir_version)),
            principal,
        )
        return submission_response(result)

    async def LinkPatient(
        self, request: ingest_pb2.LinkPatientRequest, context: Context
    ) -> ingest_pb2.LinkPatientResponse:
        """Link the institution's PatientID to a patient; their held studies become theirs."""
        principal = caller(self.runtime, context)
        link = LinkRequest(
            document_type=document_type_name(request.patient),
            document_number=request.patient.document_number,
            issuing_country=request.patient.issuing_country,
            patient_id=request.patient_id,
        )
        result = await self.runtime.run_blocking(self.unlinked.link, link, principal)
        return ingest_pb2.LinkPatientResponse(linked_study_instance_uids=result.linked_study_uids)

    async def ListUnlinkedStudies(
        self, request: ingest_pb2.ListUnlinkedStudiesRequest, context: Context
    ) -> ingest_pb2.ListUnlinkedStudiesResponse:
        """The institution's studies held unlinked, a page at a time."""
        principal = caller(self.runtime, context)
        page = await self.runtime.run_blocking(
            self.unlinked.page, principal, request.page_size, request.page_token
        )
        return ingest_pb2.ListUnlinkedStudiesResponse(
            studies=[
                ingest_pb2.UnlinkedStudy(
                    study_instance_uid=row.study_instance_uid,
                    patient_id=row.local_patient_id,
                    study_date="" if row.study_date is None else row.study_date.isoformat(),
                    description=row.description,
                    modalities=row.modalities,
                    instance_count=row.instance_count,
                    held_at=row.held_at.isoformat(),
                )
                for row in page.studies
            ],
            next_page_token=page.next_page_token,
        )
