"""IngestService: hospitals' gateways push imaging studies and lab results."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections import Counter
from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mutualrec.api.auth import caller
from mutualrec.api.lab_messages import FHIR_VERSIONS, submission_response
from mutualrec.api.patients import document_type_name
from mutualrec.api.status import abort, abort_with_violations, violations_to_proto
from mutualrec.ingest.dicom_limits import HeaderLimits
from mutualrec.ingest.lab_ingest import LabSubmission, Refusal, SubmissionRefused, prepare_batch
from mutualrec.ingest.study_upload import (
    InstanceOutcome,
    OutcomeKind,
    PendingInstance,
    StudyUpload,
    parse_declaration,
)
from mutualrec.matching.catalog import Catalog
from mutualrec.recognition.result_items import index_study, lab_detail_mapper, lab_item_mapper
from mutualrec.runtime import Runtime
from mutualrec.security.audit import touched
from mutualrec.services.outage import is_outage
from mutualrec.storage import imaging_index as index
from mutualrec.storage.imaging_index import StudyOverview
from mutualrec.storage.objects import ObjectStoreError
from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc
from mutualrec.violations import Rejected, Violation

Context: TypeAlias = grpc.aio.ServicerContext
# Instances received whole and waiting to be stored, per upload: bounds memory to a few
# instances' buffers while letting reception run ahead of storage.
PIPELINE_DEPTH = 4
# Failures of the object store or the index: the call ends UNAVAILABLE, the server goes on.
STORAGE_FAILURES = (ObjectStoreError, OSError, SQLAlchemyError)

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


def _counts(outcomes: list[InstanceOutcome]) -> ingest_pb2.UploadCounts:
    def count(kind: OutcomeKind) -> int:
        return sum(1 for o in outcomes if o.kind is kind)

    return ingest_pb2.UploadCounts(
        stored=count(OutcomeKind.STORED),
        duplicate_identical=count(OutcomeKind.DUPLICATE_IDENTICAL),
        new_version=count(OutcomeKind.NEW_VERSION),
        rejected=count(OutcomeKind.REJECTED),
    )


def _index_for_recognition(catalog: Catalog, session: Session, study_instance_uid: str) -> None:
    """Bring the study's recognition rows up to date, in the transaction adding instances."""
    overview = index.study_overview(session, study_instance_uid)
    if overview is not None:
        index_study(session, overview, catalog)


class IngestService(ingest_pb2_grpc.IngestServiceServicer):  # type: ignore[misc]  # untyped stub
    """Translates the streaming protocol to :class:`StudyUpload` and back."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def UploadStudy(
        self,
        request_iterator: AsyncIterator[ingest_pb2.UploadStudyRequest],
        context: Context,
    ) -> ingest_pb2.UploadStudyResponse:
        """Receive a study instance by instance; reply with one outcome per instance."""
        principal = caller(self.runtime, context)
        assert principal.institution_id is not None
        upload = await self._start(request_iterator, context, principal.institution_id)
        touched(upload.patient_key, "upload of imaging study")
        # Receiving and storing overlap: while a worker thread validates, writes and indexes
        # instance N, this coroutine receives N+1. The bounded queue is the backpressure that
        # keeps memory flat however large the study.
        ready: asyncio.Queue[PendingInstance | None] = asyncio.Queue(maxsize=PIPELINE_DEPTH)
        storing = asyncio.create_task(self._store_instances(upload, ready))
        try:
            try:
                await self._receive(request_iterator, context, upload, ready, storing)
            finally:
                # Whatever ended the stream, the instances received whole are stored and indexed
                # before the call ends; shielded so a client's cancel cannot interrupt a commit.
                await asyncio.shield(self._finish_storing(ready, storing))
        except STORAGE_FAILURES as failure:
            if not is_outage(failure):
                raise
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"storage is unavailable ({failure.__class__.__name__}); instances acknowledged "
                "by GetStudyStatus are kept, send the rest again later",
            )
        if not upload.outcomes:
            await abort_with_violations(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "the upload contains no instance",
                [
                    Violation(
                        "chunk", "send each instance as chunks after the header", "EMPTY_UPLOAD"
                    )
                ],
            )
        overview = await self.runtime.run_blocking(upload.overview)
        counts = _counts(upload.outcomes)
        # The declared patient's trail says what was kept under their name: an upload refused
        # (another patient's study, say) is not an upload of theirs.
        touched(
            upload.patient_key,
            f"{counts.stored + counts.new_version} instances stored, {counts.rejected} rejected",
        )
        return ingest_pb2.UploadStudyResponse(
            instances=[_outcome_proto(o) for o in upload.outcomes],
            counts=counts,
            study=_study_proto(overview),
        )

    async def _receive(
        self,
        request_iterator: AsyncIterator[ingest_pb2.UploadStudyRequest],
        context: Context,
        upload: StudyUpload,
        ready: asyncio.Queue[PendingInstance | None],
        storing: asyncio.Task[None],
    ) -> None:
        """Reassemble instances from chunks and hand each complete one to the storing task."""
        pending: PendingInstance | None = None
        max_chunk = self.runtime.settings.max_chunk_bytes
        try:
            async for message in request_iterator:
                if storing.done():
                    break  # storage failed; the caller reports it
                if message.WhichOneof("part") != "chunk":
                    await abort_with_violations(
                        context,
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "an upload has exactly one header, as its first message",
                        [Violation("header", "a second header was sent", "UNEXPECTED_HEADER")],
                    )
                chunk = message.chunk
                if pending is None:
                    pending = upload.begin_instance(chunk.source_name)
                pending.write(chunk.data, max_chunk)
                if chunk.end_of_instance:
                    finished, pending = pending, None
                    await ready.put(finished)
        except BaseException:
            # Cancelled or aborted: the partial instance is dropped, never stored.
            if pending is not None:
                pending.close()
            raise
        if pending is not None:
            upload.abandon(
                pending,
                f"the stream ended after {pending.size} bytes of this instance, before a chunk "
                "with end_of_instance",
            )

    async def _store_instances(
        self, upload: StudyUpload, ready: asyncio.Queue[PendingInstance | None]
    ) -> None:
        """Validate and store instances in arrival order; commit when nothing else is ready.

        After a storage failure the rest of the queue is only drained (so the receiver never
        blocks on a full queue) and the failure is raised at the end.
        """
        failure: BaseException | None = None
        while (pending := await ready.get()) is not None:
            if failure is not None:
                pending.close()
                continue
            try:
                header = await self.runtime.run_header(upload.read, pending)
                if header is not None:
                    await self.runtime.run_blocking(upload.finish, pending, header)
                if ready.empty() or upload.batch_full:
                    await self.runtime.run_blocking(upload.commit)
            except STORAGE_FAILURES as exc:
                failure = exc
        if failure is not None:
            raise failure
        await self.runtime.run_blocking(upload.commit)

    @staticmethod
    async def _finish_storing(
        ready: asyncio.Queue[PendingInstance | None], storing: asyncio.Task[None]
    ) -> None:
        if not storing.done():
            await ready.put(None)
        await storing

    async def _start(
        self,
        request_iterator: AsyncIterator[ingest_pb2.UploadStudyRequest],
        context: Context,
        institution_id: int,
    ) -> StudyUpload:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            await abort_with_violations(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "the upload is empty",
                [Violation("header", "an upload starts with its header", "EMPTY_UPLOAD")],
            )
        if first.WhichOneof("part") != "header":
            await abort_with_violations(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "the first message of an upload must be its header",
                [Violation("header", "missing: the first message was a chunk", "MISSING_HEADER")],
            )
        header = first.header
        try:
            declaration = parse_declaration(
                document_type_name(header.patient),
                header.patient.document_number,
                header.patient.issuing_country,
                header.accession_number,
                header.performed_item_code,
            )
        except Rejected as rejection:
            await abort_with_violations(
                context, grpc.StatusCode.INVALID_ARGUMENT, rejection.summary, rejection.violations
            )
        settings = self.runtime.settings
        # Read now, not inside a batch's transaction: on SQLite a second connection would wait
        # for the write lock that very transaction holds.
        reference = await self.runtime.run_blocking(self.runtime.reference.data)
        return StudyUpload(
            store=self.runtime.store,
            sessions=self.runtime.sessions,
            patient_key_secret=settings.patient_key_secret,
            institution_id=institution_id,
            declaration=declaration,
            max_instance_bytes=settings.max_instance_bytes,
            on_commit=functools.partial(_index_for_recognition, reference.catalog),
            header_limits=HeaderLimits(
                max_inflated_bytes=settings.max_inflated_bytes,
                max_inflate_ratio=settings.max_inflate_ratio,
                max_elements=settings.max_dicom_elements,
            ),
        )

    async def GetStudyStatus(
        self, request: ingest_pb2.GetStudyStatusRequest, context: Context
    ) -> ingest_pb2.GetStudyStatusResponse:
        """The instances held for a study of the calling institution."""
        principal = caller(self.runtime, context)
        uid = request.study_instance_uid.strip()
        if not uid:
            await abort_with_violations(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "study_instance_uid is required",
                [Violation("study_instance_uid", "missing", "MISSING_FIELD")],
            )
        overview, instances = await self.runtime.run_blocking(
            self._study_status, uid, principal.institution_id
        )
        if overview is None:
            # Another institution's study answers the same as a missing one: existence of a
            # patient's study is not disclosed.
            await abort(context, grpc.StatusCode.NOT_FOUND, f"no study {uid} of this institution")
        return ingest_pb2.GetStudyStatusResponse(
            study=_study_proto(overview),
            instances=[
                ingest_pb2.HeldInstance(
                    sop_instance_uid=i.sop_instance_uid,
                    series_instance_uid=i.series_instance_uid,
                    version=i.version,
                    size_bytes=i.size_bytes,
                    sha256=i.sha256,
                )
                for i in instances
            ],
        )

    def _study_status(
        self, uid: str, institution_id: int | None
    ) -> tuple[StudyOverview | None, list[index.CurrentInstance]]:
        with self.runtime.sessions() as session:
            if index.study_owner(session, uid) != institution_id:
                return None, []
            return index.study_overview(session, uid), index.current_instances(session, uid)

    async def SubmitObservations(
        self, request: ingest_pb2.SubmitObservationsRequest, context: Context
    ) -> ingest_pb2.SubmitObservationsResponse:
        """Store the lab results of a FHIR document; one outcome per entry."""
        principal = caller(self.runtime, context)
        assert principal.institution_id is not None
        # The cut-off for "in the future" is when the region received the document.
        received_at = dt.datetime.now(dt.UTC)
        limit = self.runtime.settings.max_fhir_bytes
        if len(request.body) > limit:
            await abort_with_violations(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the document has {len(request.body)} bytes, more than {limit}",
                [
                    Violation(
                        "body",
                        f"at most {limit} bytes; split the results into several bundles",
                        "DOCUMENT_TOO_LARGE",
                    )
                ],
            )
        if request.fhir_version not in FHIR_VERSIONS:
            await abort_with_violations(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "unknown FHIR version",
                [Violation("fhir_version", "use FHIR_R4 or FHIR_R5", "UNKNOWN_FHIR_VERSION")],
            )
        prepared = await self.runtime.run_cpu(
            prepare_batch,
            request.body,
            FHIR_VERSIONS[request.fhir_version],
            received_at,
            self.runtime.settings.patient_key_secret,
            clock_skew=dt.timedelta(seconds=self.runtime.settings.clock_skew_seconds),
        )
        if isinstance(prepared, Refusal):
            await abort_with_violations(
                context, grpc.StatusCode.INVALID_ARGUMENT, prepared.summary, prepared.violations
            )
        observations = Counter(pending.patient_key for pending in prepared.pending)
        for key, count in observations.items():
            touched(key, f"{count} lab observations submitted")
        items_of = await self.runtime.run_blocking(
            lab_item_mapper, self.runtime.reference, principal.institution_id
        )
        submission = LabSubmission(
            store=self.runtime.store,
            sessions=self.runtime.sessions,
            institution_id=principal.institution_id,
            items_of=items_of,
            detail_of=lab_detail_mapper(self.runtime.reference),
        )
        try:
            result = await self.runtime.run_blocking(submission.write, prepared, request.body)
        except SubmissionRefused as refusal:
            await abort_with_violations(
                context, grpc.StatusCode.FAILED_PRECONDITION, refusal.summary, refusal.violations
            )
        except STORAGE_FAILURES as failure:
            if not is_outage(failure):
                raise
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"storage is unavailable ({failure.__class__.__name__}); nothing of this document "
                "was indexed, send it again later",
            )
        return submission_response(result)
